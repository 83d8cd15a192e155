"""Model files: round trips, atomic saves, and every way a file can be bad."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import matfact
import matfact.models.persistence as mio
from matfact import Baseline, ModelFormatError
from tests.models.contract import planted_interactions


@pytest.fixture(scope="module")
def model():
    return Baseline().fit(planted_interactions(), progress=False)


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "model.zip"
    model.save(path)
    return path


def _rewrite(path, replace):
    """Copy the zip at ``path`` with members changed by ``replace(name, bytes) -> bytes|None``."""
    with zipfile.ZipFile(path) as src:
        members = [(info.filename, src.read(info)) for info in src.infolist()]
    os.unlink(path)
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in members:
            new = replace(name, data)
            if new is not None:
                dst.writestr(name, new)


def _edit_meta(path, edit):
    def replace(name, data):
        if name == "meta.json":
            meta = json.loads(data)
            edit(meta)
            return json.dumps(meta).encode()
        return data

    _rewrite(path, replace)


def test_zip_layout_is_json_plus_npy(saved):
    with zipfile.ZipFile(saved) as archive:
        names = set(archive.namelist())
        meta = json.loads(archive.read("meta.json"))
    assert "meta.json" in names and all(n == "meta.json" or n.endswith(".npy") for n in names)
    assert meta["format"] == "matfact-model" and meta["class"] == "Baseline"
    assert meta["matfact_version"] == matfact.__version__
    assert meta["params"] == Baseline().get_params()


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        matfact.load(tmp_path / "nothing.zip")


def test_not_a_zip(tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle stream: must not be executed or accepted
    with pytest.raises(ModelFormatError, match="not a matfact model"):
        matfact.load(path)


def test_truncated_file(saved):
    data = saved.read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 30):
        saved.write_bytes(data[:cut])
        with pytest.raises(ModelFormatError):
            matfact.load(saved)


def test_bit_flip_in_array_is_detected(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo("arrays/user_bias_.npy")
    # Flip a byte inside the stored (uncompressed) payload of that member.
    offset = info.header_offset + 30 + len(info.filename) + info.file_size - 3
    data[offset] ^= 0x40
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError):
        matfact.load(saved)


def test_edited_array_fails_checksum(saved):
    def replace(name, data):
        if name == "arrays/item_bias_.npy":
            return data[:-4] + b"\x00\x00\x80\x7f"
        return data

    _rewrite(saved, replace)
    with pytest.raises(ModelFormatError, match="checksum"):
        matfact.load(saved)


def test_foreign_zip(tmp_path):
    path = tmp_path / "foreign.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(ModelFormatError, match="missing meta.json"):
        matfact.load(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("meta.json", json.dumps({"format": "other"}))
    with pytest.raises(ModelFormatError, match="not a matfact model"):
        matfact.load(path)


def test_newer_format_version(saved):
    _edit_meta(saved, lambda meta: meta.update(format_version=mio.FORMAT_VERSION + 1))
    with pytest.raises(ModelFormatError, match="upgrade matfact"):
        matfact.load(saved)


def test_unknown_class_is_not_imported(saved):
    _edit_meta(saved, lambda meta: meta.update({"class": "os.system"}))
    with pytest.raises(ModelFormatError, match="unknown model class"):
        matfact.load(saved)


def test_bad_params_in_meta(saved):
    _edit_meta(saved, lambda meta: meta["params"].update(reg_user=-5))
    with pytest.raises(ModelFormatError, match="reg_user"):
        matfact.load(saved)
    _edit_meta(saved, lambda meta: meta["params"].update(evil="x"))
    with pytest.raises(ModelFormatError):
        matfact.load(saved)


def test_path_traversal_names_are_refused(saved):
    def edit(meta):
        meta["arrays"]["../../etc/passwd"] = meta["arrays"].pop("user_bias_")

    _edit_meta(saved, edit)
    with pytest.raises(ModelFormatError, match="refusing array name"):
        matfact.load(saved)


def test_inconsistent_shapes(model, tmp_path):
    broken = matfact.clone(model)
    for name, value in vars(model).items():
        setattr(broken, name, value)
    broken.user_bias_ = model.user_bias_[:-1].copy()
    path = tmp_path / "m.zip"
    broken.save(path)
    with pytest.raises(ModelFormatError, match="user_bias_"):
        matfact.load(path)


def test_oversized_member(saved, monkeypatch):
    monkeypatch.setattr(mio, "MAX_ARRAY_BYTES", 64)
    with pytest.raises(ModelFormatError, match="larger than allowed"):
        matfact.load(saved)


def test_object_array_is_never_unpickled(saved):
    import io as _io

    buffer = _io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    blob = buffer.getvalue()

    def replace(name, data):
        return blob if name == "arrays/user_bias_.npy" else data

    _rewrite(saved, replace)
    _edit_meta(saved, lambda meta: meta["arrays"]["user_bias_"].update(
        sha256=__import__("hashlib").sha256(blob).hexdigest()))
    # Refused from its header (an object array where meta.json declares float32),
    # before a byte of it is read as data.
    with pytest.raises(ModelFormatError, match="wrong dtype"):
        matfact.load(saved)


def test_failed_save_keeps_previous_model(model, saved, monkeypatch):
    before = saved.read_bytes()
    other = Baseline(reg_user=1.0).fit(planted_interactions(seed=1), progress=False)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mio.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        other.save(saved)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name], "temporary file left over"
    assert matfact.load(saved).get_params() == model.get_params()


def test_directory_save_replaces_and_recovers_backup(model, tmp_path):
    path = tmp_path / "modeldir"
    model.save(path)
    other = Baseline(reg_item=3.0).fit(planted_interactions(seed=2), progress=False)
    other.save(path)
    assert matfact.load(path).reg_item == 3.0
    assert not (tmp_path / "modeldir.bak").exists()
    # A crash between the two renames leaves only the backup: load falls back to it.
    os.replace(path, tmp_path / "modeldir.bak")
    assert matfact.load(path).reg_item == 3.0


def test_directory_save_refuses_to_replace_foreign_dir(model, tmp_path):
    path = tmp_path / "precious"
    path.mkdir()
    (path / "notes.txt").write_text("keep me")
    with pytest.raises(matfact.MatfactError, match="not a matfact model"):
        model.save(path)
    assert (path / "notes.txt").read_text() == "keep me"


def test_save_unfitted_raises(tmp_path):
    with pytest.raises(matfact.NotFittedError):
        Baseline().save(tmp_path / "x.zip")


def test_a_zip_announcing_an_unknown_version_is_a_format_error(tmp_path):
    # Found by tests/hardening: one flipped byte made zipfile raise NotImplementedError.
    import matfact
    from matfact import ModelFormatError
    from tests.models.contract import planted_interactions

    path = tmp_path / "m.zip"
    matfact.Baseline().fit(planted_interactions("explicit"), progress=False).save(path)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"PK\x01\x02")          # the first central-directory entry
    raw[at + 6:at + 8] = (64).to_bytes(2, "little")   # "version needed": 6.4
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFormatError):
        matfact.load(path)


def _npy(array):
    import io as _io

    buffer = _io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def text_model():
    rng = np.random.default_rng(5)
    users = np.array([f"user-{u}" for u in rng.integers(0, 40, 600)], dtype=object)
    items = np.array([f"item-{i}" for i in rng.integers(0, 30, 600)], dtype=object)
    items[0] = "é" + "L" * 255  # one id of the longest length, not ASCII
    data = matfact.Interactions.from_arrays(users, items, rng.integers(1, 6, 600).astype(float),
                                            duplicates="last")
    return Baseline().fit(data, progress=False)


def test_text_ids_are_saved_as_utf8_not_fixed_width(text_model, tmp_path):
    path = tmp_path / "text.zip"
    text_model.save(path)
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("meta.json"))
        held = archive.getinfo("arrays/item_index_.npy").file_size
    ids = text_model.item_index_.ids
    assert meta["arrays"]["item_index_"]["dtype"] == "|u1"
    # The ids' UTF-8 bytes and separators, plus the .npy header: no padding to the longest.
    payload = sum(len(x.encode()) for x in ids) + len(ids) - 1
    assert payload < held <= payload + 128 < len(ids) * 256 * 4
    loaded = matfact.load(path)
    assert loaded.item_index_ == text_model.item_index_
    assert loaded.item_index_.ids.dtype == object
    np.testing.assert_array_equal(loaded.predict(ids[:5], ids[:5]),
                                  text_model.predict(ids[:5], ids[:5]))


def test_files_with_fixed_width_id_maps_still_load(text_model, tmp_path):
    path = tmp_path / "old.zip"
    text_model.save(path)
    old_ids = text_model.item_index_.to_ids(np.arange(len(text_model.item_index_)))

    def replace(name, data):
        if name == "arrays/item_index_.npy":
            return _npy(old_ids)
        if name == "meta.json":
            meta = json.loads(data)
            meta["kinds"]["item_index_"] = "index"
            spec = meta["arrays"]["item_index_"]
            spec.update(dtype=old_ids.dtype.str, shape=[len(old_ids)],
                        sha256=__import__("hashlib").sha256(_npy(old_ids)).hexdigest())
            return json.dumps(meta).encode()
        return data

    _rewrite(path, replace)
    assert matfact.load(path).item_index_ == text_model.item_index_


def _ids_bytes(n, change):
    ids = [f"u{j}".encode() for j in range(n)]
    change(ids)
    return b"\x00".join(ids)


@pytest.mark.parametrize("change, match", [
    (lambda ids: ids.pop(), "holds 39 ids; meta.json declares 40"),
    (lambda ids: ids.__setitem__(3, b"\xff\xfe"), "utf-8"),
    (lambda ids: ids.__setitem__(3, b"u4"), "distinct"),
    (lambda ids: ids.__setitem__(3, b"x" * 300), "longer than 256"),
    (lambda ids: ids.__setitem__(3, b"\xed\xa0\x80"), "utf-8"),  # an encoded surrogate
])
def test_broken_text_id_maps_are_format_errors(text_model, tmp_path, change, match):
    import hashlib

    n = len(text_model.user_index_)
    assert n == 40
    payload = _ids_bytes(n, change)
    count = n
    path = tmp_path / "bad.zip"
    text_model.save(path)
    array = np.frombuffer(payload, dtype=np.uint8)

    def replace(name, data):
        if name == "arrays/user_index_.npy":
            return _npy(array)
        if name == "meta.json":
            meta = json.loads(data)
            meta["kinds"]["user_index_"] = {"kind": "text_index", "count": count}
            meta["arrays"]["user_index_"].update(
                shape=[len(array)], sha256=hashlib.sha256(_npy(array)).hexdigest())
            return json.dumps(meta).encode()
        return data

    _rewrite(path, replace)
    with pytest.raises(ModelFormatError, match=match):
        matfact.load(path)


# ---------------------------------------------------------------------- HybridMF feature rows
@pytest.fixture(scope="module")
def hybrid():
    import pandas as pd

    rng = np.random.default_rng(2)
    users, items = rng.integers(0, 20, 300), rng.integers(0, 15, 300)
    genres = pd.DataFrame({"genre": rng.choice(["a", "b"], 15)}, index=range(15))
    data = matfact.Interactions.from_arrays(users, items, rng.integers(1, 6, 300),
                                            rating_scale=(1, 5, 1), duplicates="last",
                                            item_features=genres)
    return matfact.HybridMF(n_factors=3, max_iter=2, random_state=0).fit(data, progress=False)


@pytest.mark.parametrize("attr, change, match", [
    ("user_feature_rows_", lambda m: m[:-1], "user_feature_rows_ declares shape"),
    ("item_feature_rows_", lambda m: __import__("scipy.sparse").sparse.hstack(
        [m, m[:, :1]], format="csr"), "item_feature_rows_ declares shape"),
])
def test_hybrid_feature_rows_of_the_wrong_shape_are_refused(hybrid, tmp_path, attr, change,
                                                            match):
    """Rows = the id map's ids, columns = the embeddings' rows (what the encoder makes)."""
    broken = matfact.clone(hybrid)
    for name, value in vars(hybrid).items():
        setattr(broken, name, value)
    setattr(broken, attr, change(getattr(hybrid, attr)).astype(np.float32))
    path = tmp_path / "hybrid.zip"
    broken.save(path)
    with pytest.raises(ModelFormatError, match=match):
        matfact.load(path)


def test_hybrid_feature_rows_round_trip_and_older_files_load(hybrid, tmp_path):
    path = tmp_path / "hybrid.zip"
    hybrid.save(path)
    loaded = matfact.load(path)
    for attr in ("user_feature_rows_", "item_feature_rows_"):
        assert (getattr(loaded, attr) != getattr(hybrid, attr)).nnz == 0
    assert loaded.explain(3, [1, 2], n=3) == hybrid.explain(3, [1, 2], n=3)

    def drop(meta):  # a file written before the rows were kept
        for attr in ("user_feature_rows_", "item_feature_rows_"):
            del meta["kinds"][attr]
            for part in ("indptr", "indices", "data"):
                del meta["arrays"][f"{attr}.{part}"]

    _edit_meta(path, drop)
    old = matfact.load(path)
    assert not hasattr(old, "item_feature_rows_")
    why = old.explain(3, 1)
    assert why.folded_in and "explain_features" in why.method
