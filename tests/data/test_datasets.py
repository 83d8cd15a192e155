"""Tests of matfact.data.datasets: the real datasets, the file search and the download.

The datasets' terms forbid copying them into the repository, so they are read
from ``$MATFACT_DATA`` (default ``<repo>/../shared/data``) and the tests that
need them skip when it is absent. Downloads go to a loopback HTTP server.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import json
import os
import shutil
import threading
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matfact.data import datasets as ds
from matfact.data.datasets import DATASETS, ImageDataset, TextDataset, load_dataset
from matfact.data.interactions import Interactions
from matfact.exceptions import DataError, DatasetNotFoundError, ParameterError


def _shared_data() -> Path:
    env = os.environ.get("MATFACT_DATA", "")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


# Resolved at import, before the fixtures below clear MATFACT_DATA.
SHARED = _shared_data()
UNREACHABLE = "http://127.0.0.1:9/nothing-listens-here.zip"  # port 9 (discard): refused at once
ML_100K_FILES = ("README", "u.data", "u.genre", "u.info", "u.item", "u.occupation", "u.user")
ML_SMALL_FILES = ("README.txt", "links.csv", "movies.csv", "ratings.csv", "tags.csv")


def shared(folder: str) -> Path:
    """The shared copy of a dataset folder, or skip the test."""
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"{path} not found; set MATFACT_DATA to the shared data directory")
    return path


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test sees the user's cache or MATFACT_DATA, or reaches the internet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MATFACT_DATA", raising=False)
    monkeypatch.setattr(ds, "DOWNLOAD_URLS", dict.fromkeys(ds.DOWNLOAD_URLS, UNREACHABLE))
    for var in ("no_proxy", "NO_PROXY"):  # the loopback server must not go through a proxy
        monkeypatch.setenv(var, "*")


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache" / "matfact"


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def _small_ml_100k(root: Path, n_ratings: int) -> Path:
    """A ``<root>/ml-100k`` whose u.data holds the first ``n_ratings`` lines."""
    source = shared("ml-100k")
    folder = root / "ml-100k"
    folder.mkdir(parents=True)
    with open(source / "u.data", "rb") as handle:
        head = b"".join(handle.readline() for _ in range(n_ratings))
    (folder / "u.data").write_bytes(head)
    for name in ("u.item", "u.user", "u.genre"):
        shutil.copyfile(source / name, folder / name)
    return root


# ---------------------------------------------------------------------------- registry and arguments
def test_registry_describes_every_dataset():
    assert set(DATASETS) == {"ml-100k", "ml-latest-small", "book-crossing", "steam",
                             "retailrocket", "bbc-news", "orl-faces"}
    assert all(text and "\n" not in text for text in DATASETS.values())
    assert set(ds.DOWNLOAD_URLS) == {"ml-100k", "ml-latest-small"}


def test_unknown_name_lists_the_datasets():
    with pytest.raises(ParameterError, match="ml-100k") as info:
        load_dataset("ml-1m")
    assert all(name in str(info.value) for name in DATASETS)


@pytest.mark.parametrize(("name", "kind", "listed"), [
    ("steam", "hours", ["play", "purchase"]),
    ("book-crossing", "ratings", ["explicit", "implicit"]),
    ("retailrocket", "click", ["all", "view", "cart", "purchase"]),
    ("ml-100k", "implicit", ["no kinds"]),
])
def test_bad_kind_lists_the_kinds(name, kind, listed):
    with pytest.raises(ParameterError) as info:
        load_dataset(name, kind=kind)
    assert all(word in str(info.value) for word in listed)


def test_checksums_cover_the_download_files():
    keys = set(ds._checksums())
    for name in ds.DOWNLOAD_URLS:
        spec = ds._SPECS[name]
        for files in spec.kinds.values():
            assert {f"{spec.folder}/{file}" for file in files} <= keys
    assert all(len(value) == 64 for value in ds._checksums().values())


def test_checksums_match_the_publishers_files():
    text = resources.files("matfact.data").joinpath("checksums.json").read_text("utf-8")
    entries = json.loads(text)["files"]
    for key, expected in entries.items():
        path = shared(key.split("/")[0]) / key.split("/", 1)[1]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected, key


# ---------------------------------------------------------------------------- the datasets
@pytest.mark.parametrize(("name", "kind", "nnz", "n_users", "n_items"), [
    ("ml-100k", None, 100_000, 943, 1_682),
    ("ml-latest-small", None, 100_836, 610, 9_724),
    ("book-crossing", None, 62_656, 1_295, 14_684),
    ("book-crossing", "implicit", 272_678, 2_946, 17_384),
    # 70,489 rows of which 12 repeat a (user, game) pair: their hours are summed.
    ("steam", None, 70_489 - 12, 11_350, 3_600),
    # 129,511 rows of which 707 repeat a pair: a purchase is kept once.
    ("steam", "purchase", 129_511 - 707, 12_393, 5_155),
    ("retailrocket", "view", 78_371, 3_423, 8_878),
    ("retailrocket", "cart", 9_028, 1_557, 4_447),
    ("retailrocket", "purchase", 5_088, 824, 3_077),
])
def test_counts_match_source(name, kind, nnz, n_users, n_items):
    shared(ds._SPECS[name].folder)
    data = load_dataset(name, data_home=SHARED, kind=kind, download=False)
    assert isinstance(data, Interactions)
    assert (data.nnz, data.n_users, data.n_items) == (nnz, n_users, n_items)


@pytest.mark.parametrize(("name", "kind", "histogram"), [
    ("ml-100k", None, {1: 6_110, 2: 11_370, 3: 27_145, 4: 34_174, 5: 21_201}),
    ("ml-latest-small", None, {0.5: 1_370, 1.0: 2_811, 1.5: 1_791, 2.0: 7_551, 2.5: 5_550,
                               3.0: 20_047, 3.5: 13_136, 4.0: 26_818, 4.5: 8_551,
                               5.0: 13_211}),
    ("book-crossing", "explicit", {1: 160, 2: 239, 3: 552, 4: 859, 5: 5_183, 6: 4_236,
                                   7: 9_906, 8: 15_629, 9: 12_008, 10: 13_884}),
])
def test_explicit_histograms_and_scales(name, kind, histogram):
    shared(ds._SPECS[name].folder)
    data = load_dataset(name, data_home=SHARED, kind=kind, download=False)
    values, counts = np.unique(data.ratings, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == histogram
    assert data.rating_scale == (min(histogram), max(histogram))
    assert not data.is_implicit


def test_ml_100k_keeps_file_order():
    folder = shared("ml-100k")
    data = load_dataset("ml-100k", data_home=SHARED, download=False)
    lines = (folder / "u.data").read_text().splitlines()
    expected = np.array([line.split("\t") for line in lines[:5] + lines[-5:]], dtype=np.int64)
    frame = data.to_pandas()
    got = pd.concat([frame.head(5), frame.tail(5)])
    np.testing.assert_array_equal(got[["user", "item", "rating", "timestamp"]].to_numpy(),
                                  expected)
    assert frame.iloc[0].tolist() == [196, 242, 3.0, 881250949]


def test_ml_100k_features():
    shared("ml-100k")
    data = load_dataset("ml-100k", data_home=SHARED, download=False)
    users = data.user_features
    assert users.shape == (943, 4)
    assert list(users.columns) == ["age", "gender", "occupation", "zip"]
    assert pd.api.types.is_integer_dtype(users["age"])
    assert users.loc[1].tolist() == [24, "M", "technician", "85711"]
    assert users.loc[74, "zip"] == "T8H1N"  # zip codes are text, not numbers

    items = data.item_features
    assert len(items) == 1_682
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
              "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
              "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    assert list(items.columns) == ["title", "release_date", "year", "imdb_url", *genres]
    assert all(items[genre].dtype == bool for genre in genres)
    # u.item is ISO-8859-1: the accents must come out right.
    assert items.loc[543, "title"] == "Misérables, Les (1995)"
    assert items.loc[1104, "title"] == "C'est arrivé près de chez vous (1992)"
    toy = items.loc[1]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["release_date"] == pd.Timestamp("1995-01-01")
    assert toy["year"] == 1995
    assert bool(toy["Animation"]) and bool(toy["Children's"]) and not toy["Action"]
    unknown = items.loc[267]
    assert unknown["title"] == "unknown" and pd.isna(unknown["release_date"])
    assert np.isnan(unknown["year"]) and bool(unknown["unknown"])
    assert data.item_titles()[data.item_index.get_indexer([543])[0]] == "Misérables, Les (1995)"


def test_ml_latest_small_features():
    folder = shared("ml-latest-small")
    data = load_dataset("ml-latest-small", data_home=SHARED, download=False)
    assert data.timestamps is not None and data.user_features is None
    assert data.to_pandas().iloc[0].tolist() == [1, 1, 4.0, 964982703]
    items = data.item_features
    assert len(items) == 9_742 and list(items.columns) == ["title", "year", "genres", "tags"]
    assert items.loc[1, "title"] == "Toy Story (1995)" and items.loc[1, "year"] == 1995
    assert items.loc[1, "genres"] == "Adventure|Animation|Children|Comedy|Fantasy"
    assert np.isnan(items.loc[items["title"] == "Babylon 5", "year"]).all()
    tags = items.loc[60756, "tags"].split("|")
    assert {"funny", "highly quotable", "will ferrell"} <= set(tags)
    assert len(tags) == len(set(tags))
    assert not items["tags"].str.contains("[A-Z]").any()
    raw = pd.read_csv(folder / "tags.csv")
    assert (items["tags"] != "").sum() == raw["movieId"].nunique()
    assert (items.loc[~items.index.isin(raw["movieId"]), "tags"] == "").all()


def test_book_crossing_features_survive_broken_rows():
    shared("book-crossing")
    explicit = load_dataset("book-crossing", data_home=SHARED, download=False)
    implicit = load_dataset("book-crossing", data_home=SHARED, kind="implicit", download=False)
    assert implicit.is_implicit and not implicit.has_weights
    items = explicit.item_features
    # Every one of the 17,384 rows parses, so every book of both files has a title.
    assert len(items) == 17_384
    assert {"title", "author", "year", "publisher"} <= set(items.columns)
    for data in (explicit, implicit):
        assert np.isin(data.item_ids, items.index).all()
    assert not (items["title"] == "").any()
    # "&amp;" was cut into "&amp" + tab; a tab inside a title was a ";".
    assert items.loc[2].tolist()[:4] == ["The Mummies of Urumchi", "E. J. W. Barber", 1999.0,
                                         "W. W. Norton & Company"]
    assert items.loc[1018, "title"] == "Life's Little Instruction Book; Volume II"
    assert items.loc[1018, "author"] == "H. Jackson Brown"
    assert not items["publisher"].str.startswith("http").any()
    assert items["year"].isna().sum() > 0 and (items["year"].dropna() > 1000).all()
    users = explicit.user_features
    assert len(users) == 2_946 and users["age"].dtype == np.float64
    assert users.loc[1].tolist() == ["minneapolis, minnesota, usa", 24.0]


def test_steam_hours_are_weights():
    folder = shared("steam")
    play = load_dataset("steam", data_home=SHARED, download=False)
    assert play.is_implicit and play.has_weights
    hours = pd.read_csv(folder / "game_play.dat.gz", sep="\t")["Hours"]
    assert play.weights.sum() == pytest.approx(hours.sum(), rel=1e-6)
    assert play.weights.max() == pytest.approx(11_754)
    assert play.item_features.loc[1, "title"] == "The Elder Scrolls V Skyrim"
    assert play.user_features.loc[1, "steam_id"] == 151603712
    purchase = load_dataset("steam", data_home=SHARED, kind="purchase", download=False)
    assert purchase.is_implicit and not purchase.has_weights


def test_retailrocket_all_counts_every_event():
    shared("retailrocket")
    every = load_dataset("retailrocket", data_home=SHARED, download=False)
    assert every.is_implicit
    assert every.weights.sum() == 78_371 + 9_028 + 5_088
    views = load_dataset("retailrocket", data_home=SHARED, kind="view", download=False)
    assert set(views.user_ids) <= set(every.user_ids)
    assert every.nnz < every.weights.sum()  # bought items were usually viewed first


def test_bbc_news_text_dataset():
    shared("bbc-news")
    corpus = load_dataset("bbc-news", data_home=SHARED, download=False)
    assert isinstance(corpus, TextDataset) and len(corpus) == 2_225
    assert corpus.label_names == ["business", "entertainment", "politics", "sport", "tech"]
    labels, counts = np.unique(corpus.labels, return_counts=True)
    assert dict(zip(labels.tolist(), counts.tolist(), strict=True)) == {
        "business": 510, "entertainment": 386, "politics": 417, "sport": 511, "tech": 401}
    assert corpus.ids[0] == "business/001" and len(set(corpus.ids)) == 2_225
    assert all(isinstance(text, str) and text for text in corpus.texts[:10])
    assert "£" in corpus.texts[list(corpus.ids).index("sport/199")]
    with pytest.raises(dataclasses.FrozenInstanceError):
        corpus.texts = []


def test_orl_faces_image_dataset():
    shared("faces")
    faces = load_dataset("orl-faces", data_home=SHARED, download=False)
    assert isinstance(faces, ImageDataset) and len(faces) == 400
    assert faces.images.shape == (400, 112, 92) and faces.images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(faces.labels), np.full(40, 10))
    assert not faces.images.flags.writeable


def _write_gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)


def test_book_crossing_odd_rows_do_not_crash(tmp_path):
    folder = tmp_path / "book-crossing"
    _write_gz(folder / "book_ratings.dat.gz",
              "user\titem\trating\n1\t1\t7.000000\n1\t2\t5.000000\n2\t3\t9.000000\n")
    _write_gz(folder / "users_info.dat.gz",
              "User-ID\tLocation\tAge\n1\tparis, france\t30\t\n2\tnowhere\t\t\n")
    urls = "\thttp://a/s.jpg\thttp://a/m.jpg\thttp://a/l.jpg\t"
    _write_gz(folder / "items_info.dat.gz", (
        "Book_ID\tISBN\tBook-Title\tBook-Author\tYear-Of-Publication\tPublisher\t"
        "Image-URL-S\tImage-URL-M\tImage-URL-L\n"
        f"1\t0001\tPlain \"Quoted\" Title\tAnn Author\t1999\tA Press{urls}\n"
        f"2\t0002\tPart One\t Part Two\tBob Writer\t0\tSmith &amp\t Sons{urls}\n"
        "3\t0003\tNo Covers\tCy Penn\t2001\tPub\n"
        "garbage that is not a row\n"
        "\n"
    ))
    data = load_dataset("book-crossing", data_home=tmp_path, download=False)
    items = data.item_features
    assert items.index.tolist() == [1, 2, 3]
    assert items.loc[1, "title"] == 'Plain "Quoted" Title'
    # A tab inside the title was a ";", "&amp" + tab was "&amp;", and year 0 means unknown.
    assert items.loc[2, ["title", "author", "publisher"]].tolist() == [
        "Part One; Part Two", "Bob Writer", "Smith & Sons"]
    assert np.isnan(items.loc[2, "year"])
    assert items.loc[3, ["title", "author", "year", "publisher"]].tolist() == [
        "No Covers", "Cy Penn", 2001.0, "Pub"]
    users = data.user_features
    assert users.loc[1, "age"] == 30 and np.isnan(users.loc[2, "age"])


def test_corrupt_file_raises_data_error(tmp_path):
    root = _small_ml_100k(tmp_path / "root", 5)
    with open(root / "ml-100k" / "u.data", "a") as handle:
        handle.write("1\tnot-an-item\t3\t881250949\n")
    with pytest.raises(DataError, match="u.data"):
        load_dataset("ml-100k", data_home=root, download=False)


# ---------------------------------------------------------------------------- where files are found
def test_data_home_beats_matfact_data(tmp_path, monkeypatch):
    first = _small_ml_100k(tmp_path / "first", 5)
    second = _small_ml_100k(tmp_path / "second", 7)
    monkeypatch.setenv("MATFACT_DATA", str(second))
    assert load_dataset("ml-100k", data_home=first, download=False).nnz == 5
    assert load_dataset("ml-100k", download=False).nnz == 7


def test_data_home_may_be_the_dataset_folder(tmp_path):
    root = _small_ml_100k(tmp_path / "root", 5)
    assert load_dataset("ml-100k", data_home=root / "ml-100k", download=False).nnz == 5


def test_matfact_data_beats_cache(tmp_path, monkeypatch, cache):
    _small_ml_100k(cache, 3)
    root = _small_ml_100k(tmp_path / "root", 4)
    monkeypatch.setenv("MATFACT_DATA", str(root))
    assert load_dataset("ml-100k", download=False).nnz == 4


def test_cache_used_when_nothing_else(tmp_path, monkeypatch, cache):
    _small_ml_100k(cache, 3)
    monkeypatch.setenv("MATFACT_DATA", "")  # empty means unset
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_dataset("ml-100k", data_home=empty, download=False).nnz == 3
    assert load_dataset("ml-100k", download=False).nnz == 3


def test_incomplete_folder_is_skipped(tmp_path, monkeypatch):
    root = _small_ml_100k(tmp_path / "root", 5)
    (root / "ml-100k" / "u.genre").unlink()
    monkeypatch.setenv("MATFACT_DATA", str(_small_ml_100k(tmp_path / "full", 6)))
    assert load_dataset("ml-100k", data_home=root, download=False).nnz == 6


def test_missing_local_only_dataset_names_files_and_folders(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("steam", data_home=tmp_path / "nowhere", kind="purchase")
    message = str(info.value)
    assert "game_purchase.dat.gz" in message and "item_info.dat.gz" in message
    assert str(tmp_path / "nowhere" / "steam") in message and "MATFACT_DATA" in message
    assert isinstance(info.value, FileNotFoundError)


def test_no_download_lists_files_and_url(cache):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("ml-100k", download=False)
    message = str(info.value)
    assert all(name in message for name in ("u.data", "u.item", "u.user", "u.genre"))
    assert str(cache / "ml-100k") in message and UNREACHABLE in message
    assert _files_under(cache) == []


def test_unreachable_server_is_reported(cache):
    with pytest.raises(DatasetNotFoundError, match="could not download") as info:
        load_dataset("ml-latest-small")
    assert UNREACHABLE in str(info.value) and "ratings.csv" in str(info.value)
    assert _files_under(cache.parent) == []


# ---------------------------------------------------------------------------- downloading
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over ``tmp_path / "www"``; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _zip(path: Path, folder: str, files, *, replace=None, extra=None) -> None:
    """A zip laid out like GroupLens' (``ml-100k/u.data`` ...) from the shared copy."""
    source = shared(folder)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr(f"{folder}/", b"")
        for name in files:
            data = (replace or {}).get(name)
            archive.writestr(f"{folder}/{name}",
                             data if data is not None else (source / name).read_bytes())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)


@pytest.mark.parametrize(("name", "files", "nnz"), [
    ("ml-100k", ML_100K_FILES, 100_000),
    ("ml-latest-small", ML_SMALL_FILES, 100_836),
])
def test_download_verifies_and_caches(server, monkeypatch, cache, name, files, nnz):
    www, base = server
    # The real archives hold more than matfact needs; those members are not extracted.
    _zip(www / f"{name}.zip", name, files, extra={f"{name}/allbut.pl": b"#!/usr/bin/perl\n"})
    monkeypatch.setitem(ds.DOWNLOAD_URLS, name, f"{base}/{name}.zip")
    data = load_dataset(name)
    assert data.nnz == nnz
    assert [p.name for p in _files_under(cache)] == sorted(files)
    for file in files:  # byte-identical to the publisher's files
        assert (cache / name / file).read_bytes() == (SHARED / name / file).read_bytes()
    # Now cached: no server needed.
    monkeypatch.setitem(ds.DOWNLOAD_URLS, name, UNREACHABLE)
    assert load_dataset(name, download=False).nnz == nnz


def test_tampered_file_is_refused_and_nothing_is_kept(server, monkeypatch, cache):
    www, base = server
    original = (shared("ml-100k") / "u.data").read_bytes()
    tampered = original.replace(b"196\t242\t3", b"196\t242\t5", 1)
    assert tampered != original
    _zip(www / "ml-100k.zip", "ml-100k", ML_100K_FILES, replace={"u.data": tampered})
    monkeypatch.setitem(ds.DOWNLOAD_URLS, "ml-100k", f"{base}/ml-100k.zip")
    with pytest.raises(DatasetNotFoundError, match="checksum") as info:
        load_dataset("ml-100k")
    message = str(info.value)
    assert "ml-100k/u.data" in message
    assert hashlib.sha256(tampered).hexdigest() in message
    assert ds._checksums()["ml-100k/u.data"] in message
    assert _files_under(cache.parent) == []
    assert not (cache / "ml-100k").exists()


def test_http_error_is_reported(server, monkeypatch, cache):
    _, base = server
    monkeypatch.setitem(ds.DOWNLOAD_URLS, "ml-100k", f"{base}/missing.zip")
    with pytest.raises(DatasetNotFoundError, match="404") as info:
        load_dataset("ml-100k")
    assert f"{base}/missing.zip" in str(info.value) and "u.data" in str(info.value)
    assert _files_under(cache.parent) == []


def test_not_a_zip_is_reported(server, monkeypatch, cache):
    www, base = server
    (www / "ml-100k.zip").write_bytes(b"<html>a captive portal</html>")
    monkeypatch.setitem(ds.DOWNLOAD_URLS, "ml-100k", f"{base}/ml-100k.zip")
    with pytest.raises(DatasetNotFoundError, match="not a zip file"):
        load_dataset("ml-100k")
    assert _files_under(cache.parent) == []


def test_member_escaping_the_folder_is_refused(server, monkeypatch, cache, tmp_path):
    www, base = server
    _zip(www / "ml-100k.zip", "ml-100k", ML_100K_FILES,
         extra={"ml-100k/../../evil.txt": b"gotcha"})
    monkeypatch.setitem(ds.DOWNLOAD_URLS, "ml-100k", f"{base}/ml-100k.zip")
    with pytest.raises(DatasetNotFoundError, match=r"\.\./\.\./evil\.txt"):
        load_dataset("ml-100k")
    assert list(tmp_path.rglob("evil.txt")) == []
    assert _files_under(cache.parent) == []


def test_missing_member_is_reported(server, monkeypatch, cache):
    www, base = server
    files = [name for name in ML_100K_FILES if name != "u.user"]
    _zip(www / "ml-100k.zip", "ml-100k", files)
    monkeypatch.setitem(ds.DOWNLOAD_URLS, "ml-100k", f"{base}/ml-100k.zip")
    with pytest.raises(DatasetNotFoundError, match="ml-100k/u.user"):
        load_dataset("ml-100k")
    assert _files_under(cache.parent) == []


@pytest.mark.parametrize(("member", "safe"), [
    ("ml-100k/u.data", True),
    ("u.data", True),
    ("ml-100k/../u.data", False),
    ("../u.data", False),
    ("/etc/passwd", False),
    ("C:/Windows/win.ini", False),
    ("ml-100k\\..\\u.data", False),
])
def test_safe_member(member, safe):
    assert bool(ds._safe_member(member)) is safe
