"""Damaged, tampered and foreign model files: ``matfact.load`` gives a working model or
:class:`~matfact.exceptions.ModelFormatError`, never anything else.

Generated cases: truncation at any byte, bit flips, overwritten ranges, every
model class as zip and as directory; ``meta.json`` edited at a random place to a
random JSON value (with the array checksums still right, so the deeper checks
are reached) and wrong ``format_version`` values; arrays swapped for others of
another dtype or shape with matching checksums; foreign zips of random members;
oversized members and path-traversal names. A model that loads must then answer
``predict``/``recommend`` or raise a matfact error.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import matfact
import matfact.models  # noqa: F401
import matfact.models.persistence as mio
from matfact import Interactions
from matfact.exceptions import ModelFormatError
from matfact.models import MODEL_REGISTRY
from tests.hardening._cases import check, profiles

EXAMPLES = {"normal": 100, "slow": 1000}


def fuzz_settings(profile: str, scale: float = 1.0) -> settings:
    return settings(max_examples=int(EXAMPLES[profile] * scale), deadline=None, database=None,
                    derandomize=not os.environ.get("MATFACT_FUZZ_RANDOM"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, bytes]:
    """Every model class, fitted on a small data set, as zip bytes."""
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 12, 120), rng.integers(0, 9, 120)
    explicit = Interactions.from_arrays(users, items, rng.integers(1, 6, 120).astype(float),
                                        duplicates="last")
    implicit = Interactions.from_arrays(users, items, duplicates="last")
    out, root = {}, tmp_path_factory.mktemp("models")
    for name, cls in sorted(MODEL_REGISTRY.items()):
        small = {k: v for k, v in {"n_factors": 2, "max_iter": 3, "burn_in": 1}.items()
                 if k in cls().get_params()}
        for data in (explicit, implicit):
            model, error = check("model files", lambda c=cls, s=small, d=data: c(**s).fit(
                d, progress=False))
            if error is None:
                model.save(root / f"{name}.zip")
                out[name] = (root / f"{name}.zip").read_bytes()
                break
    assert set(out) == set(MODEL_REGISTRY), set(MODEL_REGISTRY) - set(out)
    return out


def load_or_format_error(path) -> None:
    """One case: the model loads and answers, or the load raises ModelFormatError."""
    model, error = check("model files", lambda: matfact.load(path),
                         also=(FileNotFoundError,))
    if error is not None:
        assert isinstance(error, (ModelFormatError, FileNotFoundError)), repr(error)
        return
    users = model.user_index_.ids[:3]
    items = model.item_index_.ids[:3]
    n = min(len(users), len(items))
    check("model files", lambda: model.predict(users[:n], items[:n]))
    check("model files", lambda: model.recommend(users, n=5))


def zip_members(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def make_zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


names = st.sampled_from(sorted(MODEL_REGISTRY))


@pytest.mark.parametrize("profile", profiles())
def test_truncated_flipped_and_overwritten_files(profile, saved, tmp_path):
    path = tmp_path / "model.zip"

    @fuzz_settings(profile)
    @given(name=names, draw=st.data(),
           how=st.sampled_from(["truncate", "flip", "overwrite", "append"]))
    def run(name, draw, how):
        blob = bytearray(saved[name])
        if how == "truncate":
            blob = blob[:draw.draw(st.integers(0, len(blob) - 1))]
        elif how == "flip":
            for _ in range(draw.draw(st.integers(1, 3))):
                position = draw.draw(st.integers(0, len(blob) - 1))
                blob[position] ^= 1 << draw.draw(st.integers(0, 7))
        elif how == "overwrite":
            start = draw.draw(st.integers(0, len(blob) - 1))
            junk = draw.draw(st.binary(min_size=1, max_size=64))
            blob[start:start + len(junk)] = junk
        else:
            blob += draw.draw(st.binary(min_size=1, max_size=64))
        path.write_bytes(bytes(blob))
        load_or_format_error(path)

    run()


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(
        allow_nan=False), st.text(max_size=8), st.sampled_from(["BiasedMF", "csr", "ndarray",
                                                                 "index", "json", "tuple"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6)


def json_paths(value, prefix=()):
    """Every path into a JSON document (dict keys and list positions)."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from json_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for position, child in enumerate(value):
            yield from json_paths(child, (*prefix, position))


@pytest.mark.parametrize("profile", profiles())
def test_edited_meta_json(profile, saved, tmp_path):
    path = tmp_path / "model.zip"

    @fuzz_settings(profile, scale=2)
    @given(name=names, draw=st.data(), value=json_value,
           action=st.sampled_from(["set", "set", "delete", "version"]))
    def run(name, draw, value, action):
        members = zip_members(saved[name])
        meta = json.loads(members["meta.json"])
        if action == "version":
            meta["format_version"] = draw.draw(st.one_of(
                st.integers(-3, 4), st.sampled_from([1.0, "1", None, True, 2**70, [1]])))
        else:
            target = draw.draw(st.sampled_from(list(json_paths(meta))[1:]))
            parent = meta
            for key in target[:-1]:
                parent = parent[key]
            if action == "delete":
                del parent[target[-1]]
            else:
                parent[target[-1]] = value
        members["meta.json"] = json.dumps(meta).encode()
        path.write_bytes(make_zip(members))
        load_or_format_error(path)

    run()


def with_array(members: dict[str, bytes], array_name: str, array: np.ndarray) -> None:
    """Replace one array and fix its entry in meta.json (checksum, dtype, shape)."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    blob = buffer.getvalue()
    meta = json.loads(members["meta.json"])
    meta["arrays"][array_name] = {"dtype": array.dtype.str, "shape": list(array.shape),
                                  "sha256": hashlib.sha256(blob).hexdigest()}
    members["meta.json"] = json.dumps(meta).encode()
    members[f"arrays/{array_name}.npy"] = blob


@pytest.mark.parametrize("profile", profiles())
def test_arrays_swapped_with_valid_checksums(profile, saved, tmp_path):
    path = tmp_path / "model.zip"
    dtypes = st.sampled_from(["<f4", "<f8", "<i4", "<i8", "|u1", "<U3", "|b1", "<c8"])

    @fuzz_settings(profile, scale=2)
    @given(name=names, draw=st.data(), dtype=dtypes,
           kind=st.sampled_from(["shape", "values", "empty", "nan", "huge-index"]))
    def run(name, draw, dtype, kind):
        members = zip_members(saved[name])
        meta = json.loads(members["meta.json"])
        array_name = draw.draw(st.sampled_from(sorted(meta["arrays"])))
        spec = meta["arrays"][array_name]
        original = np.lib.format.read_array(io.BytesIO(members[f"arrays/{array_name}.npy"]))
        if kind == "shape":
            shape = draw.draw(st.lists(st.integers(0, 5), min_size=0, max_size=3))
            array = np.zeros(shape, dtype=dtype)
        elif kind == "values":
            array = original.copy()
            if array.size and array.dtype.kind in "fiu":
                flat = array.reshape(-1)
                flat[draw.draw(st.integers(0, flat.size - 1))] = draw.draw(st.sampled_from(
                    [-1, 0, 127, 10**6]))
        elif kind == "empty":
            array = np.zeros((0,) + tuple(spec["shape"][1:]), dtype=spec["dtype"])
        elif kind == "nan":
            array = original.astype(np.float64) if original.dtype.kind in "fiu" else original
            if array.size and array.dtype.kind == "f":
                array.reshape(-1)[0] = np.nan
        else:
            array = np.full(original.shape, 2**31 - 1, dtype=np.int64)
        with_array(members, array_name, array)
        path.write_bytes(make_zip(members))
        load_or_format_error(path)

    run()


member_name = st.one_of(st.sampled_from(["meta.json", "arrays/user_factors_.npy",
                                         "../evil.npy", "/abs/meta.json", "arrays/../../x",
                                         "arrays/seen_.indptr.npy", "a" * 300]),
                        st.text(st.characters(blacklist_characters="\x00",
                                              blacklist_categories=("Cs",)),
                                min_size=1, max_size=12))  # zipfile cannot write NUL names


@pytest.mark.parametrize("profile", profiles())
def test_foreign_archives_and_random_bytes(profile, tmp_path):
    path = tmp_path / "model.zip"

    @fuzz_settings(profile)
    @given(members=st.dictionaries(member_name, st.one_of(
        st.binary(max_size=64), json_value.map(lambda v: json.dumps(v).encode()),
        st.just(json.dumps({"format": "matfact-model", "format_version": 1,
                            "class": "BiasedMF", "params": {}, "state": {}, "kinds": {},
                            "arrays": {}}).encode())), max_size=4),
        raw=st.one_of(st.none(), st.binary(max_size=200)))
    def run(members, raw):
        path.write_bytes(make_zip(members) if raw is None else raw)
        load_or_format_error(path)
        # Loading never extracts: nothing appears outside the file's directory.
        assert not (tmp_path.parent / "evil.npy").exists()

    run()


def test_oversized_members_are_refused_before_reading(saved, tmp_path, monkeypatch):
    # A deflated meta.json whose declared size is past the limit (a zip bomb).
    members = zip_members(saved["BiasedMF"])
    members["meta.json"] = b" " * (mio.MAX_META_BYTES + 1)
    path = tmp_path / "bomb.zip"
    path.write_bytes(make_zip(members, compression=zipfile.ZIP_DEFLATED))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ModelFormatError, match="larger than allowed"):
        matfact.load(path)
    # Arrays: the same limit applies, in zips and in directories.
    good = tmp_path / "good.zip"
    good.write_bytes(saved["BiasedMF"])
    directory = tmp_path / "model_dir"
    matfact.load(good).save(directory)
    monkeypatch.setattr(mio, "MAX_ARRAY_BYTES", 16)
    for target in (good, directory):
        with pytest.raises(ModelFormatError, match="larger than allowed"):
            matfact.load(target)


def test_path_traversal_names_and_symlinks_are_refused(saved, tmp_path):
    secret = tmp_path / "secret.npy"
    np.save(secret, np.arange(3))
    members = zip_members(saved["BiasedMF"])
    meta = json.loads(members["meta.json"])
    meta["arrays"]["../../secret"] = meta["arrays"].pop("user_factors_")
    members["meta.json"] = json.dumps(meta).encode()
    path = tmp_path / "traversal.zip"
    path.write_bytes(make_zip(members))
    with pytest.raises(ModelFormatError, match="refusing array name"):
        matfact.load(path)
    # A directory model whose array is a symlink to a file elsewhere: refused by its
    # header (another dtype and shape) or its checksum.
    good = tmp_path / "good.zip"
    good.write_bytes(saved["BiasedMF"])
    directory = tmp_path / "model_dir"
    matfact.load(good).save(directory)
    target = directory / "arrays" / "user_factors_.npy"
    target.unlink()
    target.symlink_to(secret)
    with pytest.raises(ModelFormatError, match="checksum|wrong dtype or shape"):
        matfact.load(directory)


@pytest.mark.parametrize("profile", profiles())
def test_damaged_directory_models(profile, saved, tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(saved["ALS"])
    template = tmp_path / "template"
    matfact.load(good).save(template)
    files = sorted(p.relative_to(template) for p in template.rglob("*") if p.is_file())

    @fuzz_settings(profile, scale=0.5)
    @given(victim=st.sampled_from(files), how=st.sampled_from(["delete", "truncate", "junk",
                                                              "dir"]),
           cut=st.integers(0, 200), junk=st.binary(max_size=40))
    def run(victim, how, cut, junk):
        work = tmp_path / "work"
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(template, work)
        target = work / victim
        if how == "delete":
            target.unlink()
        elif how == "truncate":
            target.write_bytes(target.read_bytes()[:cut])
        elif how == "junk":
            target.write_bytes(junk)
        else:
            target.unlink()
            target.mkdir()
        load_or_format_error(work)

    run()


@pytest.mark.parametrize("suffix", [".zip", ""])
def test_regression_a_save_removes_temporaries_of_killed_saves(saved, tmp_path, suffix):
    # Found by the kill -9 loop (test_crash_safety.py): every save killed before its
    # rename left a hidden temporary beside the model, and nothing ever removed them.
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    path = tmp_path / f"model{suffix}"
    stale_file = tmp_path / f".{path.name}.{pid}.abc123.tmp"
    stale_file.write_bytes(b"half a model")
    stale_dir = tmp_path / f".{path.name}.{pid}.def456.tmp"
    (stale_dir / "arrays").mkdir(parents=True)
    live = tmp_path / f".{path.name}.{os.getpid()}.ghi789.tmp"  # a save still running
    live.write_bytes(b"in progress")
    other = tmp_path / f".{path.name}.notes.txt"
    other.write_bytes(b"not ours")
    good = tmp_path / "source.zip"
    good.write_bytes(saved["BiasedMF"])
    matfact.load(good).save(path)
    assert not stale_file.exists() and not stale_dir.exists()
    assert live.exists() and other.exists()
    matfact.load(path)


# ---------------------------------------------------------------------- issue 19, point 5
# Each crafted file of the issue, built from a real saved model with the helpers of the
# crafted corpus (tests/hardening/test_model_file_corpus.py runs ≥ 1,000 of them).
def _crafted(saved, name: str = "BiasedMF"):
    from tests.hardening._model_file_corpus import Model

    return Model(name, saved[name])


def _refused(model_or_blob, tmp_path, match: str) -> ModelFormatError:
    path = tmp_path / "crafted.zip"
    path.write_bytes(model_or_blob if isinstance(model_or_blob, bytes) else model_or_blob.pack())
    with pytest.raises(ModelFormatError, match=match) as info:
        matfact.load(path)
    return info.value


def test_regression_issue_19_a_member_declaring_a_gibibyte_is_refused_before_reading(
        saved, tmp_path):
    # Issue 19: ~1 MB of deflated zeros declaring 1 GiB made matfact.load peak at 2.3 GiB.
    from tests.hardening._model_file_corpus import bomb

    model = _crafted(saved)
    rows = model.meta["arrays"]["user_factors_"]["shape"]
    entry, sha = bomb("arrays/user_factors_.npy", "<f4", (2**27, 2))
    model.put(entry)
    assert entry.size > 2**30 and len(entry.data) < 2 * 2**20
    untouched = model.pack()  # meta.json still declares the real shape: the entry disagrees
    _refused(untouched, tmp_path, "holds 1,073,741,952 bytes")
    model.meta["arrays"]["user_factors_"] = {"dtype": "<f4", "shape": [2**27, 2], "sha256": sha}
    _refused(model, tmp_path, rf"dimension 0 must be {rows[0]}")


def test_regression_issue_19_declared_shapes_must_agree_with_the_model(saved, tmp_path):
    # 2**37 elements (the MemoryError of the issue), an id map longer than the ratings
    # matrix, factors wider than n_factors: all refused from meta.json alone.
    for name, shape, match in (("user_bias_", [2**37], "dimension 0 must be"),
                               ("user_index_", [2**37], "seen_ declares shape"),
                               ("item_factors_", [9, 2**20], "dimension 1 must be between"),
                               ("seen_.data", [2**37], "must be equal")):
        model = _crafted(saved)
        model.meta["arrays"][name]["shape"] = shape
        _refused(model, tmp_path, match)


def test_regression_issue_19_meta_json_cannot_recurse_or_convert_huge_numbers(saved, tmp_path):
    model = _crafted(saved)
    deep = "[" * 200_000 + "]" * 200_000
    text = json.dumps(model.meta).replace('"n_iter_": 3', f'"n_iter_": {deep}', 1)
    _refused(model.pack(text.encode()), tmp_path, "nested deeper than 64 levels")
    model = _crafted(saved)
    text = json.dumps(model.meta).replace('"n_iter_": 3', '"n_iter_": ' + "9" * 5001, 1)
    _refused(model.pack(text.encode()), tmp_path, "integer of 5,001 digits")
    for literal in ("NaN", "Infinity", "1e999"):
        text = json.dumps(model.meta).replace('"n_iter_": 3', f'"n_iter_": {literal}', 1)
        _refused(model.pack(text.encode()), tmp_path, "not JSON|out of range")
    text = json.dumps(model.meta).replace('"n_iter_": 3', '"n_iter_": 3, "n_iter_": 4', 1)
    _refused(model.pack(text.encode()), tmp_path, "repeats a key")


def test_regression_issue_19_the_encryption_flag_is_refused(saved, tmp_path):
    from dataclasses import replace

    from tests.hardening._model_file_corpus import write_zip

    model = _crafted(saved)
    model.pack()
    model.entries = [replace(e, flags=1) if e.name == "arrays/item_bias_.npy" else e
                     for e in model.entries]
    _refused(write_zip(model.entries), tmp_path, "encrypted")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_regression_issue_19_non_finite_values_are_refused(saved, tmp_path, value):
    for name in ("user_factors_", "item_bias_", "seen_.data"):
        model = _crafted(saved)
        array = model.array(name).copy()
        array.reshape(-1)[0] = value
        model.set_array(name, array)
        _refused(model, tmp_path, f"array {name}: holds NaN or infinite")


@pytest.mark.parametrize("dtype", ["<f2", "|b1", "<c8", "<f8", ">f4", "|u1"])
def test_regression_issue_19_dtypes_the_class_never_writes_are_refused(saved, tmp_path, dtype):
    model = _crafted(saved)
    model.set_array("user_factors_", model.array("user_factors_").astype(dtype))
    _refused(model, tmp_path, f"has dtype '{re.escape(np.dtype(dtype).str)}'")


@pytest.mark.parametrize("scale, match", [([5.0, 1.0], "inverted"),
                                          ([1.0, None], "two finite numbers"),
                                          ([1.0], "two finite numbers")])
def test_regression_issue_19_a_reversed_rating_scale_is_refused(saved, tmp_path, scale, match):
    model = _crafted(saved)
    model.meta["state"]["rating_scale_"] = scale
    _refused(model, tmp_path, match)
    model = _crafted(saved)
    model.meta["state"]["global_mean_"] = None
    _refused(model, tmp_path, "global_mean_ must be a finite number")


def test_regression_issue_19_ids_longer_than_the_limit_are_refused(saved, tmp_path):
    from matfact.data.interactions import MAX_ID_LENGTH

    model = _crafted(saved)
    ids = [str(x) for x in model.array("item_index_")]
    ids[0] = "x" * (MAX_ID_LENGTH + 1)
    model.set_array("item_index_", np.array(ids))
    _refused(model, tmp_path, f"ids are at most {MAX_ID_LENGTH} characters")


def test_regression_issue_19_a_consistent_model_scaled_around_bombs_is_refused(saved,
                                                                               tmp_path):
    # Every user array grown to 2**21 users, consistently, out of deflated zeros: no
    # shape disagrees, but the file would expand more than 32 times.
    from tests.hardening._model_file_corpus import bomb

    model = _crafted(saved)
    n = 2**21
    for name in ("user_index_", "seen_.indptr", "user_factors_", "user_bias_"):
        spec = model.meta["arrays"][name]
        shape = [n + (name == "seen_.indptr"), *spec["shape"][1:]]
        entry, sha = bomb(f"arrays/{name}.npy", spec["dtype"], tuple(shape))
        model.put(entry)
        model.meta["arrays"][name] = {"dtype": spec["dtype"], "shape": shape, "sha256": sha}
    model.meta["kinds"]["seen_"]["shape"][0] = n
    _refused(model, tmp_path, "decompression bomb")


def test_regression_issue_19_streams_stop_at_the_declared_size(saved, tmp_path):
    from dataclasses import replace

    from tests.hardening._model_file_corpus import deflated

    model = _crafted(saved)
    content = model.member("arrays/user_bias_.npy")
    entry = deflated("arrays/user_bias_.npy", content)
    model.put(replace(entry, data=entry.data[:len(entry.data) // 2]))  # a stream cut short
    _refused(model, tmp_path, "user_bias_ is (truncated|damaged|unreadable)")
    model = _crafted(saved)
    model.put(deflated("arrays/user_bias_.npy", content + bytes(10**6)))  # longer than declared
    _refused(model, tmp_path, "holds 1,0")


def test_regression_issue_19_duplicate_members_are_refused(saved, tmp_path):
    from tests.hardening._model_file_corpus import stored, write_zip

    model = _crafted(saved)
    model.pack()
    model.entries.append(stored("meta.json", b"{}"))
    _refused(write_zip(model.entries), tmp_path, "two members named 'meta.json'")


def test_regression_issue_19_a_recompressed_model_still_loads(saved, tmp_path):
    # The bounds are about what a file declares, not how it is stored: a model re-zipped
    # with deflate (a zip tool's default) loads like the stored one.
    from tests.hardening._model_file_corpus import deflated, write_zip

    for name in ("BiasedMF", "ALS", "BayesianMF"):
        model = _crafted(saved, name)
        model.pack()
        path = tmp_path / f"{name}.zip"
        path.write_bytes(write_zip([deflated(e.name, e.data) for e in model.entries]))
        matfact.load(path)


@pytest.mark.parametrize("error", [RecursionError("deep"), MemoryError(), OverflowError("big"),
                                   UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
                                   RuntimeError("File is encrypted"), OSError(5, "I/O error"),
                                   zipfile.BadZipFile("bad"), IndexError("index 1682")])
def test_regression_issue_19_every_failure_is_a_model_format_error(saved, tmp_path,
                                                                   monkeypatch, error):
    path = tmp_path / "model.zip"
    path.write_bytes(saved["BiasedMF"])

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(mio, "_read_array", fail)
    with pytest.raises(ModelFormatError) as info:
        matfact.load(path)
    assert info.value.__cause__ is error or type(error).__name__ in str(info.value)
    monkeypatch.undo()
    monkeypatch.setattr(mio.zipfile.ZipFile, "open", fail)
    with pytest.raises(ModelFormatError):
        matfact.load(path)
