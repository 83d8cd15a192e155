"""Saving and loading models without pickle.

A model file is a ``.zip`` (or a directory with the same layout) holding

- ``meta.json``: format name and version, matfact version, class name,
  hyper-parameters, scalar learned state, and for each array its dtype, shape
  and sha256;
- ``arrays/<name>.npy``: each learned array, read back with
  ``allow_pickle=False``.

Loading builds only classes from :data:`matfact.models.base.MODEL_REGISTRY`
and never executes anything from the file. Saving writes a temporary file (or
directory) beside the target and renames it into place, so a crash at any
moment leaves either the previous model or the new one.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from matfact._version import __version__
from matfact.data.interactions import IdIndex
from matfact.exceptions import MatfactError, ModelFormatError

__all__ = ["save_model", "load_model", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "matfact-model"
FORMAT_VERSION = 1
MAX_META_BYTES = 64 * 2**20
MAX_ARRAY_BYTES = 32 * 2**30
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


class _Reader:
    """Reads members of a zip or a directory, bounded in size."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.archive: zipfile.ZipFile | None = None
        if path.is_dir():
            return
        if not zipfile.is_zipfile(path):
            raise ModelFormatError(f"{path} is not a matfact model file (not a zip archive)")
        try:
            self.archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
            # NotImplementedError: a flipped byte can announce a zip version zipfile lacks.
            raise ModelFormatError(f"{path} is a damaged zip archive: {err}") from None

    def read(self, member: str, limit: int) -> bytes:
        if self.archive is None:
            target = self.path / member
            if not target.is_file():
                raise ModelFormatError(f"{self.path}: missing {member}")
            if target.stat().st_size > limit:
                raise ModelFormatError(f"{self.path}: {member} is larger than allowed")
            return target.read_bytes()
        try:
            info = self.archive.getinfo(member)
        except KeyError:
            raise ModelFormatError(f"{self.path}: missing {member}") from None
        if info.file_size > limit:
            raise ModelFormatError(f"{self.path}: {member} is larger than allowed")
        try:
            with self.archive.open(info) as handle:
                data = handle.read(limit + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
            raise ModelFormatError(f"{self.path}: {member} is damaged: {err}") from None
        if len(data) > limit:
            raise ModelFormatError(f"{self.path}: {member} is larger than allowed")
        return data

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def load_model(path: str | os.PathLike) -> Any:
    """Read a model written by :func:`save_model` / ``model.save``.

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path``.
    ModelFormatError
        If the file is truncated, tampered with, foreign, or of a newer format.
    """
    path = Path(path)
    if not path.exists():
        backup = path.with_name(path.name + ".bak")
        if backup.is_dir() and (backup / "meta.json").exists():
            path = backup  # a directory save was interrupted between its two renames
        else:
            raise FileNotFoundError(f"no model at {path}")
    reader = _Reader(path)
    try:
        return _load(reader, path)
    finally:
        reader.close()


def _load(reader: _Reader, path: Path) -> Any:
    import matfact.models  # noqa: F401  (registers every model class)
    from matfact.models.base import MODEL_REGISTRY

    try:
        meta = json.loads(reader.read("meta.json", MAX_META_BYTES).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFormatError(f"{path}: meta.json is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{path} is not a matfact model (no '{FORMAT_NAME}' header)")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFormatError(f"{path}: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} was written by matfact {meta.get('matfact_version', '?')} in format "
            f"version {version}; this matfact ({__version__}) reads up to {FORMAT_VERSION}: "
            f"upgrade matfact"
        )
    name = meta.get("class")
    cls = MODEL_REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFormatError(f"{path}: unknown model class {name!r}")
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

    arrays = {}
    for array_name, spec in specs.items():
        if not isinstance(array_name, str) or not _NAME.match(array_name):
            raise ModelFormatError(f"{path}: refusing array name {array_name!r}")
        blob = reader.read(f"arrays/{array_name}.npy", MAX_ARRAY_BYTES)
        if not isinstance(spec, dict) or hashlib.sha256(blob).hexdigest() != spec.get("sha256"):
            raise ModelFormatError(f"{path}: array {array_name} fails its checksum (damaged or "
                                   f"edited file)")
        try:
            array = np.lib.format.read_array(io.BytesIO(blob), allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ModelFormatError(f"{path}: array {array_name} is unreadable: {err}") from None
        if array.dtype.str != spec.get("dtype") or list(array.shape) != spec.get("shape"):
            raise ModelFormatError(f"{path}: array {array_name} has the wrong dtype or shape")
        arrays[array_name] = array

    try:
        for attr, kind in kinds.items():
            if not isinstance(attr, str) or not attr.endswith("_") or attr.startswith("_") \
                    or not _NAME.match(attr):
                raise ValueError(f"bad attribute name {attr!r}")
            if kind == "json":
                value = state[attr]
            elif kind == "tuple":
                value = tuple(state[attr])
            elif kind == "ndarray":
                value = arrays[attr]
            elif kind == "index":
                value = IdIndex(arrays[attr])
            elif isinstance(kind, dict) and kind.get("kind") == "csr":
                shape = tuple(int(x) for x in kind["shape"])
                value = sp.csr_matrix(
                    (arrays[f"{attr}.data"], arrays[f"{attr}.indices"],
                     arrays[f"{attr}.indptr"]), shape=shape,
                )
                value.check_format(full_check=True)
            else:
                raise ValueError(f"unknown kind {kind!r} for {attr}")
            setattr(model, attr, value)
        model._validate_state()
    except (KeyError, TypeError, ValueError, AttributeError, MatfactError) as err:
        # AttributeError: a learned attribute the class needs is absent from the file.
        raise ModelFormatError(f"{path}: inconsistent model state: {err}") from None
    _probe(model, path)
    return model


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
