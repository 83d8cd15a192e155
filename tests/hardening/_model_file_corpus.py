"""Crafted model files (issue 19): real saved models, edited the ways an attacker would.

:func:`base_models` fits and saves real models of every registered class (plus
time-aware, featured, string-id, titled and whole-matrix variants, and one of
MovieLens-100K's size); :func:`corpus` derives crafted files from them, each
of which ``matfact.load`` must refuse with ``ModelFormatError``:

inconsistent or inflated shapes, decompression bombs (a ~1 MB member declaring
up to 1 GiB, with a consistent header and meta.json), a model scaled up
consistently around bombs, zip entries lying about their size, streams cut
short or longer than declared, deep JSON, huge integers and numbers, NaN
literals, large meta.json, the encryption flag, unknown compression methods,
non-finite values, wrong dtypes, long ids, broken CSR structure, inverted or
malformed rating scales, truncated members and files, checksum mismatches,
duplicate members, path-traversal names and broken layouts.

Zips are written by :func:`write_zip` (a few lines of the format), so a member
can carry any flag, method, size or name and a bomb's deflate stream is built
once and reused. Run as a module, this file is the probe of the slow test:
``python -m tests.hardening._model_file_corpus manifest.json`` loads each file
of the manifest in this fresh process and prints, per file, the outcome, the
seconds, the peak RSS above the RSS just before the load and above the RSS
of the process once warmed up (VmHWM, reset through ``/proc/self/clear_refs``
before each load; freed heap handed back with ``malloc_trim`` first).
"""

from __future__ import annotations

import copy
import ctypes
import gc
import hashlib
import io
import json
import random
import re
import struct
import sys
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

GiB = 2**30
MiB = 2**20


# ---------------------------------------------------------------------- zip writing
@dataclass(frozen=True)
class Entry:
    """One zip member as written: ``data`` is what the archive stores (compressed or not)."""

    name: str
    data: bytes
    method: int = zipfile.ZIP_STORED
    crc: int = 0
    size: int = 0          # the uncompressed size the headers declare
    flags: int = 0


def stored(name: str, content: bytes) -> Entry:
    return Entry(name, content, zipfile.ZIP_STORED, zlib.crc32(content), len(content))


def deflated(name: str, content: bytes) -> Entry:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return Entry(name, packer.compress(content) + packer.flush(), zipfile.ZIP_DEFLATED,
                 zlib.crc32(content), len(content))


def write_zip(entries: list[Entry]) -> bytes:
    """A zip archive of ``entries`` exactly as given (sizes, flags, methods, names)."""
    out, central = bytearray(), bytearray()
    for entry in entries:
        name = entry.name.encode("utf-8")
        flags = entry.flags | (0x800 if not entry.name.isascii() else 0)
        offset = len(out)
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, entry.method, 0, 0x21,
                           entry.crc, len(entry.data), entry.size, len(name), 0)
        out += name + entry.data
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, entry.method, 0,
                               0x21, entry.crc, len(entry.data), entry.size, len(name), 0, 0,
                               0, 0, 0, offset)
        central += name
    out += central
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                       len(central), len(out) - len(central), 0)
    return bytes(out)


_ZERO_STREAMS: dict[int, bytes] = {}


def zero_stream(n: int) -> bytes:
    """A raw deflate stream of ``n`` zero bytes (built once per size: ~1 MB per GiB)."""
    if n not in _ZERO_STREAMS:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        chunk = bytes(16 * MiB)
        parts, left = [], n
        while left:
            part = chunk if left >= len(chunk) else bytes(left)
            parts.append(packer.compress(part))
            left -= len(part)
        parts.append(packer.flush())
        _ZERO_STREAMS[n] = b"".join(parts)
    return _ZERO_STREAMS[n]


def npy_header(dtype: Any, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
        "shape": tuple(int(n) for n in shape)})
    return buffer.getvalue()


def bomb(name: str, dtype: Any, shape: tuple[int, ...]) -> tuple[Entry, str]:
    """A deflated .npy member of zeros: the header, then ``prod(shape)`` zero elements.

    The deflate stream is the header's (ended by a full flush) followed by the cached
    stream of zeros; the CRC is right. The sha256 is right up to 64 MiB and a
    well-formed stand-in beyond (hashing a GiB per case would dominate the run; a
    loader that reads that far has already broken the memory bound).
    """
    header = npy_header(dtype, shape)
    n = int(np.dtype(dtype).itemsize * np.prod(shape, dtype=object))
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = packer.compress(header) + packer.flush(zlib.Z_FULL_FLUSH) + zero_stream(n)
    crc, digest, chunk, left = zlib.crc32(header), hashlib.sha256(header), bytes(16 * MiB), n
    while left:
        part = chunk if left >= len(chunk) else memoryview(chunk)[:left]
        crc = zlib.crc32(part, crc)
        if n <= 64 * MiB:
            digest.update(part)
        left -= len(part)
    sha = digest.hexdigest() if n <= 64 * MiB else hashlib.sha256(header).hexdigest()
    return Entry(name, data, zipfile.ZIP_DEFLATED, crc, len(header) + n), sha


# ---------------------------------------------------------------------- a model to edit
class Model:
    """A saved model opened for editing: its meta.json and its members."""

    def __init__(self, label: str, blob: bytes) -> None:
        self.label = label
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            self.entries = [stored(info.filename, archive.read(info))
                            for info in archive.infolist()]
        self.meta = json.loads(self.member("meta.json"))

    def copy(self) -> Model:
        other = copy.copy(self)
        other.entries = list(self.entries)
        other.meta = copy.deepcopy(self.meta)
        return other

    def member(self, name: str) -> bytes:
        return next(e.data for e in self.entries if e.name == name)

    def put(self, entry: Entry) -> None:
        self.entries = [entry if e.name == entry.name else e for e in self.entries]

    def array(self, name: str) -> np.ndarray:
        return np.lib.format.read_array(io.BytesIO(self.member(f"arrays/{name}.npy")))

    def set_array(self, name: str, array: np.ndarray) -> None:
        """Replace an array and its entry in meta.json (dtype, shape, a right checksum)."""
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, array, allow_pickle=array.dtype.hasobject)
        blob = buffer.getvalue()
        self.meta["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape),
                                     "sha256": hashlib.sha256(blob).hexdigest()}
        member = f"arrays/{name}.npy"
        if any(e.name == member for e in self.entries):
            self.put(stored(member, blob))
        else:
            self.entries.append(stored(member, blob))

    def arrays(self, kind: str | None = None) -> list[str]:
        names = sorted(self.meta["arrays"])
        if kind is None:
            return names
        return [n for n in names if self.meta["arrays"][n]["dtype"][1] in kind]

    def pack(self, meta_bytes: bytes | None = None) -> bytes:
        if meta_bytes is None:
            meta_bytes = json.dumps(self.meta).encode()
        self.put(stored("meta.json", meta_bytes))
        return write_zip(self.entries)


# ---------------------------------------------------------------------- base models
def base_models(root: Path, *, large: bool = True) -> dict[str, bytes]:
    """Real models, fitted and saved: every registered class and the variants that
    carry more state (time, features, titles, string ids, whole-matrix NMF)."""
    import pandas as pd

    import matfact
    import matfact.models  # noqa: F401
    from matfact import Interactions
    from matfact.models import MODEL_REGISTRY

    rng = np.random.default_rng(19)
    n = 400
    users, items = rng.integers(0, 30, n), rng.integers(0, 20, n)
    ratings = rng.integers(1, 6, n).astype(float)
    times = 1_600_000_000 + rng.integers(0, 10**7, n)
    uids = np.array([f"user-{u}" for u in range(30)])
    iids = np.array([f"item-{i}" for i in range(20)])
    item_features = pd.DataFrame({"title": [f"Title {i} ü" for i in range(20)],
                                  "kind": rng.choice(["a", "b", "c"], 20)}, index=iids)
    user_features = pd.DataFrame({"age": rng.integers(15, 70, 30),
                                  "group": rng.choice(["x", "y"], 30)}, index=uids)
    rich = Interactions.from_arrays(uids[users], iids[items], ratings, timestamps=times,
                                    duplicates="last", user_features=user_features,
                                    item_features=item_features, rating_scale=(1, 5))
    plain = Interactions.from_arrays(users, items * 7, ratings, duplicates="last")
    implicit = Interactions.from_arrays(users, items, duplicates="last")
    fits: dict[str, Callable[[], Any]] = {}
    for name, cls in sorted(MODEL_REGISTRY.items()):
        small = {k: v for k, v in {"n_factors": 3, "max_iter": 2, "burn_in": 1}.items()
                 if k in cls().get_params()}
        data = plain if cls.learns_from("explicit") else implicit
        fits[name] = lambda c=cls, s=small, d=data: c(**s).fit(d, progress=False)
    fits.update({
        "BiasedMF-time": lambda: matfact.BiasedMF(n_factors=3, max_iter=2, time_bins=4).fit(
            rich, progress=False),
        "SVDPlusPlus-time": lambda: matfact.SVDPlusPlus(n_factors=3, max_iter=2,
                                                        time_bins=3).fit(rich, progress=False),
        "HybridMF-features": lambda: matfact.HybridMF(n_factors=3, max_iter=2).fit(
            rich, progress=False),
        "BayesianMF-features": lambda: matfact.BayesianMF(
            n_factors=2, max_iter=3, burn_in=1, user_features=True, item_features=True,
            implicit="both").fit(rich, progress=False),
        "Baseline-strings": lambda: matfact.Baseline().fit(rich, progress=False),
        "NMF-matrix": lambda: matfact.NMF(n_components=3, max_iter=5).fit(
            rng.random((15, 8))),
    })
    if large:
        # MovieLens-100K's size (943 users × 1682 items, 64 factors): the example.
        u = np.concatenate([np.arange(943), rng.integers(0, 943, 100_000 - 943)])
        i = np.concatenate([rng.integers(0, 1682, 943), rng.integers(0, 1682, 100_000 - 943)])
        i[:1682] = np.arange(1682)
        ml = Interactions.from_arrays(u, i, rng.integers(1, 6, len(u)).astype(float),
                                      duplicates="last")
        fits["BiasedMF-ml100k"] = lambda: matfact.BiasedMF(n_factors=64, max_iter=1).fit(
            ml, progress=False)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, fit in fits.items():
            path = root / f"{label}.zip"
            fit().save(path)
            out[label] = path.read_bytes()
    return out


# ---------------------------------------------------------------------- crafting
#: Attributes whose first dimension is fixed by the id maps or the ratings.
_EXACT_ROWS = ("user_bias_", "item_bias_", "user_factors_", "item_factors_",
               "user_own_factors_", "implicit_factors_", "item_popularity_", "user_drift_",
               "user_mean_day_", "user_last_time_", "rating_times_", "item_bin_bias_",
               "item_bias_samples_", "user_prior_mean_", "user_prior_precision_",
               "item_titles_", "seen_.indptr", "seen_.indices", "seen_.data", "user_index_",
               "item_index_")
_FACTOR_ROLE = ("user_bias_", "item_bias_", "user_factors_", "item_factors_",
                "user_own_factors_", "implicit_factors_")
_INT_ROLE = ("seen_.indptr", "seen_.indices", "rating_times_", "user_last_time_")
#: Dtypes no role accepts.
_NEVER = ["<f2", "|b1", "<c8", "<c16", "|u1", "<u4", "<i2", ">f4", ">i8", "|S4", "|i1",
          "<f16" if np.dtype(np.longdouble).itemsize == 16 else "<c8", "|O"]

Case = tuple[str, bytes]


def _rows(model: Model) -> list[str]:
    return [n for n in model.arrays() if n in _EXACT_ROWS]


def _rebuilt(array: np.ndarray, shape: tuple[int, ...], rng: random.Random) -> np.ndarray:
    if array.dtype.kind == "U":
        return np.array([f"x{rng.randrange(10**9)}-{j}" for j in range(int(np.prod(shape)))],
                        dtype=array.dtype).reshape(shape)
    if array.dtype.kind in "iu":
        return np.arange(int(np.prod(shape)), dtype=array.dtype).reshape(shape)
    return np.full(shape, 0.5, dtype=array.dtype)


def inconsistent_shape(model: Model, rng: random.Random, big: bool) -> Case:
    if not _rows(model):  # a whole-matrix NMF: no ids to disagree with
        return inflated_shape(model, rng, big)
    name = rng.choice(_rows(model))
    old = model.array(name)
    shape = list(old.shape)
    shape[0] = max(shape[0] + rng.choice([-1, 1, 2, 7]), 0) if shape[0] else 1
    if shape[0] == old.shape[0]:
        shape[0] += 1
    model.set_array(name, _rebuilt(old, tuple(shape), rng))
    return f"inconsistent shape {name} {list(old.shape)}->{shape}", model.pack()


def inflated_shape(model: Model, rng: random.Random, big: bool) -> Case:
    """meta.json declares far more than the member holds (the member is untouched)."""
    name = rng.choice(model.arrays())
    spec = model.meta["arrays"][name]
    shape = spec["shape"] or [1]
    axis = rng.randrange(len(shape))
    shape[axis] = rng.choice([max(shape[axis], 1) * 1000, 2**20, 2**30, 2**37, 2**40])
    spec["shape"] = shape
    return f"inflated shape {name} {shape}", model.pack()


def bomb_member(model: Model, rng: random.Random, big: bool) -> Case:
    """A ~1 MB deflated member of zeros declaring up to 1 GiB, header and meta.json
    consistent with it (the issue's example): only the role check stands in the way."""
    name = rng.choice(model.arrays())
    spec = model.meta["arrays"][name]
    total = rng.choice([GiB, 256 * MiB] if big else [64 * MiB, 32 * MiB])
    dtype = np.dtype(spec["dtype"])
    shape = list(spec["shape"]) or [1]
    rest = int(np.prod(shape[1:])) or 1
    shape[0] = max(total // (dtype.itemsize * rest), 1)
    entry, sha = bomb(f"arrays/{name}.npy", dtype, tuple(shape))
    model.put(entry)
    if rng.random() < 0.75:
        model.meta["arrays"][name] = {"dtype": dtype.str, "shape": shape, "sha256": sha}
    return f"bomb {name} {shape} ({entry.size:,} bytes in {len(entry.data):,})", model.pack()


def scaled_model(model: Model, rng: random.Random, big: bool) -> Case:
    """Every user array scaled to ``n`` users, consistently, out of deflated zeros."""
    n = rng.choice([2**22, 2**21] if big else [2**21]) if rng.random() < 0.6 else 2**16
    kinds = model.meta["kinds"]
    if kinds.get("user_index_") != "index":
        return inflated_shape(model, rng, big)
    sizes = {"user_index_": (n,), "seen_.indptr": (n + 1,)}
    for name in model.arrays():
        if name in _EXACT_ROWS and name.startswith("user_") and name != "user_prior_mean_" \
                and name != "user_prior_precision_":
            sizes[name] = (n, *model.meta["arrays"][name]["shape"][1:])
    for name, shape in sizes.items():
        dtype = np.dtype(model.meta["arrays"][name]["dtype"])
        entry, sha = bomb(f"arrays/{name}.npy", dtype, shape)
        model.put(entry)
        model.meta["arrays"][name] = {"dtype": dtype.str, "shape": list(shape), "sha256": sha}
    model.meta["kinds"]["seen_"]["shape"][0] = n
    return f"scaled to {n:,} users", model.pack()


def worst_case(model: Model, rng: random.Random, big: bool) -> Case:
    """All the bounds spent at once, refused only by the last array read.

    meta.json as large as the bounds let through (420k strings kept as a learned
    attribute), every user array grown consistently to as many users as fit under
    ``EXPANSION_FREE_BYTES`` with distinct ids (deflated, so the file stays small), and
    a NaN in the last float array read: the most a small file can make a load hold.
    """
    from matfact.models.persistence import EXPANSION_FREE_BYTES

    names = model.arrays()
    if model.meta["kinds"].get("user_index_") != "index" or any(
            n in names for n in ("user_embeddings_", "user_columns_", "user_prior_mean_")) \
            or model.meta["arrays"]["user_index_"]["dtype"] != "<i8":
        return large_meta(model, rng, big)
    users = [n for n in names if n.startswith("user_") and n in _EXACT_ROWS]
    row_bytes = sum(np.dtype(model.meta["arrays"][n]["dtype"]).itemsize
                    * int(np.prod(model.meta["arrays"][n]["shape"][1:])) for n in users)
    n = (EXPANSION_FREE_BYTES - 64 * 1024) // (row_bytes + 4)
    indptr = model.array("seen_.indptr")
    grown = np.full(n + 1, indptr[-1], dtype=indptr.dtype)
    grown[:len(indptr)] = indptr
    arrays = {"user_index_": np.arange(n, dtype=np.int64), "seen_.indptr": grown}
    for name in users:
        if name != "user_index_":
            old = model.array(name)
            arrays[name] = np.full((n, *old.shape[1:]), 0.5 if old.dtype.kind == "f" else 0,
                                   dtype=old.dtype)
    last = [a for a, kind in model.meta["kinds"].items()
            if kind == "ndarray" and model.meta["arrays"][a]["dtype"][1] == "f"][-1]
    arrays[last] = arrays[last] if last in arrays else model.array(last).copy()
    arrays[last].reshape(-1)[-1] = np.nan
    for name, array in arrays.items():
        model.set_array(name, array)
        model.put(deflated(f"arrays/{name}.npy", model.member(f"arrays/{name}.npy")))
    model.meta["kinds"]["seen_"]["shape"][0] = n
    model.meta["state"]["loss_history_"] = [f"{i:07d}-{'s' * 8}" for i in range(420_000)]
    model.meta["kinds"]["loss_history_"] = "json"
    return f"worst case ({n:,} users, NaN in {last})", model.pack(
        json.dumps(model.meta, separators=(",", ":")).encode())


def _central(blob: bytes, member: str) -> int:
    """Offset of ``member``'s central-directory record."""
    at = blob.index(b"PK\x01\x02" + b"\x14\x00\x14\x00")
    while True:
        length = struct.unpack_from("<H", blob, at + 28)[0]
        if blob[at + 46:at + 46 + length] == member.encode():
            return at
        at = blob.index(b"PK\x01\x02", at + 46 + length)


def size_lie(model: Model, rng: random.Random, big: bool) -> Case:
    """The central directory lies about a member's uncompressed or stored size."""
    name = rng.choice(model.arrays())
    member = f"arrays/{name}.npy"
    blob = bytearray(model.pack())
    at = _central(bytes(blob), member)
    field = rng.choice([20, 24])  # compressed size, uncompressed size
    size = struct.unpack_from("<L", blob, at + field)[0]
    new = rng.choice([size - 1, size + 1, size * 2, 0, 2**32 - 1, max(size // 2, 1)])
    struct.pack_into("<L", blob, at + field, new)
    return f"size lie {member} field {field} {size}->{new}", bytes(blob)


def cut_stream(model: Model, rng: random.Random, big: bool) -> Case:
    """A deflated member whose stream ends early, or holds more than it declares."""
    name = rng.choice(model.arrays())
    member = f"arrays/{name}.npy"
    content = model.member(member)
    entry = deflated(member, content)
    if rng.random() < 0.5:
        cut = rng.randrange(0, max(len(entry.data) - 1, 1))
        model.put(replace(entry, data=entry.data[:cut]))
        return f"cut stream {member} at {cut}", model.pack()
    # Headers honest about a stream longer than meta.json's dtype × shape.
    model.put(deflated(member, content + bytes(rng.randrange(1, 4096))))
    return f"longer stream {member}", model.pack()


def deep_json(model: Model, rng: random.Random, big: bool) -> Case:
    depth = rng.choice([65, 100, 1_000, 10_000, 200_000 if big else 50_000])
    where = rng.choice(["params", "state", "whole", "arrays"])
    nested = "[" * depth + "]" * depth
    text = json.dumps(model.meta)
    if where == "whole":
        return f"deep json {depth} whole", model.pack(("[" * depth + text + "]" * depth).encode())
    marker = '"__deep__"'
    section = model.meta[where]
    section["x_" if where != "arrays" else "deep_"] = "__deep__"
    text = json.dumps(model.meta).replace(marker, nested, 1)
    return f"deep json {depth} in {where}", model.pack(text.encode())


def huge_number(model: Model, rng: random.Random, big: bool) -> Case:
    digits = rng.choice([31, 100, 4_301, 5_001, 100_000])
    token = rng.choice(["int", "negative", "float", "exp", "nan", "inf", "-inf", "long-float"])
    text = {"int": "9" * digits, "negative": "-" + "9" * digits, "float": "1e999",
            "exp": "-1e400", "nan": "NaN", "inf": "Infinity", "-inf": "-Infinity",
            "long-float": "0." + "1" * max(digits, 100)}[token]
    targets = [("format_version",), ("state", "n_iter_"), ("state", "global_mean_"),
               ("params", "max_iter"), ("arrays", model.arrays()[0], "shape", 0),
               ("kinds", "seen_", "shape", 0), ("state", "rating_scale_", 0)]
    path = rng.choice([t for t in targets if _has(model.meta, t)] or [("format_version",)])
    parent = model.meta
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = "__number__"
    return f"huge number {token} ({digits}) at {path}", model.pack(
        json.dumps(model.meta).replace('"__number__"', text, 1).encode())


def _has(meta: Any, path: tuple) -> bool:
    for key in path:
        try:
            meta = meta[key]
        except (KeyError, IndexError, TypeError):
            return False
    return True


def large_meta(model: Model, rng: random.Random, big: bool) -> Case:
    from matfact.models.persistence import MAX_META_BYTES

    kind = rng.choice(["bytes", "wide", "values", "containers", "strings", "within-bounds",
                       "within-bounds-strings", "within-bounds-wide"])
    if kind.startswith("within-bounds"):
        # About as much as the bounds let through, parsed, then refused as an unknown
        # parameter: the most a meta.json can cost.
        if kind == "within-bounds":  # 300k distinct floats and 90k lists
            model.meta["params"]["x"] = [i + 0.5 for i in range(300_000)]
            model.meta["params"]["y"] = [[] for _ in range(90_000)]
        elif kind == "within-bounds-strings":
            # 420k distinct strings (~8 MiB of ASCII) as a learned attribute, kept while
            # every array is read; the last float array read holds a NaN.
            model.meta["state"]["loss_history_"] = [f"{i:07d}-{'s' * 8}"
                                                    for i in range(420_000)]
            model.meta["kinds"]["loss_history_"] = "json"
            last = model.arrays("f")[-1]
            array = model.array(last).copy()
            array.reshape(-1)[-1] = np.nan
            model.set_array(last, array)
        else:  # one string past U+FFFF: 4 bytes per character once decoded
            model.meta["params"]["x"] = "\U0001F600" + "w" * (3 * MAX_META_BYTES // 9 - 4096)
        return f"large meta.json ({kind})", model.pack(
            json.dumps(model.meta, separators=(",", ":")).encode())
    if kind in ("bytes", "wide"):
        meta = json.dumps(model.meta).encode()
        size = MAX_META_BYTES + 1 if kind == "bytes" else MAX_META_BYTES // 2
        return f"large meta.json ({kind})", model.pack(
            meta[:-1] + b', "x": "\\ud83d\\ude00' + b"w" * (size - len(meta)) + b'"}')
    payload = {"values": "[" + ",".join(["0"] * 600_000) + "]",
               "containers": "[" + ",".join(["{}"] * 150_000) + "]",
               "strings": "[" + ",".join(['"a"'] * 600_000) + "]"}[kind]
    model.meta["state"]["x_"] = "__big__"
    text = json.dumps(model.meta).replace('"__big__"', payload, 1)
    return f"large meta.json ({kind})", model.pack(text.encode())


def encrypted(model: Model, rng: random.Random, big: bool) -> Case:
    name = rng.choice(["meta.json", *(f"arrays/{n}.npy" for n in model.arrays())])
    bit = rng.choice([0x1, 0x40, 0x41])
    model.pack()
    model.put(replace(next(e for e in model.entries if e.name == name), flags=bit))
    return f"encryption flag {bit:#x} on {name}", write_zip(model.entries)


def compression_method(model: Model, rng: random.Random, big: bool) -> Case:
    name = rng.choice(["meta.json", *(f"arrays/{n}.npy" for n in model.arrays())])
    method = rng.choice([1, 6, 9, 97, 98, 99])
    model.pack()
    model.put(replace(next(e for e in model.entries if e.name == name), method=method))
    return f"compression method {method} on {name}", write_zip(model.entries)


def non_finite(model: Model, rng: random.Random, big: bool) -> Case:
    names = model.arrays("f")
    if not names:
        return wrong_dtype(model, rng, big)
    name = rng.choice(names)
    array = model.array(name).copy()
    if not array.size:
        return wrong_dtype(model, rng, big)
    flat = array.reshape(-1)
    for _ in range(rng.choice([1, 1, 3])):
        flat[rng.randrange(flat.size)] = rng.choice([np.nan, np.inf, -np.inf])
    model.set_array(name, array)
    return f"non-finite in {name}", model.pack()


def wrong_dtype(model: Model, rng: random.Random, big: bool) -> Case:
    name = rng.choice(model.arrays())
    array = model.array(name)
    choices = list(_NEVER)
    if name in _FACTOR_ROLE:
        choices += ["<f8", "<i4", "<i8"]
    if name in _INT_ROLE:
        choices += ["<f4", "<f8", "<U3"]
    if name in ("user_index_", "item_index_"):
        choices += ["<f8", "<i4", "<f4"]
    elif array.dtype.kind != "U":
        choices += ["<U3"]
    # Never the array's own dtype (|u1 is right for a text id map): that file is no case.
    dtype = np.dtype(rng.choice([c for c in choices if np.dtype(c) != array.dtype]))
    if dtype.hasobject:
        cast = np.empty(array.shape, dtype=object)
        cast[...] = 0
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cast = array.astype(dtype)
        except (ValueError, TypeError):
            cast = np.zeros(array.shape, dtype=dtype)
    model.set_array(name, cast)
    return f"dtype {dtype.str} for {name}", model.pack()


def long_ids(model: Model, rng: random.Random, big: bool) -> Case:
    name = rng.choice(["user_index_", "item_index_"])
    if name not in model.meta["arrays"]:
        return wrong_dtype(model, rng, big)
    kind = model.meta["kinds"][name]
    count = kind["count"] if isinstance(kind, dict) else len(model.array(name))
    ids = [f"id{j}" for j in range(count)]
    ids[rng.randrange(len(ids))] = "L" * rng.choice([257, 300, 5_000])
    if isinstance(kind, dict):  # a text id map: UTF-8 joined by NUL, its count unchanged
        model.set_array(name, np.frombuffer("\x00".join(ids).encode(), dtype=np.uint8))
    else:
        model.set_array(name, np.array(ids))
    return f"long id in {name}", model.pack()


def broken_csr(model: Model, rng: random.Random, big: bool) -> Case:
    if "seen_.indptr" not in model.meta["arrays"]:
        return inflated_shape(model, rng, big)
    how = rng.choice(["decreasing", "end", "start", "index-high", "index-negative"])
    if how.startswith("index"):
        indices = model.array("seen_.indices").copy()
        cols = model.meta["kinds"]["seen_"]["shape"][1]
        indices[rng.randrange(len(indices))] = cols + 5 if how == "index-high" else -1
        model.set_array("seen_.indices", indices)
    else:
        indptr = model.array("seen_.indptr").copy()
        if how == "decreasing":
            at = rng.randrange(1, len(indptr) - 1)
            indptr[at] = indptr[at + 1] + 1
        elif how == "end":
            indptr[-1] -= 1
        else:
            indptr[0] = 1
        model.set_array("seen_.indptr", indptr)
    return f"broken csr ({how})", model.pack()


def bad_scalars(model: Model, rng: random.Random, big: bool) -> Case:
    kinds, state = model.meta["kinds"], model.meta["state"]
    if "rating_scale_" not in kinds:
        return huge_number(model, rng, big)
    if "global_mean_" in kinds and rng.random() < 0.35:
        state["global_mean_"] = rng.choice([None, "3", True, [3.0], {"v": 3}])
        return f"global_mean_ {state['global_mean_']!r}", model.pack()
    kinds["rating_scale_"] = "tuple"
    state["rating_scale_"] = rng.choice([[5.0, 1.0], [5, 4.5], [1.0, None], ["1", "5"], [1.0],
                                         [1, 2, 3], True, {"lo": 1}, [None, None]])
    return f"rating_scale_ {state['rating_scale_']!r}", model.pack()


def truncated(model: Model, rng: random.Random, big: bool) -> Case:
    if rng.random() < 0.5:
        blob = model.pack()
        cut = rng.randrange(0, len(blob) - 1)
        return f"file cut at {cut}", blob[:cut]
    name = rng.choice(["meta.json", *(f"arrays/{n}.npy" for n in model.arrays())])
    model.pack()
    content = model.member(name)
    model.put(stored(name, content[:rng.randrange(0, len(content))]))
    return f"member {name} truncated", write_zip(model.entries)


def checksum(model: Model, rng: random.Random, big: bool) -> Case:
    name = rng.choice(model.arrays())
    if rng.random() < 0.3 or not model.array(name).size:
        model.meta["arrays"][name]["sha256"] = rng.choice(["0" * 64, "x", "", "A" * 64])
        return f"sha256 of {name} replaced", model.pack()
    member = f"arrays/{name}.npy"
    blob = bytearray(model.member(member))
    header = len(blob) - model.array(name).nbytes
    at = rng.randrange(header, len(blob))
    blob[at] ^= 1 << rng.randrange(8)
    model.put(stored(member, bytes(blob)))
    return f"byte {at} of {member} flipped", model.pack()


def duplicate(model: Model, rng: random.Random, big: bool) -> Case:
    name = rng.choice(["meta.json", *(f"arrays/{n}.npy" for n in model.arrays())])
    model.pack()
    original = next(e for e in model.entries if e.name == name)
    twin = stored(name, rng.choice([original.data, original.data[:-1] + b"\x00", b"{}"]))
    model.entries.insert(rng.randrange(len(model.entries) + 1), twin)
    return f"duplicate member {name}", write_zip(model.entries)


_TRAVERSAL = ["../evil", "../../etc/passwd", "/abs/path", "arrays/../../x", "..\\x",
              "x/../y", "a\x00b", "C:\\x", "~/.ssh/id", "user_bias_/../../z", ".", ""]


def traversal(model: Model, rng: random.Random, big: bool) -> Case:
    how = rng.choice(["array-name", "member-name", "attribute"])
    bad = rng.choice(_TRAVERSAL)
    name = rng.choice(model.arrays())
    if how == "array-name":
        model.meta["arrays"][bad] = model.meta["arrays"].pop(name)
        return f"array name {bad!r}", model.pack()
    if how == "member-name":
        model.pack()
        entry = next(e for e in model.entries if e.name == f"arrays/{name}.npy")
        model.entries = [replace(e, name=f"arrays/{bad}.npy" if not bad.startswith("/") else
                                 bad) if e is entry else e for e in model.entries]
        return f"member name {bad!r}", write_zip(model.entries)
    kind = model.meta["kinds"].pop(name.split(".")[0])
    model.meta["kinds"][bad + "_"] = kind
    return f"attribute name {bad + '_'!r}", model.pack()


def layout(model: Model, rng: random.Random, big: bool) -> Case:
    how = rng.choice(["no-arrays", "missing-array", "orphan-array", "kind", "version",
                      "class", "params", "sections", "format"])
    meta = model.meta
    if how == "no-arrays":
        del meta["arrays"]
    elif how == "missing-array":
        name = rng.choice(model.arrays())
        del meta["arrays"][name]
    elif how == "orphan-array":
        model.set_array("orphan_", np.zeros(3, np.float32))
    elif how == "kind":
        attr = rng.choice(sorted(meta["kinds"]))
        meta["kinds"][attr] = rng.choice(["pickle", "eval", {"kind": "dense"}, 1, None,
                                          {"kind": "csr", "shape": [1, 2], "x": 1}])
    elif how == "version":
        meta["format_version"] = rng.choice([2, 99, "1", None, 1.5, True])
    elif how == "class":
        meta["class"] = rng.choice(["os.system", "Recommender", "", None, "builtins.eval"])
    elif how == "params":
        meta["params"][rng.choice(["evil", "n_factors", "max_iter"])] = rng.choice(
            [-5, "x", [1], {"a": 1}])
    elif how == "sections":
        meta[rng.choice(["params", "state", "kinds"])] = rng.choice([[], "x", None, 1])
    else:
        meta["format"] = rng.choice(["other", None, 1])
    return f"layout ({how})", model.pack()


CRAFTS: list[Callable[[Model, random.Random, bool], Case]] = [
    inconsistent_shape, inflated_shape, bomb_member, scaled_model, size_lie, cut_stream,
    deep_json, huge_number, large_meta, encrypted, compression_method, non_finite,
    wrong_dtype, long_ids, broken_csr, bad_scalars, truncated, checksum, duplicate,
    traversal, layout, worst_case,
]


def corpus(bases: dict[str, bytes], n: int, *, seed: int = 19,
           big: bool = True) -> Iterator[tuple[str, bytes]]:
    """``n`` crafted files, round-robin over the crafts and the base models (seeded).

    ``big`` allows the largest bombs (1 GiB declared, 2²² users); the fast sample
    keeps them at 64 MiB and 2²¹ users.
    """
    models = {label: Model(label, blob) for label, blob in sorted(bases.items())}
    labels = sorted(models)
    for case in range(n):
        craft = CRAFTS[case % len(CRAFTS)]
        label = labels[(case // len(CRAFTS) + case) % len(labels)]
        rng = random.Random(f"{seed}-{case}")
        description, blob = craft(models[label].copy(), rng, big)
        yield f"{case:04d} {label}: {description}", blob


# ---------------------------------------------------------------------- the probe
def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        return int(re.search(rf"^{field}:\s+(\d+) kB", handle.read(), re.M).group(1)) * 1024


def _trim() -> None:
    """Hand freed heap memory back to the system (glibc), so that a load's growth is not
    hidden by memory an earlier load freed but the allocator kept."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")  # resets VmHWM to the current RSS (Linux)


def probe(files: list[str], warm: list[str]) -> list[dict]:
    """Load each file in this process: outcome, seconds, peak RSS above the RSS before."""
    import matfact
    from matfact.exceptions import ModelFormatError

    for path in warm:  # imports, numba's compiled kernels, first-call caches
        matfact.load(path)
    gc.collect()
    _trim()
    start = _status("VmRSS")
    results = []
    for path in files:
        gc.collect()
        _trim()
        before = _status("VmRSS")
        _reset_peak()
        began = time.perf_counter()
        try:
            matfact.load(path)
            outcome, message = "loaded", ""
        except ModelFormatError as err:
            outcome, message = "ModelFormatError", str(err)
        except BaseException as err:  # noqa: BLE001 - the test reports every other outcome
            outcome, message = type(err).__name__, str(err)
        seconds = time.perf_counter() - began
        peak = _status("VmHWM")
        results.append({"file": path, "outcome": outcome, "message": message[:300],
                        "seconds": seconds, "peak_above_baseline": peak - before,
                        "peak_above_start": peak - start, "baseline": before,
                        "start": start})
    return results


if __name__ == "__main__":
    manifest = json.loads(Path(sys.argv[1]).read_text())
    json.dump(probe(manifest["files"], manifest["warm"]), sys.stdout)
