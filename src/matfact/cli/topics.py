"""``matfact topics``: NMF topics of a text collection (see :mod:`matfact.apps.topics`).

The argparse options (:func:`configure_parser`) and the command (:func:`run`);
reading the corpus, fitting and plotting are the library's, in
:mod:`matfact.apps.topics`, imported when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matfact._text import format_table
from matfact.exceptions import UsageError

__all__ = ["LOSS_CHOICES", "configure_parser", "run"]

#: The values of --loss: the keys of :data:`matfact.apps.topics.LOSSES`, spelled out here
#: so that building the parser does not import the app (tests check they agree).
LOSS_CHOICES = ("frobenius", "kullback-leibler")

_EXAMPLES = """examples:
  matfact topics --data bbc-news -k 5 --out topics/
  matfact topics --data articles.csv --text-column body --label-column section -k 8
  matfact topics --data corpus/ --loss kullback-leibler --top-words 15"""


def _df_option(text: str) -> int | float:
    """``--min-df``/``--max-df``: ``5`` is a document count, ``0.5`` a proportion."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a document count (e.g. 5) or a proportion (e.g. 0.5), got {text!r}"
        ) from None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``matfact topics`` to ``parser`` (imports nothing heavy).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser; its handler should call :func:`run`.
    """
    import textwrap

    if parser.description is None:
        parser.description = textwrap.fill(
            "Find topics in documents: TF-IDF, then NMF. Prints each topic's top words and "
            "share of documents (and NMI/purity against known labels), and writes topics.png "
            "(top words per topic) and document_topics.csv (topic weights per document).", 78)
    if parser.epilog is None:
        parser.epilog = _EXAMPLES
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    data = parser.add_argument_group("data", textwrap.fill(
        "--data is bbc-news, a .csv/.tsv/.jsonl file (optionally .gz) with a text column, or "
        "a folder of .txt files (labels = subfolder names).", 78, break_on_hyphens=False))
    data.add_argument("--data", required=True, metavar="NAME_OR_PATH",
                      help="the documents")
    data.add_argument("--text-column", metavar="COL",
                      help="column/field with the text (default: text, content, body, ...)")
    data.add_argument("--label-column", metavar="COL",
                      help="column/field with known classes, to score the topics (default: "
                           "label, category, class or topic if present)")
    data.add_argument("--id-column", metavar="COL",
                      help="column/field with document ids (default: id if present, else the "
                           "row number)")
    data.add_argument("--encoding", default="utf-8", help="text encoding (default: utf-8)")
    data.add_argument("--data-home", metavar="DIR",
                      help="directory searched first for datasets")
    model = parser.add_argument_group("topics")
    model.add_argument("-k", "--topics", dest="k", type=int, default=5,
                       help="number of topics (default: 5)")
    model.add_argument("--loss", default="frobenius", choices=LOSS_CHOICES,
                       help="NMF loss: frobenius (coordinate descent) or kullback-leibler "
                            "(multiplicative updates) (default: frobenius)")
    model.add_argument("--top-words", type=int, default=10, metavar="N",
                       help="words listed per topic (default: 10)")
    model.add_argument("--min-df", type=_df_option, default=5, metavar="N_OR_SHARE",
                       help="drop terms in fewer documents (count) or a smaller share "
                            "(0..1) (default: 5)")
    model.add_argument("--max-df", type=_df_option, default=0.5, metavar="N_OR_SHARE",
                       help="drop terms in more documents (count) or a larger share (0..1) "
                            "(default: 0.5)")
    model.add_argument("--max-features", type=int, metavar="N",
                       help="keep only the N most frequent terms (default: all)")
    model.add_argument("--init", choices=("nndsvd", "nndsvda", "nndsvdar", "random"),
                       help="NMF initialization (default: nndsvd for frobenius, nndsvda for "
                            "kullback-leibler)")
    model.add_argument("--max-iter", type=int, metavar="N",
                       help="NMF iterations (default: 400 for frobenius, 1000 for "
                            "kullback-leibler)")
    model.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", default="matfact-topics", metavar="DIR",
                        help="directory for topics.png and document_topics.csv, created if "
                             "missing (default: ./matfact-topics)")


def run(args: argparse.Namespace) -> int:
    """Run ``matfact topics`` with the options :func:`configure_parser` defined.

    Prints the top words and share of documents of each topic (with labels:
    each topic's most common label, NMI and purity) to stdout, and writes
    ``topics.png`` and ``document_topics.csv`` into ``args.out``.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    int
        0 on success; errors are raised (:class:`~matfact.DataError`,
        :class:`~matfact.ParameterError`, ``FileNotFoundError``) for the CLI to
        report.
    """
    from matfact.apps.topics import fit_topics, plot_topics, read_corpus
    from matfact.plots import save_table

    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")
    if args.top_words < 1:
        raise UsageError(f"--top-words must be at least 1, got {args.top_words}")
    if args.max_features is not None and args.max_features < 1:
        raise UsageError(f"--max-features must be at least 1, got {args.max_features}")
    for option in ("--min-df", "--max-df"):
        value = getattr(args, option[2:].replace("-", "_"))
        # What fit_topics accepts, checked before the corpus is read.
        if not (value >= 1 if isinstance(value, int) else 0.0 <= value <= 1.0):
            raise UsageError(f"{option} must be a document count (an integer >= 1) or a "
                             f"proportion (a float in [0, 1]), got {value!r}")
    quiet = bool(getattr(args, "quiet", False))
    corpus = read_corpus(args.data, text_column=args.text_column,
                         label_column=args.label_column, id_column=args.id_column,
                         data_home=args.data_home, encoding=args.encoding)
    if not quiet:
        print(f"Read {len(corpus):,} documents from {corpus.source}", file=sys.stderr)
    result = fit_topics(corpus, args.k, loss=args.loss, top_words=args.top_words,
                        min_df=args.min_df, max_df=args.max_df,
                        max_features=args.max_features, init=args.init,
                        max_iter=args.max_iter, random_state=args.seed)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    print(f"{result.n_topics} NMF topics ({result.loss} loss) of {len(corpus):,} documents "
          f"from {corpus.source}, {len(result.vocabulary):,} terms")
    print()
    dominant = result.topic_labels()
    headers = ["topic", "share"] + (["mostly"] if dominant is not None else []) + ["top words"]
    rows = []
    for topic in range(result.n_topics):
        row = [str(topic + 1), f"{100 * result.shares[topic]:.1f}%"]
        if dominant is not None:
            label, share = dominant[topic]
            row.append(f"{label} ({share:.0%})" if label else "-")
        row.append(", ".join(result.top_words[topic]))
        rows.append(row)
    print(format_table(headers, rows, right={0, 1}))
    unassigned = int((result.assignments < 0).sum())
    if unassigned:
        print(f"{unassigned:,} document(s) have no term in the vocabulary and no topic")
    if result.nmi is not None:
        print()
        print(f"Against the {len(set(result.labels.tolist()))} labels: NMI {result.nmi:.4f}, "
              f"purity {result.purity:.4f}")
    png = plot_topics(result, out / "topics.png",
                      title=f"{result.n_topics} NMF topics of {Path(corpus.source).name}")
    csv_path = save_table(result.to_frame(), out / "document_topics.csv")
    print()
    print(f"Wrote the top words plot to {png} and the document-topic weights to {csv_path}")
    return 0
