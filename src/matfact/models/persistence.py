"""Saving and loading models without pickle.

A model file is a ``.zip`` (or a directory with the same layout) holding

- ``meta.json``: format name and version, matfact version, class name,
  hyper-parameters, scalar learned state, and for each array its dtype, shape
  and sha256;
- ``arrays/<name>.npy``: each learned array, read back with
  ``allow_pickle=False``.

Loading builds only classes from :data:`matfact.models.base.MODEL_REGISTRY`
(found by :func:`matfact.models.model_class`, which imports that class's module only)
and never executes anything from the file. Saving writes a temporary file (or
directory) beside the target and renames it into place, so a crash at any
moment leaves either the previous model or the new one.

Loading treats the file as hostile (issue 19): every declared dtype and shape is
checked against the model's own metadata before any array is decompressed,
arrays are streamed with a hard stop at their declared size, ``meta.json`` is
parsed with its nesting, size and numbers bounded, and every failure of any
kind is a :class:`~matfact.exceptions.ModelFormatError`. The bounds are the
module constants below.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from matfact._version import __version__
from matfact.data.interactions import IdIndex, max_id_length
from matfact.exceptions import MatfactError, ModelFormatError

__all__ = ["save_model", "load_model", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "matfact-model"
FORMAT_VERSION = 1
#: Bounds of a model file, checked before anything they bound is read or built.
MAX_META_BYTES = 8 * 2**20       # meta.json (params, scalar state, encoder vocabularies),
#                                  of ASCII text: less for text that decodes wider
MAX_JSON_DEPTH = 64              # nesting of meta.json
MAX_JSON_VALUES = 500_000        # values in meta.json
MAX_JSON_CONTAINERS = 100_000    # objects and lists in meta.json
MAX_INT_DIGITS = 30              # digits of one integer in meta.json
MAX_ARRAY_BYTES = 32 * 2**30     # one array (the shape checks of _plan bound it first)
MAX_DIM = 2**40                  # one dimension of an array
MAX_NPY_HEADER = 4096            # the header of one .npy member
_MIN_NPY_HEADER = 10             # magic, version and length fields
MAX_TITLE_LENGTH = 4096          # characters of one item title
MAX_MEMBERS = 4096               # members of the archive
#: A zip whose arrays expand to more than EXPANSION_FREE_BYTES must hold at least
#: 1/MAX_EXPANSION of that: save stores arrays uncompressed, and factors, indices and
#: timestamps re-compressed by a zip tool shrink a few times at most, while a bomb
#: (1 MB of zeros declaring 1 GiB) shrinks a thousand times.
EXPANSION_FREE_BYTES = 8 * 2**20
MAX_EXPANSION = 32
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.(indptr|indices|data))?$")


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN/inf; a missing value reads back as None
    return value


def _json_clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_clean(v) for v in value]
    return _json_scalar(value)


def _split_state(model: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Learned attributes → (kinds, JSON state, arrays)."""
    kinds: dict[str, Any] = {}
    state: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, value in vars(model).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        value = _json_scalar(value)
        if value is None or isinstance(value, (bool, int, float, str)):
            kinds[name], state[name] = "json", value
        elif isinstance(value, tuple):
            kinds[name], state[name] = "tuple", [_json_scalar(v) for v in value]
        elif isinstance(value, (list, dict)):
            kinds[name], state[name] = "json", _json_clean(value)
        elif isinstance(value, IdIndex):
            if value.kind == "str":
                kinds[name] = {"kind": "text_index", "count": len(value)}
                arrays[name] = _utf8_ids(value.ids)
            else:
                kinds[name], arrays[name] = "index", value.ids
        elif sp.issparse(value):
            csr = sp.csr_matrix(value)
            kinds[name] = {"kind": "csr", "shape": list(csr.shape)}
            arrays[f"{name}.indptr"] = csr.indptr
            arrays[f"{name}.indices"] = csr.indices
            arrays[f"{name}.data"] = csr.data
        elif isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise TypeError(f"cannot save {name}: object arrays would need pickle")
            kinds[name], arrays[name] = "ndarray", value
        else:
            raise TypeError(f"cannot save attribute {name} of type {type(value).__name__}")
    return kinds, state, arrays


def _params_for_json(model: Any) -> dict[str, Any]:
    params = {}
    for key, value in model.get_params(deep=False).items():
        value = _json_scalar(value)
        try:
            json.dumps(value)
        except TypeError:
            value = None  # e.g. a Generator as random_state: not reproducible from a file
        params[key] = value
    return params


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path``: a ``.zip`` file, or a directory otherwise.

    The new model is written beside the target and renamed into place, so the
    previous file survives a crash at any point.
    """
    model._check_savable()
    path = Path(path)
    kinds, state, arrays = _split_state(model)
    blobs = {name: _npy_bytes(array) for name, array in arrays.items()}
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "matfact_version": __version__,
        "class": type(model).__name__,
        "params": _params_for_json(model),
        "state": state,
        "kinds": kinds,
        "arrays": {
            name: {"dtype": arrays[name].dtype.str, "shape": list(arrays[name].shape),
                   "sha256": hashlib.sha256(blob).hexdigest()}
            for name, blob in blobs.items()
        },
    }
    meta_bytes = json.dumps(meta, indent=1, allow_nan=False).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    if path.suffix.lower() == ".zip":
        _save_zip(path, meta_bytes, blobs)
    else:
        _save_dir(path, meta_bytes, blobs)


def _tmp_prefix(path: Path) -> str:
    """``.<name>.<pid>.``: the temporary names the process that writes it."""
    return f".{path.name}.{os.getpid()}."


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries beside ``path`` left by saves whose process died (kill -9).

    A save killed before its rename leaves its hidden temporary behind (found by
    the kill -9 loop in tests/hardening); the next save of the same path removes
    those whose writing process no longer exists on this host.
    """
    start = f".{path.name}."
    for stale in path.parent.glob(f"{glob.escape(start)}*.tmp"):
        pid = stale.name[len(start):].split(".", 1)[0]
        if not pid.isdigit() or _process_exists(int(pid)):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stale.unlink()


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or cannot tell: leave its file alone
    return True


def _save_zip(path: Path, meta_bytes: bytes, blobs: dict[str, bytes]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            # Stored, not deflated: float factors barely compress and loading stays fast.
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr("meta.json", meta_bytes)
                for name, blob in blobs.items():
                    archive.writestr(f"arrays/{name}.npy", blob)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _save_dir(path: Path, meta_bytes: bytes, blobs: dict[str, bytes]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        (tmp / "arrays").mkdir()
        for name, blob in blobs.items():
            _write_synced(tmp / "arrays" / f"{name}.npy", blob)
        _write_synced(tmp / "meta.json", meta_bytes)
        if path.exists():
            if not (path / "meta.json").exists():
                raise MatfactError(f"{path} exists and is not a matfact model; not replacing it")
            # Directories cannot be swapped atomically: keep the old one as a backup
            # until the new one is in place; load_model falls back to it.
            backup = path.with_name(path.name + ".bak")
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(path, backup)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
            shutil.rmtree(backup)
        else:
            os.replace(tmp, path)
            _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


# ====================================================================== loading
#
# Loading trusts nothing in the file, and every failure is a ModelFormatError. Before
# any array is decompressed: meta.json is read (bounded) and parsed with its nesting,
# its count of values and its numbers bounded; the class, the parameters and the
# scalar state are checked; each array's dtype and shape is derived from the file's
# own metadata (the id maps' declared lengths, the parameters, the other arrays) and
# checked against the attribute's role (:func:`_plan`); each member's entry (flags,
# compression, size) must agree with its declared dtype × shape. Only then are the
# arrays read, streamed into a buffer of the declared size with a hard stop at it, the
# id maps and the CSR row pointers first, each checked before the next is read.
# Issue 19: a 1 MB member declaring 1 GiB once made a load peak at 2.3 GiB.

#: The members a model file may compress with (what zip tools write by default).
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                 zipfile.ZIP_LZMA)
#: Zip flag bits of an encrypted member (traditional and strong encryption).
_ENCRYPTED = 0x1 | 0x40
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]|"', re.DOTALL)
#: Characters Python stores in 4 bytes (past U+FFFF) and in 2 (U+0100 to U+FFFF), as UTF-8
#: lead bytes or as JSON escapes (save writes ASCII with escapes): one such character
#: widens a whole decoded text or parsed string.
_WIDTHS = ((re.compile(rb"[\xf0-\xf7]|\\u[dD][89abAB]"), 4),
           (re.compile(rb"[\xc4-\xef]|\\u(?:0[1-9a-fA-F]|[1-9a-fA-F][0-9a-fA-F])"), 2))
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_FLOAT_TEXT = 40  # repr of a float needs at most 24 characters
_CHUNK = 2**20


class _MetaError(ValueError):
    """meta.json breaks a bound (nesting, size, a number) before or while it is parsed."""


def _check_json_extent(raw: bytes) -> None:
    """Refuse a document nested too deep or holding too many values, before parsing it.

    One scan of a regular expression over strings and brackets: a string is
    matched whole (possessively, so nothing backtracks), a quote that opens no
    string ends the scan (the text is not JSON), and the scan stops as soon as a
    bound is passed, so a document of 200,000 ``[`` costs 65 steps.
    """
    depth = containers = strings = commas_in_strings = 0
    for match in _JSON_TOKEN.finditer(raw):
        start, end = match.span()
        first = raw[start]
        if first == 0x22:  # '"'
            if end - start == 1:
                raise _MetaError("meta.json is not valid JSON (a string never ends)")
            strings += 1
            commas_in_strings += raw.count(b",", start, end)
            if strings > MAX_JSON_VALUES:
                break
        elif first in (0x5B, 0x7B):  # '[', '{'
            depth += 1
            containers += 1
            if depth > MAX_JSON_DEPTH:
                raise _MetaError(f"meta.json is nested deeper than {MAX_JSON_DEPTH} levels")
            if containers > MAX_JSON_CONTAINERS:
                raise _MetaError(f"meta.json holds more than {MAX_JSON_CONTAINERS:,} "
                                 f"objects and lists")
        else:
            depth -= 1
    values = raw.count(b",") - commas_in_strings + containers + 1
    if strings > MAX_JSON_VALUES or values > MAX_JSON_VALUES:
        raise _MetaError(f"meta.json holds more than {MAX_JSON_VALUES:,} values")


def _json_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise _MetaError(f"meta.json holds an integer of {digits:,} digits (at most "
                         f"{MAX_INT_DIGITS})")
    return int(text)


def _json_float(text: str) -> float:
    if len(text) > _MAX_FLOAT_TEXT:
        raise _MetaError(f"meta.json holds a number written with {len(text):,} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _MetaError(f"meta.json holds a number out of range ({text})")
    return value


def _json_constant(name: str) -> None:
    raise _MetaError(f"meta.json holds {name}, which is not JSON (save writes null)")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _MetaError("meta.json repeats a key in one object")
    return obj


def _parse_meta(raw: bytes) -> Any:
    """``json.loads`` with nesting, value count and numbers bounded before they can cost.

    The text is held three times while parsed (the bytes, the decoded text, the
    strings parsed out of it), the last two at Python's width for the widest
    character: the bound is three times ``MAX_META_BYTES`` of that.
    """
    width = next((w for pattern, w in _WIDTHS if pattern.search(raw)), 1)
    if len(raw) * (1 + 2 * width) > 3 * MAX_META_BYTES:
        raise _MetaError(f"meta.json is larger than allowed: {len(raw):,} bytes of text "
                         f"stored {width} bytes per character once decoded (at most "
                         f"{3 * MAX_META_BYTES // (1 + 2 * width):,})")
    _check_json_extent(raw)
    return json.loads(raw.decode("utf-8"), parse_int=_json_int, parse_float=_json_float,
                      parse_constant=_json_constant, object_pairs_hook=_json_object)


class _Reader:
    """The members of a zip archive or a directory: sized, opened, never extracted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.archive: zipfile.ZipFile | None = None
        self.infos: dict[str, zipfile.ZipInfo] = {}
        self.size = 0
        if path.is_dir():
            return
        self.size = path.stat().st_size
        if not zipfile.is_zipfile(path):
            raise ModelFormatError(f"{path} is not a matfact model file (not a zip archive)")
        try:
            self.archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
            # NotImplementedError: a flipped byte can announce a zip version zipfile lacks.
            raise ModelFormatError(f"{path} is a damaged zip archive: {err}") from None
        infos = self.archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ModelFormatError(f"{path} holds {len(infos):,} members; a model has a few "
                                   f"dozen (at most {MAX_MEMBERS:,})")
        for info in infos:
            if info.filename in self.infos:
                raise ModelFormatError(f"{path} holds two members named "
                                       f"{info.filename[:80]!r}; refusing an ambiguous file")
            if info.flag_bits & _ENCRYPTED:
                raise ModelFormatError(f"{path}: member {info.filename[:80]!r} is encrypted; "
                                       f"matfact never writes encrypted models")
            self.infos[info.filename] = info

    def entry(self, member: str) -> int:
        """The size of ``member`` as stored (uncompressed), before reading any of it."""
        if self.archive is None:
            target = self.path / member
            if not target.is_file():
                raise ModelFormatError(f"{self.path}: missing {member}")
            return target.stat().st_size
        info = self.infos.get(member)
        if info is None:
            raise ModelFormatError(f"{self.path}: missing {member}")
        if info.compress_type not in _COMPRESSIONS:
            raise ModelFormatError(f"{self.path}: {member} uses zip compression method "
                                   f"{info.compress_type}; re-save the model with matfact")
        if (info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size) \
                or info.header_offset + info.compress_size > self.size:
            raise ModelFormatError(f"{self.path}: the zip entry of {member} declares sizes "
                                   f"its file cannot hold; the file was edited or is damaged")
        return info.file_size

    def open(self, member: str) -> Any:
        if self.archive is None:
            return open(self.path / member, "rb")  # noqa: SIM115 - the caller closes it
        return self.archive.open(self.infos[member])

    def read(self, member: str, limit: int) -> bytes:
        """A whole small member (meta.json), at most ``limit`` bytes."""
        if self.entry(member) > limit:
            raise ModelFormatError(f"{self.path}: {member} is larger than allowed ({limit:,} "
                                   f"bytes)")
        with self.open(member) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ModelFormatError(f"{self.path}: {member} is larger than allowed ({limit:,} "
                                   f"bytes)")
        return data

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def load_model(path: str | os.PathLike) -> Any:
    """Read a model written by :func:`save_model` / ``model.save``.

    Every declared dtype and shape is checked against the model's own metadata
    before any array is read, arrays are read streamed with a hard stop at their
    declared size, and the loaded state is checked (finite values, the dtypes the
    class writes, a rating scale with min ≤ max), so a crafted file is refused
    in bounded memory and time.

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path``.
    ModelFormatError
        For any other failure: the file is truncated, tampered with, foreign, of a
        newer format, or asks for more memory than its metadata allows.
    """
    path = Path(path)
    if not path.exists():
        backup = path.with_name(path.name + ".bak")
        if backup.is_dir() and (backup / "meta.json").exists():
            path = backup  # a directory save was interrupted between its two renames
        else:
            raise FileNotFoundError(f"no model at {path}")
    reader: _Reader | None = None
    try:
        reader = _Reader(path)
        return _load(reader, path)
    except ModelFormatError:
        raise
    except Exception as err:  # noqa: BLE001 - issue 19: every failure is a ModelFormatError
        # RecursionError, MemoryError, OverflowError, UnicodeError, zlib/zipfile errors,
        # OSError from the archive, anything a model class raises on odd state...
        text = str(err)
        text = text if len(text) <= 200 else text[:200] + "…"
        raise ModelFormatError(f"{path}: not a readable matfact model ({type(err).__name__}: "
                               f"{text})") from err
    finally:
        if reader is not None:
            reader.close()


def _load(reader: _Reader, path: Path) -> Any:
    from matfact.models import model_class

    try:
        meta = _parse_meta(reader.read("meta.json", MAX_META_BYTES))
    except _MetaError as err:
        raise ModelFormatError(f"{path}: {err}") from None
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError, JSONDecodeError
        raise ModelFormatError(f"{path}: meta.json is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{path} is not a matfact model (no '{FORMAT_NAME}' header)")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFormatError(f"{path}: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} was written by matfact {str(meta.get('matfact_version', '?'))[:40]} in "
            f"format version {version}; this matfact ({__version__}) reads up to "
            f"{FORMAT_VERSION}: upgrade matfact"
        )
    name = meta.get("class")
    cls = model_class(name)
    if cls is None:
        raise ModelFormatError(f"{path}: unknown model class {str(name)[:80]!r}")
    try:
        params, state, kinds, specs = (meta["params"], meta["state"], meta["kinds"],
                                       meta["arrays"])
        if not all(isinstance(x, dict) for x in (params, state, kinds, specs)):
            raise TypeError("sections must be objects")
        model = cls(**params)
        from matfact._params import validate_params

        validate_params(model)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFormatError(f"{path}: bad parameters or layout in meta.json: {err}") from None

    try:
        plans = _plan(params, state, kinds, specs)
        _check_scalars(state, kinds)
    except ValueError as err:
        raise ModelFormatError(f"{path}: {err}") from None
    _check_entries(reader, plans, path)

    arrays: dict[str, np.ndarray] = {}
    indexes: dict[str, IdIndex] = {}
    for plan in plans:
        array = _read_array(reader, plan, path)
        try:
            _check_values(plan, array)
            if plan.role == "index":
                indexes[plan.name] = IdIndex(array)  # distinct ids, id length, Unicode
            elif plan.role == "utf8":
                indexes[plan.name] = IdIndex(_ids_of_utf8(array, plan.count))
        except (ValueError, MatfactError) as err:
            raise ModelFormatError(f"{path}: array {plan.name}: {err}") from None
        arrays[plan.name] = array

    try:
        for attr, kind in kinds.items():
            if kind == "json":
                value = state[attr]
            elif kind == "tuple":
                value = tuple(state[attr])
            elif kind == "ndarray":
                value = arrays[attr]
            elif kind == "index" or kind.get("kind") == "text_index":
                value = indexes[attr]
            else:  # a csr kind: _plan accepted nothing else
                value = sp.csr_matrix(
                    (arrays[f"{attr}.data"], arrays[f"{attr}.indices"],
                     arrays[f"{attr}.indptr"]), shape=tuple(kind["shape"]),
                )
                value.check_format(full_check=True)
            setattr(model, attr, value)
        model._validate_state()
    except (KeyError, TypeError, ValueError, AttributeError, MatfactError) as err:
        # AttributeError: a learned attribute the class needs is absent from the file.
        raise ModelFormatError(f"{path}: inconsistent model state: {err}") from None
    _probe(model, path)
    return model


# ---------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class _Array:
    """One array as meta.json declares it, accepted for its role."""

    name: str
    role: str
    dtype: np.dtype
    shape: tuple[int, ...]
    sha256: str
    #: CSR row pointers: (number of entries, columns); indices: (columns, columns).
    ends: tuple[int, int] | None = None
    #: A text id map (UTF-8 bytes): the number of ids its meta.json declares.
    count: int | None = None

    @property
    def member(self) -> str:
        return f"arrays/{self.name}.npy"

    @property
    def nbytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape)


#: The dtypes each role accepts: what the classes write (``text``: any ``<U`` width up
#: to a bound). ``factors`` is the FactorModel contract (float32 factors and biases).
_ROLE_DTYPES = {
    "factors": ("<f4",),
    "float": ("<f4", "<f8"),
    "int": ("<i4", "<i8"),
    "number": ("<f4", "<f8", "<i4", "<i8"),
    "index": ("<i8", "text"),
    "utf8": ("|u1",),
    "text": ("text",),
}
_TEXT_DTYPE = re.compile(r"<U([1-9][0-9]{0,6})")


def _count(value: Any, what: str) -> int:
    """A size read from meta.json: a non-negative int within :data:`MAX_DIM`."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_DIM:
        raise ValueError(f"{what} must be a count between 0 and {MAX_DIM}, got "
                         f"{str(value)[:40]!r}")
    return value


def _spec(specs: dict, name: str, role: str) -> tuple[np.dtype, tuple[int, ...], str]:
    """The declared dtype, shape and checksum of array ``name``, the dtype checked for ``role``."""
    spec = specs.get(name)
    if not isinstance(spec, dict):
        raise ValueError(f"array {name} is not described in meta.json")
    dtype, shape, digest = spec.get("dtype"), spec.get("shape"), spec.get("sha256")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise ValueError(f"array {name} has no valid sha256")
    if not isinstance(shape, list) or len(shape) > 3:
        raise ValueError(f"array {name} has a bad shape {str(shape)[:60]}")
    shape = tuple(_count(n, f"a dimension of {name}") for n in shape)
    allowed = _ROLE_DTYPES[role]
    text = _TEXT_DTYPE.fullmatch(dtype) if isinstance(dtype, str) else None
    if not (dtype in allowed or (text and "text" in allowed)):
        raise ValueError(f"array {name} has dtype {str(dtype)[:20]!r}; matfact writes "
                         f"{' or '.join(a if a != 'text' else '<U (text)' for a in allowed)} "
                         f"there (refusing float16, bool, object, complex, big-endian...)")
    if text:
        width = int(text.group(1))
        limit = max_id_length() if role == "index" else MAX_TITLE_LENGTH
        if width > limit:
            raise ValueError(f"array {name} holds text of up to {width:,} characters; "
                             f"{'ids' if role == 'index' else 'titles'} are at most "
                             f"{limit:,} characters")
    return np.dtype(dtype), shape, digest


def _leaves(value: Any) -> int:
    """The scalars in a JSON value (an upper bound on the features an encoder state makes)."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            count += 1
    return count


def _time_bins(params: dict, state: dict) -> int:
    """At most how many time bins ``item_bin_bias_`` may have: ``time_bins``, or more
    if ratings newer than the fit added bins (``_time.py``'s ``_grow_time_state``)."""
    bins = params.get("time_bins")
    bins = bins if isinstance(bins, int) and not isinstance(bins, bool) and bins > 0 else 0
    origin, newest, width = (state.get(k) for k in ("time_origin_", "time_newest_",
                                                      "time_bin_width_"))
    numbers = (origin, newest, width)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers) \
            and width > 0:
        span = (float(newest) - float(origin)) / float(width)
        if math.isfinite(span):
            bins = max(bins, int(min(max(span, 0.0), MAX_DIM)) + 1)
    return min(bins, MAX_DIM)


def _size(value: Any) -> int:
    """A size the file states in its parameters or state, or 0 if it is not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) \
        and 0 <= value <= MAX_DIM else 0


def _sizes(params: dict, state: dict) -> tuple[int, int, int]:
    """``(k, width, kept)``: ``n_factors``, the factor arrays' widest allowed rank
    (``n_factors``, or ``n_components`` for NMF, times the samples BayesianMF keeps) and
    the kept samples, as far as the file says them (0 where it does not)."""
    kept = _size(state.get("n_kept_")) if "n_kept_" in state else 1
    k = _size(params.get("n_factors"))
    width = max(k, _size(params.get("n_components")), _size(state.get("n_components_")))
    width *= max(kept, 1)
    return k or width, width, kept


def _rules(params: dict, state: dict, n_users: int | None, n_items: int | None,
           nnz: int | None) -> dict[str, tuple[str, list]]:
    """The role and the allowed range of each dimension of every array attribute.

    Each dimension is ``(low, high)``, derived from the declared id-map lengths
    (n_users, n_items), the number of stored ratings (``nnz``), the parameters and the
    scalar state; ``None`` where the file lacks what the rule needs (the array is
    then refused). An attribute missing here (one newer than this table) gets the
    fallback of :func:`_plan`: each dimension at most the largest size declared elsewhere.
    """
    k, width, kept = _sizes(params, state)
    users = None if n_users is None else (n_users, n_users)
    items = None if n_items is None else (n_items, n_items)
    n_features = _size(state.get("n_features_in_"))
    n_user_features = _size(state.get("n_user_features_"))
    bins = _time_bins(params, state)

    def side(n: int | None, encoder: str) -> tuple[int, int] | None:
        # HybridMF: one row per id (or none) plus one per feature the encoder state makes.
        return None if n is None else (0, n + _leaves(state.get(encoder)))

    return {
        "item_titles_": ("text", [items]),
        "user_bias_": ("factors", [users]),
        "item_bias_": ("factors", [items]),
        "user_factors_": ("factors", [users, (0, width)]),
        "user_own_factors_": ("factors", [users, (0, width)]),
        "item_factors_": ("factors", [items, (0, width)]),
        "implicit_factors_": ("factors", [items, (0, width)]),
        "item_popularity_": ("number", [items]),
        "user_drift_": ("float", [users]),
        "user_mean_day_": ("float", [users]),
        "user_last_time_": ("int", [users]),
        "rating_times_": ("int", [None if nnz is None else (nnz, nnz)]),
        "item_bin_bias_": ("float", [items, (1, max(bins, 1))]),
        "item_bias_samples_": ("float", [items, (kept, kept)]),
        "user_prior_mean_": ("float", [(kept, kept), (0, k + 1)]),
        "user_prior_precision_": ("float", [(kept, kept), (0, k + 1), (0, k + 1)]),
        "user_columns_": ("float", [None if n_items is None else (0, n_items + n_user_features),
                                    (kept * (k + 1), kept * (k + 1))]),
        "user_embeddings_": ("float", [side(n_users, "user_encoder_state_"), (k, k)]),
        "item_embeddings_": ("float", [side(n_items, "item_encoder_state_"), (k, k)]),
        "user_feature_bias_": ("float", [side(n_users, "user_encoder_state_")]),
        "item_feature_bias_": ("float", [side(n_items, "item_encoder_state_")]),
        # The approximate index (models/ann.py): at most one list per item, vectors of
        # the factors plus the item base and the augmentation (recommend) or plus the
        # augmentation (similar).
        "ann_centroids_": ("float", [None if n_items is None else (1, max(n_items, 1)),
                                     (0, width + 2)]),
        "ann_lists_": ("int", [None if n_items is None else (0, n_items)]),
        "ann_similar_centroids_": ("float", [None if n_items is None else (1, max(n_items, 1)),
                                             (0, width + 1)]),
        "ann_similar_lists_": ("int", [None if n_items is None else (0, n_items)]),
        "components_": ("float", [(0, width), (n_features, n_features)]),
        "singular_values_": ("float", [(0, width)]),
        "explained_variance_": ("float", [(0, width)]),
        "explained_variance_ratio_": ("float", [(0, width)]),
    }


_FACTORS = ("user_factors_", "item_factors_", "user_own_factors_", "implicit_factors_")


def _check_shape(name: str, shape: tuple[int, ...], dims: list) -> None:
    if len(shape) != len(dims):
        raise ValueError(f"array {name} declares {len(shape)} dimension(s), its role has "
                         f"{len(dims)}")
    for axis, (size, allowed) in enumerate(zip(shape, dims, strict=True)):
        if allowed is None:
            raise ValueError(f"array {name} needs the id maps (or seen_), which the file "
                             f"lacks")
        low, high = allowed
        if not low <= size <= high:
            expected = str(low) if low == high else f"between {low} and {high}"
            raise ValueError(f"array {name} declares shape {list(shape)}: dimension {axis} "
                             f"must be {expected} for this model's ids and parameters")


def _index_plan(specs: dict, attr: str, kind: Any) -> _Array:
    """An id map: ``index`` (int64, or fixed-width text from older files) or ``text_index``
    (the ids' UTF-8 bytes joined by NUL, which no id may hold), its count declared."""
    if kind == "index":
        dtype, shape, digest = _spec(specs, attr, "index")
        if len(shape) != 1:
            raise ValueError(f"array {attr} must be one-dimensional, got {list(shape)}")
        return _Array(attr, "index", dtype, shape, digest, count=shape[0])
    if set(kind) != {"kind", "count"}:
        raise ValueError(f"unknown kind {str(kind)[:40]!r} for {attr}")
    count = _count(kind["count"], f"the id count of {attr}")
    dtype, shape, digest = _spec(specs, attr, "utf8")
    # At most 4 UTF-8 bytes per character, plus one separator between ids.
    most = count * (4 * max_id_length() + 1)
    if len(shape) != 1 or shape[0] > most or (count and shape[0] < count - 1):
        raise ValueError(f"array {attr} declares shape {list(shape)}: {count} ids of at most "
                         f"{max_id_length()} characters take 0 to {most} bytes")
    return _Array(attr, "utf8", dtype, shape, digest, count=count)


def _utf8_ids(ids: np.ndarray) -> np.ndarray:
    """String ids as one UTF-8 byte array, NUL between ids (see :func:`_index_plan`)."""
    return np.frombuffer("\x00".join(ids.tolist()).encode("utf-8"), dtype=np.uint8).copy()


def _ids_of_utf8(array: np.ndarray, count: int) -> np.ndarray:
    """The ids :func:`_utf8_ids` wrote, or ValueError."""
    if count == 0:
        if array.size:
            raise ValueError("declares no ids but holds bytes")
        return np.empty(0, dtype=object)
    ids = array.tobytes().decode("utf-8").split("\x00")  # UnicodeDecodeError: a ValueError
    if len(ids) != count:
        raise ValueError(f"holds {len(ids)} ids; meta.json declares {count}")
    return np.array(ids, dtype=object)


def _plan(params: dict, state: dict, kinds: dict, specs: dict) -> list[_Array]:
    """Every array the file declares, checked against its role, in reading order.

    The id maps come first (their declared lengths are n_users and n_items), then
    each CSR matrix (row pointers before indices and data), then the rest.
    Raises ValueError (the caller adds the path) before anything is read.
    """
    for name in specs:
        if not _NAME.match(name):  # never a path: names become arrays/<name>.npy
            raise ValueError(f"refusing array name {name[:80]!r}")
    for attr, kind in kinds.items():
        if not isinstance(attr, str) or not attr.endswith("_") or attr.startswith("_") \
                or not _NAME.match(attr) or "." in attr:
            raise ValueError(f"bad attribute name {str(attr)[:80]!r}")
        if kind in ("json", "tuple") and attr not in state:
            raise ValueError(f"{attr} is missing from the state")
    orphans = set(state) - {attr for attr, kind in kinds.items() if kind in ("json", "tuple")}
    if orphans:
        raise ValueError(f"state entries {sorted(str(o)[:40] for o in orphans)[:5]} belong "
                         f"to no attribute")
    indexes = [_index_plan(specs, attr, kind) for attr, kind in kinds.items()
               if kind == "index" or (isinstance(kind, dict) and kind.get("kind") == "text_index")]
    n_users = next((p.count for p in indexes if p.name == "user_index_"), None)
    n_items = next((p.count for p in indexes if p.name == "item_index_"), None)
    matrices: list[_Array] = []
    nnz = None
    for attr, kind in kinds.items():
        if not isinstance(kind, dict) or kind.get("kind") == "text_index":
            continue
        if kind.get("kind") != "csr" or set(kind) != {"kind", "shape"}:
            raise ValueError(f"unknown kind {str(kind)[:40]!r} for {attr}")
        rows, cols = _csr_shape(attr, kind, n_users, n_items, specs)
        indptr = _spec(specs, f"{attr}.indptr", "int")
        indices = _spec(specs, f"{attr}.indices", "int")
        data = _spec(specs, f"{attr}.data", "float")
        if indptr[1] != (rows + 1,):
            raise ValueError(f"array {attr}.indptr declares shape {list(indptr[1])}; the "
                             f"matrix has {rows} rows")
        n = indices[1]
        if len(n) != 1 or data[1] != n or n[0] > rows * cols:
            raise ValueError(f"arrays {attr}.indices and {attr}.data declare shapes "
                             f"{list(n)} and {list(data[1])}: they must be equal and at most "
                             f"rows × columns = {rows * cols}")
        if attr == "seen_":
            nnz = n[0]
        matrices += [_Array(f"{attr}.indptr", "int", *indptr, ends=(n[0], cols)),
                     _Array(f"{attr}.indices", "int", *indices, ends=(cols, cols)),
                     _Array(f"{attr}.data", "float", *data)]
    rules = _rules(params, state, n_users, n_items, nnz)
    _, width, _ = _sizes(params, state)
    largest = max(n_users or 0, n_items or 0, nnz or 0, width, 1)
    rest: list[_Array] = []
    for attr, kind in kinds.items():
        if kind == "ndarray":
            role, dims = rules.get(attr, ("number", None))
            dtype, shape, digest = _spec(specs, attr, role)
            if dims is None:  # no rule (an attribute newer than this table): the largest
                dims = [(0, largest)] * len(shape)  # size the file declares elsewhere
                if math.prod(shape) > largest * max(width, 64):
                    raise ValueError(f"array {attr} declares shape {list(shape)}, more than "
                                     f"this model's ids and parameters allow")
            _check_shape(attr, shape, dims)
            rest.append(_Array(attr, role, dtype, shape, digest))
        elif kind not in ("json", "tuple", "index") and not isinstance(kind, dict):
            raise ValueError(f"unknown kind {str(kind)[:40]!r} for {attr}")
    widths = {p.shape[1] for p in rest if p.name in _FACTORS}
    if len(widths) > 1:
        raise ValueError(f"the factor arrays disagree in rank: {sorted(widths)}")
    plans = [*indexes, *matrices, *rest]
    extra = set(specs) - {p.name for p in plans}
    if extra:
        raise ValueError(f"arrays {sorted(str(e)[:40] for e in extra)[:5]} belong to no "
                         f"attribute")
    for plan in plans:
        if plan.nbytes > MAX_ARRAY_BYTES:
            raise ValueError(f"array {plan.name} declares {plan.nbytes:,} bytes, larger than "
                             f"allowed ({MAX_ARRAY_BYTES:,})")
    return plans


#: HybridMF's kept feature rows: one row per id, one column per row of the embeddings
#: (whose own rule bounds them by the ids and what the encoder state makes).
_FEATURE_ROWS = {"user_feature_rows_": "user_embeddings_",
                 "item_feature_rows_": "item_embeddings_"}


def _csr_shape(attr: str, kind: dict, n_users: int | None,
               n_items: int | None, specs: dict) -> tuple[int, int]:
    shape = kind["shape"]
    if not isinstance(shape, list) or len(shape) != 2:
        raise ValueError(f"{attr} has a bad matrix shape {str(shape)[:40]}")
    rows, cols = (_count(n, f"the shape of {attr}") for n in shape)
    if attr == "seen_" and (rows, cols) != (n_users, n_items):
        raise ValueError(f"seen_ declares shape {[rows, cols]}; the id maps declare "
                         f"{n_users} users and {n_items} items")
    if attr in _FEATURE_ROWS:
        ids = n_users if attr.startswith("user") else n_items
        embeddings = _spec(specs, _FEATURE_ROWS[attr], "float")[1]
        if len(embeddings) != 2 or (rows, cols) != (ids, embeddings[0]):
            raise ValueError(f"{attr} declares shape {[rows, cols]}; the id map and "
                             f"{_FEATURE_ROWS[attr]} declare {ids} ids and "
                             f"{embeddings[0] if embeddings else '?'} features")
        return rows, cols
    sizes = {n for n in (n_users, n_items) if n is not None}
    if rows not in sizes or cols not in sizes:
        raise ValueError(f"{attr} declares shape {[rows, cols]}, not the id maps' sizes")
    return rows, cols


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _check_scalars(state: dict, kinds: dict) -> None:
    """The scalar state that scores depend on: a rating scale with min ≤ max, a finite mean."""
    if "rating_scale_" in kinds:
        if kinds["rating_scale_"] not in ("json", "tuple"):
            raise ValueError("rating_scale_ must be stored as JSON")
        scale = state.get("rating_scale_")
        if scale is not None:
            if not (isinstance(scale, list) and len(scale) == 2 and all(map(_real, scale))):
                raise ValueError(f"rating_scale_ must be two finite numbers [min, max], got "
                                 f"{str(scale)[:60]}")
            if scale[0] > scale[1]:
                raise ValueError(f"rating_scale_ {scale} is inverted (min > max)")
    if "rating_step_" in kinds:  # absent from files written before steps: no step
        step = state.get("rating_step_")
        if kinds["rating_step_"] != "json" or not (step is None or (_real(step) and step > 0)):
            raise ValueError(f"rating_step_ must be a finite number > 0 or null, got "
                             f"{str(step)[:40]}")
    if "global_mean_" in kinds:
        if kinds["global_mean_"] != "json" or not _real(state.get("global_mean_")):
            raise ValueError(f"global_mean_ must be a finite number, got "
                             f"{str(state.get('global_mean_'))[:40]}")


def _check_entries(reader: _Reader, plans: list[_Array], path: Path) -> None:
    """Each member's size against its declared dtype × shape, and the whole file against
    decompression bombs: all before any array is read."""
    total = 0
    for plan in plans:
        size = reader.entry(plan.member)
        header = size - plan.nbytes
        if not _MIN_NPY_HEADER <= header <= MAX_NPY_HEADER:
            raise ModelFormatError(
                f"{path}: {plan.member} holds {size:,} bytes, but a {plan.dtype.str} array of "
                f"shape {list(plan.shape)} takes {plan.nbytes:,} bytes plus a header of at most "
                f"{MAX_NPY_HEADER:,}; the file was edited or is damaged")
        total += size
    if reader.archive is not None and total > EXPANSION_FREE_BYTES \
            and total > MAX_EXPANSION * reader.size:
        raise ModelFormatError(
            f"{path}: its arrays would expand to {total:,} bytes from a file of "
            f"{reader.size:,} bytes (more than {MAX_EXPANSION}×): a decompression bomb, or a "
            f"model re-compressed by hand; save it again with model.save")


class _HashedHead:
    """Reads a .npy header through a hash, at most ``MAX_NPY_HEADER`` bytes."""

    def __init__(self, handle: Any, digest: Any) -> None:
        self.handle, self.digest, self.count = handle, digest, 0

    def read(self, n: int) -> bytes:
        if self.count + n > MAX_NPY_HEADER:
            raise ValueError(f"the .npy header is longer than {MAX_NPY_HEADER} bytes")
        data = self.handle.read(n)
        self.digest.update(data)
        self.count += len(data)
        return data


def _read_array(reader: _Reader, plan: _Array, path: Path) -> np.ndarray:
    """One array, streamed into a buffer of the declared size; nothing read past it."""
    size = reader.entry(plan.member)
    digest = hashlib.sha256()
    with reader.open(plan.member) as handle:
        head = _HashedHead(handle, digest)
        try:
            version = np.lib.format.read_magic(head)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                    head, max_header_size=MAX_NPY_HEADER)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                    head, max_header_size=MAX_NPY_HEADER)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as err:  # noqa: BLE001 - a bad header, zlib, zipfile (CRC), OSError
            raise ModelFormatError(f"{path}: array {plan.name} is unreadable "
                                   f"({type(err).__name__}: {str(err)[:200]})") from None
        if dtype.hasobject or dtype.str != plan.dtype.str or tuple(shape) != plan.shape \
                or (fortran and len(shape) > 1):
            raise ModelFormatError(f"{path}: array {plan.name} has the wrong dtype or shape "
                                   f"(its header says {dtype.str} {list(shape)}, meta.json "
                                   f"{plan.dtype.str} {list(plan.shape)})")
        if head.count + plan.nbytes != size:
            raise ModelFormatError(f"{path}: array {plan.name}: the member holds {size:,} "
                                   f"bytes, its header and shape say "
                                   f"{head.count + plan.nbytes:,}")
        # np.empty only reserves: pages are touched as the data arrives, so a member
        # that ends early costs what it held, not what it declared.
        array = np.empty(plan.shape, dtype=plan.dtype)
        flat = array.reshape(-1).view(np.uint8)
        done = 0
        try:
            while done < flat.size:
                view = memoryview(flat[done:done + _CHUNK])
                got = handle.readinto(view)
                if not got:
                    break
                digest.update(view[:got])
                done += got
            more = handle.read(1)  # a hard stop: at most one byte past the declared size
        except Exception as err:  # noqa: BLE001 - zlib, bz2, lzma, zipfile (CRC), OSError
            raise ModelFormatError(f"{path}: array {plan.name} is damaged ({type(err).__name__}"
                                   f": {str(err)[:200]})") from None
        if done < flat.size:
            raise ModelFormatError(f"{path}: array {plan.name} is truncated ({done:,} of "
                                   f"{flat.size:,} bytes)")
        if more:
            raise ModelFormatError(f"{path}: array {plan.name} holds more than it declares")
    if digest.hexdigest() != plan.sha256:
        raise ModelFormatError(f"{path}: array {plan.name} fails its checksum (damaged or "
                               f"edited file)")
    return array


def _check_values(plan: _Array, array: np.ndarray) -> None:
    """Values the model cannot serve: non-finite floats, invalid text, bad CSR structure
    (checked on the row pointers before the indices and data are read)."""
    if array.dtype.kind == "f" and array.size and not np.isfinite(array).all():
        raise ValueError("holds NaN or infinite values")
    if array.dtype.kind == "U" and array.size:
        points = array.reshape(-1).view(np.uint32)
        if points.max() > 0x10FFFF or ((points >= 0xD800) & (points <= 0xDFFF)).any():
            raise ValueError("holds text that is not valid Unicode")
    if plan.ends is not None and plan.name.endswith(".indptr"):
        entries, cols = plan.ends
        steps = np.diff(array)
        if array[0] != 0 or array[-1] != entries or (steps < 0).any() \
                or (steps.size and steps.max() > cols):
            raise ValueError(f"row pointers must run from 0 to {entries} (the entries "
                             f"declared), never decreasing, at most {cols} per row")
    elif plan.ends is not None and array.size and (array.min() < 0 or array.max() >= plan.ends[0]):
        raise ValueError(f"column indices must be in [0, {plan.ends[0]})")


def _probe(model: Any, path: Path) -> None:
    """Score one known pair and rank for one known user, or raise ModelFormatError.

    The shape checks of ``_validate_state`` cannot see every edit of meta.json
    (a learned scalar of the wrong type, a state entry dropped in favour of a
    class default): state that passes them but cannot score would otherwise fail
    later, inside ``predict``, with a TypeError. Found by tests/hardening.
    """
    import warnings

    if getattr(model, "user_index_", None) is None:
        return  # a transformer (NMF/SVD on a plain matrix) has no ids to score
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            users, items = model.user_index_.ids[:1], model.item_index_.ids[:1]
            if len(users) and len(items):
                model.predict(users, items)
                model.recommend(users, n=1)
    except Exception as err:  # noqa: BLE001 - any failure here means a damaged file
        raise ModelFormatError(f"{path}: the model's state cannot score ({type(err).__name__}: "
                               f"{err}); the file is damaged or was edited") from None
