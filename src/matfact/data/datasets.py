"""Loaders of the real datasets matfact's tests, examples and benchmarks use.

:func:`load_dataset` finds a dataset's files on disk (``data_home``, then
``$MATFACT_DATA``, then the user cache) and parses them with pandas readers
into an :class:`~matfact.data.interactions.Interactions` (or a
:class:`TextDataset` / :class:`ImageDataset` for the text and image sets).
Only the two MovieLens sets, whose terms let GroupLens serve them, are
downloaded, and only after their sha256 matches ``checksums.json``.

The other datasets' terms forbid shipping them: place their folders (as in
``DATASETS``) under a directory and pass it as ``data_home`` or set
``MATFACT_DATA`` to it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from matfact.data.interactions import Interactions
from matfact.exceptions import DataError, DatasetNotFoundError, ParameterError

__all__ = [
    "DATASETS",
    "DOWNLOAD_URLS",
    "ImageDataset",
    "TextDataset",
    "cache_dir",
    "load_dataset",
]

#: Where :func:`load_dataset` fetches the datasets GroupLens lets anyone download.
DOWNLOAD_URLS: dict[str, str] = {
    "ml-100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    "ml-latest-small": "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
}

_TIMEOUT = 60.0
_CHUNK = 1 << 20
# No file of these datasets comes near this; a larger zip member is a bomb or the wrong archive.
_MAX_MEMBER_BYTES = 256 << 20


@dataclass(frozen=True, eq=False)
class TextDataset:
    """A labelled text corpus, e.g. for NMF topic models.

    Attributes
    ----------
    texts : list of str
        The documents, unchanged.
    labels : ndarray of shape (n_documents,), dtype str
        The class of each document.
    ids : ndarray of shape (n_documents,), dtype str
        A stable identifier of each document, e.g. ``"business/001"``.
    label_names : list of str
        The distinct labels, sorted.
    """

    texts: list[str]
    labels: np.ndarray
    ids: np.ndarray
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Grayscale images with a class label each, e.g. for NMF or SVD of faces.

    Attributes
    ----------
    images : ndarray of shape (n_images, height, width), dtype uint8
        Use ``images.reshape(len(images), -1)`` for a data matrix.
    labels : ndarray of shape (n_images,), dtype int64
        The class (e.g. subject) of each image.
    """

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class _Spec:
    folder: str
    kinds: dict[str | None, tuple[str, ...]]  # kind -> files it needs; key None if kind-less
    loader: Callable[[Path, str | None], Any]

    @property
    def default_kind(self) -> str | None:
        return next(iter(self.kinds))


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` whose failures name the file and raise :class:`DataError`."""
    try:
        return pd.read_csv(path, **kwargs)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid {err.encoding} text ({err.reason})") from None
    except (ValueError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot parse it: {err}") from None


def _read_lines(path: Path) -> pd.Series:
    """The lines of a (gzip'd) UTF-8 text file after its header, as a string Series.

    Used for the metadata files whose fields contain unescaped tabs: a regex
    over whole lines recovers what a delimited reader would split wrongly.
    """
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
            text = handle.read()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 text ({err.reason})") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot read it: {err}") from None
    # split("\n") rather than splitlines(), which would also break at \x85 and \u2028.
    lines = pd.Series(text.split("\n")[1:], dtype=str).str.rstrip("\r")
    return lines[lines.str.len() > 0].reset_index(drop=True)


def _extract(path: Path, pattern: str, id_column: str) -> pd.DataFrame:
    """Parse lines with ``pattern`` (named groups); rows that do not match are dropped."""
    frame = _read_lines(path).str.extract(pattern)
    frame = frame[frame[id_column].notna()]
    if frame.empty:
        raise DataError(f"{path}: no line has the expected layout")
    frame.index = pd.Index(frame.pop(id_column).astype(np.int64).to_numpy(), name=id_column)
    return frame[~frame.index.duplicated()]


_YEAR_SUFFIX = r"\((\d{4})(?:\s*[-\u2013]\s*\d{4})?\)\s*$"


def _title_year(titles: pd.Series) -> pd.Series:
    """Year of a ``"Title (1995)"`` title (first year of a range) as float, NaN if absent."""
    return pd.to_numeric(titles.str.extract(_YEAR_SUFFIX)[0], errors="coerce").astype(np.float64)


# ---------------------------------------------------------------------------- MovieLens
def _load_ml_100k(folder: Path, kind: str | None) -> Interactions:
    ratings = _read_csv(
        folder / "u.data", sep="\t", header=None,
        names=["user", "item", "rating", "timestamp"], dtype=np.int64,
    )
    genres = _read_csv(
        folder / "u.genre", sep="|", header=None, names=["genre", "code"],
        dtype={"genre": str, "code": np.int64}, encoding="iso-8859-1",
        keep_default_na=False, quoting=csv.QUOTE_NONE,
    ).sort_values("code")
    genre_names = genres["genre"].tolist()
    if len(set(genre_names)) != len(genre_names):
        raise DataError(f"{folder / 'u.genre'}: repeated genre names {genre_names}")
    base = ["item", "title", "release_date", "video_release_date", "imdb_url"]
    # keep_default_na=False: a title such as "NA" must stay a title.
    items = _read_csv(
        folder / "u.item", sep="|", header=None, names=base + genre_names,
        dtype={**dict.fromkeys(base[1:], str), **dict.fromkeys(genre_names, np.int8),
               "item": np.int64},
        encoding="iso-8859-1", keep_default_na=False, quoting=csv.QUOTE_NONE, index_col="item",
    )
    titles = items["title"].str.strip()
    release = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce")
    item_features = pd.DataFrame({
        "title": titles,
        "release_date": release,
        # The title's year is the film's; the release date is sometimes a re-release.
        "year": _title_year(titles).fillna(release.dt.year.astype(np.float64)),
        "imdb_url": items["imdb_url"].where(items["imdb_url"] != ""),
    }, index=items.index)
    item_features = pd.concat([item_features, items[genre_names].astype(bool)], axis=1)
    users = _read_csv(
        folder / "u.user", sep="|", header=None,
        names=["user", "age", "gender", "occupation", "zip"],
        dtype={"user": np.int64, "age": np.int64, "gender": str, "occupation": str, "zip": str},
        encoding="iso-8859-1", keep_default_na=False, quoting=csv.QUOTE_NONE, index_col="user",
    )
    return Interactions.from_arrays(
        ratings["user"].to_numpy(), ratings["item"].to_numpy(), ratings["rating"].to_numpy(),
        timestamps=ratings["timestamp"].to_numpy(), user_features=users,
        item_features=item_features, rating_scale=(1, 5, 1),
    )


def _load_ml_latest_small(folder: Path, kind: str | None) -> Interactions:
    ratings = _read_csv(
        folder / "ratings.csv",
        dtype={"userId": np.int64, "movieId": np.int64, "rating": np.float64,
               "timestamp": np.int64},
    )
    movies = _read_csv(
        folder / "movies.csv", dtype={"movieId": np.int64, "title": str, "genres": str},
        keep_default_na=False, index_col="movieId",
    )
    tags = _read_csv(
        folder / "tags.csv", usecols=["movieId", "tag"], dtype={"movieId": np.int64, "tag": str},
        keep_default_na=False,
    )
    # "|" is the join separator, so a tag must not contain one.
    tags["tag"] = tags["tag"].str.strip().str.lower().str.replace("|", " ", regex=False)
    tags = tags[tags["tag"] != ""].drop_duplicates()
    joined = tags.groupby("movieId", sort=False)["tag"].agg("|".join)
    titles = movies["title"].str.strip()
    item_features = pd.DataFrame({
        "title": titles,
        "year": _title_year(titles),
        "genres": movies["genres"],
        "tags": joined.reindex(movies.index).fillna("").astype(str),
    }, index=movies.index)
    return Interactions.from_arrays(
        ratings["userId"].to_numpy(), ratings["movieId"].to_numpy(), ratings["rating"].to_numpy(),
        timestamps=ratings["timestamp"].to_numpy(), item_features=item_features,
        rating_scale=(0.5, 5, 0.5),
    )


# ---------------------------------------------------------------------------- CaseRecommender sets
def _read_triples(path: Path) -> pd.DataFrame:
    """A ``user<TAB>item<TAB>value`` file with one header line."""
    return _read_csv(path, sep="\t", header=0, names=["user", "item", "value"],
                     usecols=[0, 1, 2], dtype={"user": np.int64, "item": np.int64,
                                               "value": np.float64})


def _implicit(frames: list[pd.DataFrame], *, weighted: bool, duplicates: str,
              **features: Any) -> Interactions:
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return Interactions.from_arrays(
        frame["user"].to_numpy(), frame["item"].to_numpy(),
        weights=frame["value"].to_numpy() if weighted else None, duplicates=duplicates,
        **features,
    )


# The file was converted from the original ";"-separated CSV by turning every ";" into a tab,
# also those inside fields ("&amp;" in publishers, subtitles in titles). Each row ends with the
# three cover URLs (and a tab), so extra tabs can only belong to the title: it takes them.
_BOOK_ROW = (
    r"^(?P<item>\d+)\t(?P<isbn>[^\t]*)\t(?P<title>.*)\t(?P<author>[^\t]*)\t(?P<year>[^\t]*)"
    r"\t(?P<publisher>[^\t]*)(?:\thttps?://[^\t]*){3}\t?$"
)
# Fallback for a row without the three URLs: the leading fields, split at tabs.
_BOOK_ROW_SHORT = (
    r"^(?P<item>\d+)\t(?P<isbn>[^\t]*)\t(?P<title>[^\t]*)(?:\t(?P<author>[^\t]*))?"
    r"(?:\t(?P<year>[^\t]*))?(?:\t(?P<publisher>[^\t]*))?"
)


def _book_items(folder: Path) -> pd.DataFrame:
    path = folder / "items_info.dat.gz"
    lines = _read_lines(path).str.replace("&amp\t", "&", regex=False)
    full = lines.str.extract(_BOOK_ROW)
    short = lines.str.extract(_BOOK_ROW_SHORT)
    matched = full["item"].notna()
    frame = pd.concat([full[matched], short.loc[~matched, full.columns]]).sort_index()
    frame = frame[frame["item"].notna()]
    if frame.empty:
        raise DataError(f"{path}: no line has the expected layout")
    index = pd.Index(frame["item"].astype(np.int64).to_numpy(), name="item")
    year = pd.to_numeric(frame["year"], errors="coerce").to_numpy(dtype=np.float64)
    features = pd.DataFrame({
        "title": frame["title"].str.replace("\t", ";", regex=False).str.strip().to_numpy(),
        "author": frame["author"].str.strip().to_numpy(),
        # The original uses 0 for an unknown year.
        "year": np.where(year > 0, year, np.nan),
        "publisher": frame["publisher"].str.strip().to_numpy(),
        "isbn": frame["isbn"].to_numpy(),
    }, index=index)
    return features[~index.duplicated()]


def _book_users(folder: Path) -> pd.DataFrame:
    frame = _extract(folder / "users_info.dat.gz",
                     r"^(?P<user>\d+)\t(?P<location>.*?)\t(?P<age>[^\t]*)\t?$", "user")
    return pd.DataFrame({
        "location": frame["location"].str.strip(),
        "age": pd.to_numeric(frame["age"], errors="coerce").astype(np.float64),
    }, index=frame.index)


def _load_book_crossing(folder: Path, kind: str | None) -> Interactions:
    features = {"user_features": _book_users(folder), "item_features": _book_items(folder)}
    if kind == "implicit":
        return _implicit([_read_triples(folder / "book_history.dat.gz")], weighted=False,
                         duplicates="sum", **features)
    ratings = _read_triples(folder / "book_ratings.dat.gz")
    return Interactions.from_arrays(
        ratings["user"].to_numpy(), ratings["item"].to_numpy(), ratings["value"].to_numpy(),
        rating_scale=(1, 10, 1), **features,
    )


def _load_steam(folder: Path, kind: str | None) -> Interactions:
    games = _extract(folder / "item_info.dat.gz", r"^(?P<item>\d+)\t(?P<title>.*)$", "item")
    games["title"] = games["title"].str.strip()
    players = _extract(folder / "user_info.dat.gz", r"^(?P<user>\d+)\t\s*(?P<steam_id>\d+)",
                       "user")
    players["steam_id"] = players["steam_id"].astype(np.int64)
    features = {"user_features": players, "item_features": games}
    if kind == "purchase":
        # A few games are listed twice for a user (two editions mapped to one title); a
        # purchase is a yes/no fact, so the pair is kept once.
        return _implicit([_read_triples(folder / "game_purchase.dat.gz")], weighted=False,
                         duplicates="last", **features)
    # Hours played in two editions of one game add up.
    return _implicit([_read_triples(folder / "game_play.dat.gz")], weighted=True,
                     duplicates="sum", **features)


_RETAILROCKET_FILES = {
    "view": "view_ecommerce.dat.gz",
    "cart": "add_to_cart_ecommerce.dat.gz",
    "purchase": "purchase_ecommerce.dat.gz",
}


def _load_retailrocket(folder: Path, kind: str | None) -> Interactions:
    events = list(_RETAILROCKET_FILES) if kind == "all" else [kind]
    frames = [_read_triples(folder / _RETAILROCKET_FILES[event]) for event in events]
    # Each event counts once: a pair viewed twice and bought once has weight 3.
    return _implicit(frames, weighted=False, duplicates="sum")


# ---------------------------------------------------------------------------- text and images
def _load_bbc_news(folder: Path, kind: str | None) -> TextDataset:
    path = folder / "bbc-news.jsonl.gz"
    try:
        # dtype=False: ids such as "business/001" and the texts must stay as written.
        frame = pd.read_json(path, lines=True, compression="gzip", dtype=False,
                             encoding="utf-8")
    except (ValueError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot parse it as JSON lines: {err}") from None
    missing = {"id", "label", "text"} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: records lack the field(s) {sorted(missing)}")
    labels = frame["label"].astype(str).to_numpy(dtype=str)
    return TextDataset(
        texts=frame["text"].astype(str).tolist(),
        labels=_readonly(labels),
        ids=_readonly(frame["id"].astype(str).to_numpy(dtype=str)),
        label_names=sorted(np.unique(labels).tolist()),
    )


def _load_orl_faces(folder: Path, kind: str | None) -> ImageDataset:
    path = folder / "orl_faces.npz"
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    except KeyError as err:
        raise DataError(f"{path}: missing array {err}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: cannot read it as a NumPy .npz archive: {err}") from None
    if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != images.shape[:1]:
        raise DataError(
            f"{path}: expected uint8 images of shape (n, height, width) and n labels, got "
            f"{images.dtype} {images.shape} and labels {labels.shape}"
        )
    return ImageDataset(images=_readonly(images), labels=_readonly(labels.astype(np.int64)))


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# ---------------------------------------------------------------------------- registry
#: The datasets :func:`load_dataset` knows, with a one-line description each.
DATASETS: dict[str, str] = {
    "ml-100k": "MovieLens 100K: 100,000 ratings 1-5 by 943 users of 1,682 movies, with "
               "timestamps, demographics and genres (downloadable)",
    "ml-latest-small": "MovieLens latest small (2018): 100,836 half-star ratings 0.5-5 by 610 "
                       "users of 9,724 movies, with timestamps, genres and tags (downloadable)",
    "book-crossing": "Book-Crossing 20-core: 62,656 ratings 1-10 (kind='explicit') or 272,678 "
                     "implicit reads (kind='implicit'), with book and user metadata",
    "steam": "Steam games: 70,489 hours-played (kind='play') or 129,511 purchases "
             "(kind='purchase'), implicit, with game titles",
    "retailrocket": "Retailrocket e-commerce: 92,487 implicit events; kind='all', 'view', "
                    "'cart' or 'purchase'",
    "bbc-news": "BBC News: 2,225 articles in 5 topics, as a TextDataset",
    "orl-faces": "AT&T/ORL faces: 400 grayscale 112x92 images of 40 people, as an ImageDataset",
}

_SPECS: dict[str, _Spec] = {
    "ml-100k": _Spec("ml-100k", {None: ("u.data", "u.item", "u.user", "u.genre")},
                     _load_ml_100k),
    "ml-latest-small": _Spec("ml-latest-small", {None: ("ratings.csv", "movies.csv", "tags.csv")},
                             _load_ml_latest_small),
    "book-crossing": _Spec("book-crossing", {
        "explicit": ("book_ratings.dat.gz", "items_info.dat.gz", "users_info.dat.gz"),
        "implicit": ("book_history.dat.gz", "items_info.dat.gz", "users_info.dat.gz"),
    }, _load_book_crossing),
    "steam": _Spec("steam", {
        "play": ("game_play.dat.gz", "item_info.dat.gz", "user_info.dat.gz"),
        "purchase": ("game_purchase.dat.gz", "item_info.dat.gz", "user_info.dat.gz"),
    }, _load_steam),
    "retailrocket": _Spec("retailrocket", {
        "all": tuple(_RETAILROCKET_FILES.values()),
        **{event: (file,) for event, file in _RETAILROCKET_FILES.items()},
    }, _load_retailrocket),
    "bbc-news": _Spec("bbc-news", {None: ("bbc-news.jsonl.gz",)}, _load_bbc_news),
    "orl-faces": _Spec("faces", {None: ("orl_faces.npz",)}, _load_orl_faces),
}


# ---------------------------------------------------------------------------- finding files
def cache_dir() -> Path:
    """The user cache matfact downloads datasets into.

    Returns
    -------
    pathlib.Path
        ``$XDG_CACHE_HOME/matfact`` when that variable holds an absolute path,
        else ``~/.cache/matfact``. It may not exist yet.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative value.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "matfact"


def _search_folders(folder: str, data_home: str | os.PathLike | None) -> list[Path]:
    """Dataset folders to try, in order."""
    folders = []
    if data_home is not None:
        home = Path(data_home).expanduser()
        folders += [home / folder, home]  # a root holding the folder, or the folder itself
    env = os.environ.get("MATFACT_DATA", "")
    if env:
        folders.append(Path(env).expanduser() / folder)
    folders.append(cache_dir() / folder)
    return folders


def _where_to_put(name: str, spec: _Spec, files: tuple[str, ...], searched: list[Path]) -> str:
    shown = ", ".join(dict.fromkeys(str(path) for path in searched))
    text = (
        f"It needs the file(s) {', '.join(files)}; searched {shown}. "
        f"Place them in <dir>/{spec.folder}/ and pass data_home=<dir> (or set the MATFACT_DATA "
        f"environment variable to <dir>), or put them in {cache_dir() / spec.folder}/."
    )
    if name in DOWNLOAD_URLS:
        text += (f" The files are in the archive {DOWNLOAD_URLS[name]} "
                 f"(unzip it into <dir>, keeping its {spec.folder}/ folder).")
    return text


# ---------------------------------------------------------------------------- downloading
@lru_cache(maxsize=1)
def _checksums() -> dict[str, str]:
    text = resources.files("matfact.data").joinpath("checksums.json").read_text("utf-8")
    return dict(json.loads(text)["files"])


def _safe_member(name: str) -> bool:
    """Whether an archive member name stays inside the directory it is extracted to."""
    path = PurePosixPath(name.replace("\\", "/"))
    return not (path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name))


def _pick_members(archive: zipfile.ZipFile, folder: str, wanted: list[str],
                  required: tuple[str, ...]) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    unsafe = [info.filename for info in infos if not _safe_member(info.filename)]
    if unsafe:
        raise DatasetNotFoundError(
            f"refusing the archive: member path(s) {unsafe[:5]} point outside its folder"
        )
    by_name = {info.filename: info for info in infos if not info.is_dir()}
    members = {}
    for file in wanted:
        info = by_name.get(f"{folder}/{file}", by_name.get(file))
        if info is not None:
            members[file] = info
    missing = [file for file in required if file not in members]
    if missing:
        raise DatasetNotFoundError(
            f"the archive has no member(s) {', '.join(f'{folder}/{f}' for f in missing)}"
        )
    return members


def _extract_verified(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path,
                      key: str, staged: list[Path]) -> Path:
    """Copy one member to a temp file in ``target`` while hashing it; check the sha256."""
    if info.file_size > _MAX_MEMBER_BYTES:
        raise DatasetNotFoundError(f"archive member {info.filename} is implausibly large "
                                   f"({info.file_size:,} bytes)")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{info.filename.rsplit('/', 1)[-1]}.",
                                    suffix=".part", dir=target)
    tmp = Path(tmp_name)
    staged.append(tmp)
    digest = hashlib.sha256()
    with os.fdopen(fd, "wb") as out, archive.open(info) as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    expected, actual = _checksums()[key], digest.hexdigest()
    if actual != expected:
        raise DatasetNotFoundError(
            f"checksum mismatch for {key}: sha256 {actual}, expected {expected}; the download "
            f"is corrupt or not the published file"
        )
    return tmp


def _download(name: str, spec: _Spec, files: tuple[str, ...], searched: list[Path]) -> Path:
    """Fetch the archive, verify and atomically move the files into the cache; or raise."""
    url = DOWNLOAD_URLS[name]
    root = cache_dir()
    target = root / spec.folder
    prefix = f"{spec.folder}/"
    # Every file checksums.json knows for the dataset (README included: it holds the terms).
    wanted = [key[len(prefix):] for key in _checksums() if key.startswith(prefix)]
    unknown = [file for file in files if file not in wanted]
    if unknown:  # a packaging bug; refuse rather than install unverified files
        raise DatasetNotFoundError(f"no checksum known for {spec.folder}/{unknown[0]}")
    created: list[Path] = []
    staged: list[Path] = []
    archive_path = None
    done = False
    try:
        # Remember every folder made here, to remove them again if the download fails.
        created = [folder for folder in (target, *target.parents) if not folder.exists()]
        target.mkdir(parents=True, exist_ok=True)
        fd, archive_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".zip.part", dir=root)
        archive_path = Path(archive_name)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT) as resp:
            shutil.copyfileobj(resp, out, _CHUNK)
        with zipfile.ZipFile(archive_path) as archive:
            members = _pick_members(archive, spec.folder, wanted, files)
            moves = [(_extract_verified(archive, info, target, prefix + file, staged),
                      target / file) for file, info in members.items()]
        for tmp, final in moves:
            os.replace(tmp, final)
        done = True
    except DatasetNotFoundError as err:  # before OSError: it is a FileNotFoundError
        raise DatasetNotFoundError(
            f"download of {name!r} from {url} failed: {err}. "
            f"{_where_to_put(name, spec, files, searched)}"
        ) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
            RuntimeError) as err:
        # URLError, HTTPError and timeouts are OSErrors (so is an unwritable cache); ValueError
        # is a malformed URL; zipfile raises NotImplementedError for an unknown compression
        # and RuntimeError for an encrypted member.
        raise DatasetNotFoundError(
            f"could not download {name!r} from {url} ({err}). "
            f"{_where_to_put(name, spec, files, searched)}"
        ) from err
    finally:
        if archive_path is not None:
            archive_path.unlink(missing_ok=True)
        if not done:
            for tmp in staged:
                tmp.unlink(missing_ok=True)
            for folder in created:  # deepest first
                try:
                    folder.rmdir()
                except OSError:  # not empty: something else lives there now
                    pass
    return target


# ---------------------------------------------------------------------------- entry point
def load_dataset(name: str, *, data_home: str | os.PathLike | None = None,
                 download: bool = True,
                 kind: str | None = None) -> Interactions | TextDataset | ImageDataset:
    """Load one of the datasets in :data:`DATASETS`.

    Files are looked for, in order, in ``data_home``, ``$MATFACT_DATA`` and the
    user cache (:func:`cache_dir`); a directory matches when it holds the
    dataset's folder (e.g. ``ml-100k/u.data``; ``faces/`` for ``"orl-faces"``)
    with every file needed, and ``data_home`` may also be that folder itself.
    The MovieLens sets are otherwise downloaded into the cache, verified by sha256.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`, e.g. ``"ml-100k"``.
    data_home : str or os.PathLike, default=None
        A directory holding dataset folders, searched first.
    download : bool, default=True
        Whether to download a missing MovieLens set from :data:`DOWNLOAD_URLS`.
    kind : str, default=None
        The variant of a dataset that has several: ``"explicit"``/``"implicit"``
        (book-crossing), ``"play"``/``"purchase"`` (steam), ``"all"``/``"view"``/
        ``"cart"``/``"purchase"`` (retailrocket). ``None`` means the first one.

    Returns
    -------
    Interactions or TextDataset or ImageDataset
        Interactions keep the file order and carry ``user_features`` /
        ``item_features`` indexed by raw id where the dataset has them;
        ``"bbc-news"`` gives a :class:`TextDataset`, ``"orl-faces"`` an
        :class:`ImageDataset`.

    Raises
    ------
    ParameterError
        If ``name`` or ``kind`` is not one the dataset knows.
    DatasetNotFoundError
        If the files are not found and cannot be downloaded (offline, HTTP
        error, checksum mismatch); the message says where to put which files.
    DataError
        If a file is found but cannot be parsed.

    Examples
    --------
    >>> data = load_dataset("ml-100k")  # doctest: +SKIP
    >>> data.shape  # doctest: +SKIP
    (943, 1682)
    """
    spec = _SPECS.get(name.lower()) if isinstance(name, str) else None
    if spec is None:
        choices = "; ".join(f"{key!r}: {text}" for key, text in DATASETS.items())
        raise ParameterError(f"unknown dataset {name!r}; choose one of {choices}")
    name = name.lower()
    if kind is None:
        kind = spec.default_kind
    elif kind not in spec.kinds or spec.default_kind is None:
        valid = [k for k in spec.kinds if k is not None]
        raise ParameterError(
            f"dataset {name!r} has kinds {valid}, got kind={kind!r}" if valid
            else f"dataset {name!r} has no kinds; leave kind=None, got kind={kind!r}"
        )
    files = spec.kinds[kind]
    searched = _search_folders(spec.folder, data_home)
    for folder in searched:
        if all((folder / file).is_file() for file in files):
            return spec.loader(folder, kind)
    if download and name in DOWNLOAD_URLS:
        return spec.loader(_download(name, spec, files, searched), kind)
    raise DatasetNotFoundError(f"dataset {name!r} not found. "
                               f"{_where_to_put(name, spec, files, searched)}")
