"""Tests of ``matfact.apps.topics``: scores by hand, readers, planted topics, BBC News, the CLI."""

from __future__ import annotations

import argparse
import gzip
import json
import math

import numpy as np
import pandas as pd
import pytest

from matfact.apps import topics
from matfact.apps.topics import (
    Corpus,
    fit_topics,
    nmi_score,
    purity_score,
    read_corpus,
)
from matfact.cli.topics import configure_parser, run
from matfact.exceptions import DataError, ParameterError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: Three subjects with disjoint vocabularies: NMF must find them exactly.
PLANTED = {
    "sport": "goal match striker keeper league referee penalty stadium coach season".split(),
    "food": "recipe oven flour butter sauce garlic pepper simmer dough roast".split(),
    "space": "orbit rocket planet comet launch galaxy telescope lunar crater astronaut".split(),
}


def planted_corpus(per_topic: int = 12, words: int = 30, seed: int = 0) -> Corpus:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, vocabulary in PLANTED.items():
        for _ in range(per_topic):
            texts.append(" ".join(rng.choice(vocabulary, size=words)))
            labels.append(label)
    return Corpus(texts=texts, ids=np.array([f"d{i}" for i in range(len(texts))]),
                  labels=np.array(labels))


@pytest.fixture(scope="module")
def bbc(data_dir) -> Corpus:
    if not (data_dir / "bbc-news" / "bbc-news.jsonl.gz").exists():
        pytest.skip("BBC News absent")
    return read_corpus("bbc-news", data_home=data_dir)


@pytest.fixture(scope="module")
def bbc_slice(bbc) -> Corpus:
    """300 articles, every 7th: the file is sorted by section, so all five are in."""
    keep = np.arange(0, len(bbc), 7)[:300]
    return Corpus(texts=[bbc.texts[i] for i in keep], ids=bbc.ids[keep],
                  labels=bbc.labels[keep], source="bbc-news")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="matfact topics")
    configure_parser(parser)
    return parser.parse_args(list(argv))


# ------------------------------------------------------------------------------ scores
def test_purity_by_hand():
    # Topic 0 holds a, a, b (majority 2), topic 1 holds b, b (2): purity 4/5.
    assert purity_score(["a", "a", "b", "b", "b"], [0, 0, 0, 1, 1]) == pytest.approx(0.8)
    # One topic for everything: the largest label's share.
    assert purity_score(["a", "a", "a", "b", "b"], [7] * 5) == pytest.approx(0.6)
    # One topic per document is perfectly pure (why NMI is reported next to it).
    assert purity_score(["a", "a", "b"], [0, 1, 2]) == 1.0
    # Topic names do not matter; the label of a topic is its majority.
    assert purity_score(["x", "y", "y", "z"], ["t2", "t1", "t1", "t2"]) == pytest.approx(0.75)


def test_nmi_by_hand():
    # labels a,a,b,b; topics 0,0,0,1. p(a,0)=1/2, p(b,0)=1/4, p(b,1)=1/4.
    mi = 0.5 * math.log(0.5 / (0.5 * 0.75)) + 0.25 * math.log(0.25 / (0.5 * 0.75)) \
        + 0.25 * math.log(0.25 / (0.5 * 0.25))
    h_labels = math.log(2)
    h_topics = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = mi / ((h_labels + h_topics) / 2)
    assert nmi_score(["a", "a", "b", "b"], [0, 0, 0, 1]) == pytest.approx(expected)
    assert nmi_score(["a", "a", "b", "b"], [5, 5, 3, 3]) == pytest.approx(1.0)  # a renaming
    assert nmi_score(["a", "a", "b", "b"], [0, 1, 0, 1]) == pytest.approx(0.0)  # independent


def test_scores_reject_mismatched_input():
    with pytest.raises(DataError, match="same length"):
        purity_score(["a", "b"], [0])
    with pytest.raises(DataError, match="empty"):
        nmi_score([], [])


# ------------------------------------------------------------------------------ planted topics
def test_fit_topics_recovers_planted_topics():
    corpus = planted_corpus()
    result = fit_topics(corpus, 3, min_df=1, max_df=1.0)
    assert result.nmi == pytest.approx(1.0)
    assert result.purity == pytest.approx(1.0)
    assert result.document_topics.shape == (36, 3)
    assert (result.document_topics >= 0).all() and (result.topic_words >= 0).all()
    np.testing.assert_allclose(result.shares, [1 / 3] * 3)
    # Each topic's top words come from one subject, all ten of them.
    found = sorted(sorted(words) for words in result.top_words)
    assert found == sorted(sorted(words) for words in PLANTED.values())
    assert result.top_word_weights.shape == (3, 10)
    assert (np.diff(result.top_word_weights, axis=1) <= 0).all()  # heaviest first
    assert [share for _, share in result.topic_labels()] == [1.0, 1.0, 1.0]
    # New documents fold in with the topics fixed.
    weights = result.transform(["a rocket launch into orbit", "flour and butter dough"])
    space = result.assignments[list(corpus.labels).index("space")]
    food = result.assignments[list(corpus.labels).index("food")]
    assert weights.argmax(axis=1).tolist() == [space, food]
    frame = result.to_frame()
    assert list(frame.columns) == ["id", "label", "topic_1", "topic_2", "topic_3"]
    assert frame["id"].tolist() == corpus.ids.tolist()


@pytest.mark.parametrize("loss", list(topics.LOSSES))
def test_both_losses_and_plain_lists(loss):
    corpus = planted_corpus(seed=1)
    result = fit_topics(corpus.texts, 3, loss=loss, labels=corpus.labels, min_df=1,
                        max_df=1.0, top_words=4)
    assert result.loss == loss
    assert result.nmi == pytest.approx(1.0)
    assert [len(words) for words in result.top_words] == [4, 4, 4]
    assert result.ids.tolist() == [str(i) for i in range(36)]


def test_without_labels_no_scores():
    result = fit_topics(planted_corpus().texts, 3, min_df=1, max_df=1.0)
    assert result.labels is None and result.nmi is None and result.purity is None
    assert result.topic_labels() is None
    assert list(result.to_frame().columns) == ["id", "topic_1", "topic_2", "topic_3"]


def test_document_without_known_terms_has_no_topic():
    corpus = planted_corpus()
    result = fit_topics([*corpus.texts, "the and of"], 3, min_df=1, max_df=1.0)
    assert result.assignments[-1] == -1
    assert result.shares.sum() == pytest.approx(36 / 37)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"texts": []}, DataError, "empty"),
    ({"texts": "one string"}, DataError, "single string"),
    ({"texts": ["fine", 3]}, DataError, "document 1 is int"),
    ({"n_topics": 0}, ParameterError, "n_topics must be an integer >= 1"),
    ({"n_topics": 2.5}, ParameterError, "n_topics"),
    ({"n_topics": 37}, ParameterError, "exceeds the number of documents"),
    ({"loss": "itakura-saito"}, ParameterError, "loss must be one of"),
    ({"labels": ["a", "b"]}, DataError, "one entry per document"),
    ({"min_df": -1}, ParameterError, "min_df must be"),
    ({"max_df": 1.5}, ParameterError, "max_df must be"),
    ({"min_df": 30, "max_df": 2}, ParameterError, "contradict"),
    ({"min_df": 36}, DataError, "no term is left"),
    ({"top_words": 0}, ParameterError, "top_words"),
])
def test_fit_topics_errors(kwargs, error, match):
    params = {"texts": planted_corpus().texts, "n_topics": 3, "min_df": 1, "max_df": 1.0}
    params.update(kwargs)
    with pytest.raises(error, match=match):
        fit_topics(params.pop("texts"), params.pop("n_topics"), **params)


def test_only_stop_words_is_a_data_error():
    with pytest.raises(DataError, match="no term is left"):
        fit_topics(["the and of", "it is the", "and so on"], 1, min_df=1, max_df=1.0)


def test_more_topics_than_terms():
    with pytest.raises(ParameterError, match="number of terms"):
        fit_topics(["rocket orbit", "orbit rocket", "rocket rocket"], 3, min_df=1, max_df=1.0)


# ------------------------------------------------------------------------------ readers
def test_read_csv_detects_columns(tmp_path):
    path = tmp_path / "docs.csv"
    pd.DataFrame({"ID": ["x1", "x2", "x3"], "Text": ["a, quoted \"text\"", "NA", ""],
                  "category": ["p", "q", "p"]}).to_csv(path, index=False)
    corpus = read_corpus(path)
    assert corpus.texts == ["a, quoted \"text\"", "NA", ""]  # "NA" is a document, not NaN
    assert corpus.ids.tolist() == ["x1", "x2", "x3"]
    assert corpus.labels.tolist() == ["p", "q", "p"]
    assert corpus.label_names == ["p", "q"]


def test_read_tsv_gz_named_columns(tmp_path):
    path = tmp_path / "docs.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("body\tsection\textra\nfirst doc\tnews\t1\nsecond doc\tsport\t2\n")
    corpus = read_corpus(path, text_column="BODY", label_column="section")
    assert corpus.texts == ["first doc", "second doc"]
    assert corpus.labels.tolist() == ["news", "sport"]
    assert corpus.ids.tolist() == ["0", "1"]


def test_read_csv_missing_text_column(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text("title,section\nhello,news\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no text column .*'title', 'section'.*--text-column"):
        read_corpus(path)
    with pytest.raises(DataError, match="no text column 'body'"):
        read_corpus(path, text_column="body")
    with pytest.raises(DataError, match="no label column 'kind'"):
        read_corpus(path, text_column="title", label_column="kind")
    with pytest.raises(DataError, match="two roles"):
        read_corpus(path, text_column="title", label_column="title")


def test_read_jsonl(tmp_path):
    path = tmp_path / "docs.jsonl.gz"
    records = [{"id": 7, "text": "one", "label": "a"}, {"id": 8, "text": "two", "label": "b"}]
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(json.dumps(r) for r in records) + "\n\n")
    corpus = read_corpus(path)
    assert corpus.texts == ["one", "two"]
    assert corpus.ids.tolist() == ["7", "8"]
    assert corpus.labels.tolist() == ["a", "b"]


def test_read_jsonl_keeps_values_as_written(tmp_path):
    path = tmp_path / "docs.ndjson"
    path.write_text('{"id": 7, "text": "one", "label": 1}\n'
                    '{"text": "two", "id": "x8", "label": 2.5, "extra": [1]}\n', encoding="utf-8")
    corpus = read_corpus(path)
    assert corpus.ids.tolist() == ["7", "x8"]  # not "7.0"
    assert corpus.labels.tolist() == ["1", "2.5"]


@pytest.mark.parametrize(("content", "match"), [
    ('{"text": "ok"}\n{"text": broken}\n', "line 2: not valid JSON"),
    ('{"text": "ok"}\n\n{"text": null}\n', "line 3: no value for 'text'"),
    ('{"text": "ok"}\n["a list"]\n', "line 2: expected a JSON object"),
    ('{"text": "ok"}\n{"body": "no text"}\n', "line 2: no value for 'text'"),
    ("\n\n", "no JSON records"),
])
def test_read_jsonl_errors(tmp_path, content, match):
    path = tmp_path / "docs.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match):
        read_corpus(path)


def test_read_folder_with_label_subfolders(tmp_path):
    for label, name, text in [("sport", "001", "goal"), ("sport", "002", "match"),
                              ("tech", "001", "chip")]:
        (tmp_path / label).mkdir(exist_ok=True)
        (tmp_path / label / f"{name}.txt").write_text(text, encoding="utf-8")
    (tmp_path / "tech" / "notes.md").write_text("ignored", encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("ignored", encoding="utf-8")
    corpus = read_corpus(tmp_path)
    assert corpus.ids.tolist() == ["sport/001", "sport/002", "tech/001"]
    assert corpus.labels.tolist() == ["sport", "sport", "tech"]
    assert corpus.texts == ["goal", "match", "chip"]


def test_read_flat_folder_has_no_labels(tmp_path):
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.TXT").write_text("first", encoding="utf-8")
    corpus = read_corpus(tmp_path)
    assert corpus.ids.tolist() == ["a", "b"] and corpus.labels is None
    assert corpus.texts == ["first", "second"]


def test_read_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no .txt files"):
        read_corpus(tmp_path)
    (tmp_path / "top.txt").write_text("x", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "low.txt").write_text("y", encoding="utf-8")
    with pytest.raises(DataError, match="both at its top level"):
        read_corpus(tmp_path)


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        read_corpus(tmp_path / "missing.csv")
    odd = tmp_path / "docs.xlsx"
    odd.write_bytes(b"PK")
    with pytest.raises(DataError, match="unknown kind of file"):
        read_corpus(odd)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="--encoding latin-1"):
        read_corpus(latin)
    assert read_corpus(latin, encoding="latin-1").texts == ["café"]
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_corpus(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="no documents"):
        read_corpus(header_only)


def test_dataset_name_options_and_kind(data_dir):
    with pytest.raises(ParameterError, match="apply to files"):
        read_corpus("bbc-news", text_column="text", data_home=data_dir)
    if (data_dir / "ml-100k" / "u.data").exists():
        with pytest.raises(DataError, match="not texts"):
            read_corpus("ml-100k", data_home=data_dir)


# ------------------------------------------------------------------------------ BBC News
def test_bbc_slice_topics(bbc_slice):
    result = fit_topics(bbc_slice, 5, min_df=2)
    assert result.document_topics.shape == (300, 5)
    assert result.nmi == pytest.approx(nmi_score(bbc_slice.labels, result.assignments))
    assert result.purity == pytest.approx(purity_score(bbc_slice.labels, result.assignments))
    # The five sections come out clearly even from 300 articles.
    assert result.nmi > 0.75 and result.purity > 0.9  # measured: 0.851 and 0.943
    assert sorted(label for label, _ in result.topic_labels()) == bbc_slice.label_names


def test_cli_run_end_to_end(bbc_slice, tmp_path, capsys):
    path = tmp_path / "slice.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t, "label": lab}) + "\n"
                            for i, t, lab in zip(bbc_slice.ids, bbc_slice.texts,
                                                 bbc_slice.labels, strict=True)),
                    encoding="utf-8")
    out = tmp_path / "deep" / "topics"
    args = parse("--data", str(path), "-k", "5", "--out", str(out), "--min-df", "2",
                 "--top-words", "8")
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "NMI" in printed and "purity" in printed and "top words" in printed
    png = out / "topics.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    frame = pd.read_csv(out / "document_topics.csv", dtype={"id": str})
    assert frame.shape == (300, 7)
    assert list(frame.columns) == ["id", "label"] + [f"topic_{t}" for t in range(1, 6)]
    assert frame["id"].tolist() == bbc_slice.ids.tolist()
    assert (frame.filter(like="topic_").to_numpy() >= 0).all()


def test_cli_run_without_labels(tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, text in enumerate(planted_corpus().texts):
        (folder / f"{i:02d}.txt").write_text(text, encoding="utf-8")
    args = parse("--data", str(folder), "-k", "3", "--out", str(tmp_path / "o"),
                 "--min-df", "1", "--max-df", "1.0", "--loss", "kullback-leibler")
    args.quiet = True
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "NMI" not in printed and "kullback-leibler" in printed
    frame = pd.read_csv(tmp_path / "o" / "document_topics.csv")
    assert list(frame.columns) == ["id", "topic_1", "topic_2", "topic_3"]


@pytest.mark.parametrize(("argv", "match"), [
    (["-k", "0"], "-k must be at least 1"),
    (["--top-words", "0"], "--top-words must be at least 1"),
    (["--min-df", "-2"], "--min-df must be"),
    (["--max-df", "3.5"], "--max-df must be"),
])
def test_cli_run_rejects_bad_options_before_reading(tmp_path, argv, match):
    args = parse("--data", str(tmp_path / "never-read.csv"), "--out", str(tmp_path / "o"), *argv)
    with pytest.raises(ParameterError, match=match):  # not FileNotFoundError: checked first
        run(args)
    assert not (tmp_path / "o").exists()


def test_cli_run_more_topics_than_documents(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("text\nrocket orbit\nflour butter\n", encoding="utf-8")
    args = parse("--data", str(path), "-k", "3", "--min-df", "1", "--out", str(tmp_path / "o"))
    with pytest.raises(ParameterError, match="exceeds the number of documents"):
        run(args)


def test_cli_df_option_type():
    assert parse("--data", "x", "--min-df", "3").min_df == 3
    assert parse("--data", "x", "--max-df", "0.8").max_df == 0.8
    with pytest.raises(SystemExit):
        parse("--data", "x", "--min-df", "many")
