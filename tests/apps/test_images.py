"""matfact.apps.images: eigenfaces and NMF parts for compression and recognition (issue 6).

Real faces come from the shared ORL copy (skipped when absent) and are cut to
a few subjects to stay fast; folder and patch modes run on images made here.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from PIL import Image

from matfact.apps import images as app
from matfact.cli import images as command
from matfact.datasets import ImageDataset
from matfact.exceptions import DataError, ParameterError

N_SUBJECTS = 10  # of ORL's 40, 10 images each
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def orl(data_dir) -> ImageDataset:
    if not (data_dir / "faces" / "orl_faces.npz").exists():
        pytest.skip(f"ORL faces absent: no {data_dir / 'faces' / 'orl_faces.npz'}")
    return app.load_images("orl-faces", data_home=data_dir)


@pytest.fixture(scope="module")
def faces(orl) -> ImageDataset:
    """The first N_SUBJECTS people of ORL at half size: 100 images of 56 x 46 (2x2 means)."""
    keep = orl.labels < N_SUBJECTS
    small = orl.images[keep].reshape(-1, 56, 2, 46, 2).mean(axis=(2, 4))
    return ImageDataset(images=np.rint(small).astype(np.uint8), labels=orl.labels[keep])


def _write(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)


def _blobs(rng: np.random.Generator, n: int, shape=(12, 10)) -> np.ndarray:
    """``n`` smooth non-negative images: random mixes of 3 fixed blobs plus a little noise."""
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    centres = [(3, 3), (8, 6), (5, 8)]
    blobs = np.stack([np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / 6.0) for r, c in centres])
    mix = rng.uniform(0.2, 1.0, size=(n, len(blobs)))
    images = 200 * np.tensordot(mix, blobs, axes=1) + rng.uniform(0, 10, size=(n, *shape))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="matfact images")
    command.configure_parser(parser)
    return parser.parse_args(list(argv))


def _is_png(path) -> bool:
    with open(path, "rb") as handle:
        if handle.read(8) != PNG_SIGNATURE:
            return False
    with Image.open(path) as image:
        image.verify()
    return True


# ------------------------------------------------------------------------------ measures
def test_compression_ratio_by_hand():
    # ORL: n = 400, d = 112 * 92 = 10,304; k = 10.
    assert app.compression_ratio(400, 10_304, 10) == pytest.approx(
        4_121_600 / (4_000 + 103_040))
    assert app.compression_ratio(400, 10_304, 10, with_mean=True) == pytest.approx(
        4_121_600 / (4_000 + 103_040 + 10_304))
    assert app.compression_ratio(400, 10_304, 10) == pytest.approx(38.505, abs=1e-3)


def test_psnr_and_relative_error_by_hand():
    original = np.zeros((2, 2))
    noisy = original.copy()
    noisy[0, 0] = 10.0  # MSE = 100 / 4 = 25
    assert app.psnr(original, noisy) == pytest.approx(10 * math.log10(255 ** 2 / 25))
    assert app.psnr(original, noisy) == pytest.approx(34.151, abs=1e-3)
    assert app.psnr(original, original) == math.inf
    assert app.psnr([0.0, 0.0], [0.5, 0.5], peak=1.0) == pytest.approx(10 * math.log10(4))
    assert app.relative_error([3.0, 4.0], [3.0, 0.0]) == pytest.approx(0.8)
    with pytest.raises(DataError, match="differ in shape"):
        app.psnr(np.zeros(3), np.zeros(4))
    with pytest.raises(DataError, match="all zeros"):
        app.relative_error([0.0, 0.0], [1.0, 0.0])


def test_table_matches_its_fits(faces):
    table, fits = app.compression_table(faces, [4], return_fits=True)
    n, d = len(faces), 56 * 46
    svd = table[table["method"] == "svd"].iloc[0]
    nmf = table[table["method"] == "nmf"].iloc[0]
    assert svd["stored"] == n * 4 + 4 * d + d  # the mean face is stored too
    assert nmf["stored"] == n * 4 + 4 * d
    assert svd["compression_ratio"] == pytest.approx(
        app.compression_ratio(n, d, 4, with_mean=True))
    rebuilt = fits["nmf", 4].reconstruct()
    assert nmf["psnr"] == pytest.approx(
        10 * math.log10(255 ** 2 / np.mean((faces.images - rebuilt) ** 2)))
    assert nmf["relative_error"] == pytest.approx(
        np.linalg.norm(faces.images - rebuilt) / np.linalg.norm(faces.images.astype(float)))


# ------------------------------------------------------------------------------ factorizations
def test_svd_error_decreases_with_rank(faces):
    table = app.compression_table(faces, [1, 2, 4, 8, 16, 32, 64], methods=["svd"])
    errors = table["relative_error"].to_numpy()
    assert np.all(np.diff(errors) < 0)
    assert np.all(np.diff(table["psnr"].to_numpy()) > 0)
    assert np.all(np.diff(table["compression_ratio"].to_numpy()) < 0)


def test_centred_svd_never_loses_to_nmf(faces):
    # Eckart–Young for affine subspaces: mean + the top-k principal directions is the best
    # k-dimensional affine fit, and NMF's span (through the origin) is one such subspace.
    table = app.compression_table(faces, [3, 12])
    by_rank = table.pivot(index="rank", columns="method", values="relative_error")
    assert (by_rank["svd"] <= by_rank["nmf"] + 1e-9).all()


def test_exact_low_rank_images_are_recovered(rng):
    # mean + rank-3 structure: the centred SVD at rank 3 reproduces it to round-off.
    basis = rng.uniform(0, 1, size=(3, 48))
    codes = rng.uniform(0, 1, size=(30, 3))
    images = (40 + 60 * codes @ basis).reshape(30, 8, 6)
    fit = app.factorize(images, 3, "svd")
    assert app.relative_error(images, fit.reconstruct()) < 1e-10
    assert app.psnr(images, fit.reconstruct()) > 150
    assert np.allclose(np.linalg.norm(fit.components, axis=1), 1.0)


def test_nmf_factors_are_non_negative_unit_norm_and_transform_matches(rng):
    images = _blobs(rng, 40)
    fit = app.factorize(images, 3, "nmf", max_iter=300)
    assert (fit.codes >= 0).all() and (fit.components >= 0).all()
    assert np.allclose(np.linalg.norm(fit.components, axis=1), 1.0)
    assert app.relative_error(images, fit.reconstruct()) < 0.05  # 3 blobs + 5% noise
    # The codes of the training images, recomputed with the basis fixed, agree.
    assert np.allclose(fit.transform(images), fit.codes, rtol=0.05, atol=0.05 * fit.codes.max())
    # basis_images: all parts, the most used first.
    assert app.basis_images(fit).shape == (3, 12, 10)
    assert np.array_equal(app.basis_images(fit, 1)[0].ravel(),
                          fit.components[np.argmax(fit.codes.sum(axis=0))])


# ------------------------------------------------------------------------------ recognition
def test_split_per_subject_first_and_seeded():
    labels = np.repeat([0, 1, 2], 4)
    train, test = app.split_per_subject(labels, n_train=3)
    assert train.tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert test.tolist() == [3, 7, 11]
    first = app.split_per_subject(labels, n_train=2, shuffle=True, random_state=7)
    again = app.split_per_subject(labels, n_train=2, shuffle=True, random_state=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert np.bincount(labels[first[0]]).tolist() == [2, 2, 2]
    assert set(first[0]).isdisjoint(first[1])
    with pytest.raises(DataError, match="needs at least 5"):
        app.split_per_subject(labels, n_train=4)
    with pytest.raises(ParameterError, match="n_train"):
        app.split_per_subject(labels, n_train=0)


def test_recognition_well_above_chance(faces):
    table = app.recognition_curve(faces.images, faces.labels, [5, 10])
    chance = 1 / N_SUBJECTS
    assert set(table["method"]) == {"svd", "nmf", "pixels"}
    assert (table["n_train"] == 5 * N_SUBJECTS).all()
    assert (table["n_test"] == 5 * N_SUBJECTS).all()
    for method in ("svd", "nmf"):
        accuracy = table.loc[table["method"] == method, "accuracy"]
        assert (accuracy >= 5 * chance).all(), (method, accuracy.tolist())


def test_recognition_rank_limited_by_training_images(faces):
    # 50 training images: ranks stop at 49, though the 100 images would allow 99.
    with pytest.raises(ParameterError, match="training images.*from 1 to .*49"):
        app.recognition_curve(faces.images, faces.labels, [50], methods=["svd"])


# ------------------------------------------------------------------------------ command line
def test_cli_end_to_end_on_a_folder_of_real_faces(faces, tmp_path, capsys):
    # The original ORL layout: one folder per person, sX/Y.pgm.
    folder = tmp_path / "att_faces"
    for index, (image, label) in enumerate(zip(faces.images, faces.labels, strict=True)):
        _write(folder / f"s{label + 1}" / f"{index % 10 + 1}.pgm", image)
    out = tmp_path / "out"
    assert command.run(_parse("--data", str(folder), "--out", str(out), "--ranks", "8,2",
                          "--seed", "0", "--max-iter", "100")) == 0
    printed = capsys.readouterr().out
    for name in ("basis.png", "reconstructions.png", "compression.png", "recognition.png"):
        assert _is_png(out / name), name
        assert (out / name).stat().st_size < 200_000
    assert (out / "compression.csv").exists() and (out / "recognition.csv").exists()
    assert "rank  SVD ratio  SVD PSNR (dB)  SVD rel. error  NMF ratio" in printed
    svd = app.compression_table(faces, [2, 8], methods=["svd"]).set_index("rank")
    n, d = faces.images.shape[0], 56 * 46
    squared_norm = float(np.sum(faces.images.astype(float) ** 2))
    for rank in (2, 8):
        line = next(row for row in printed.splitlines() if row.split()[:1] == [str(rank)])
        cells = line.split()
        # SVD: what compression_table measures on the same images.
        assert cells[1:4] == [f"{svd.loc[rank, 'compression_ratio']:.1f}",
                              f"{svd.loc[rank, 'psnr']:.2f}",
                              f"{svd.loc[rank, 'relative_error']:.4f}"]
        # NMF: the ratio by hand, and PSNR agreeing with the relative error printed beside it
        # (MSE = (relative error * ||X||)^2 / (n d)).
        assert cells[4] == f"{n * d / (n * rank + rank * d):.1f}"
        mse = (float(cells[6]) * math.sqrt(squared_norm)) ** 2 / (n * d)
        assert float(cells[5]) == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=0.02)
    assert f"of each of {N_SUBJECTS} classes train" in printed
    assert "chance 10.0%" in printed


def test_cli_single_image_patches(tmp_path, capsys, rng):
    rows, cols = np.mgrid[:40, :52]
    picture = 120 + 100 * np.sin(rows / 5.0) * np.cos(cols / 7.0) + rng.uniform(0, 20, (40, 52))
    path = tmp_path / "picture.png"
    _write(path, np.clip(picture, 0, 255))
    out = tmp_path / "out"
    assert command.run(_parse("--data", str(path), "--patch", "8", "--out", str(out), "--ranks",
                          "2,4", "--seed", "1")) == 0
    printed = capsys.readouterr().out
    assert "30 patches of 8x8 pixels (5 x 6)" in printed  # 40 // 8 by 52 // 8
    assert "Recognition: skipped (patches of one image have no classes)" in printed
    for name in ("basis.png", "reconstructions.png", "compression.png"):
        assert _is_png(out / name), name
    assert not (out / "recognition.png").exists()


def test_cli_default_ranks_fit_small_data(tmp_path, capsys, rng):
    folder = tmp_path / "flat"
    for index, image in enumerate(_blobs(rng, 12)):
        _write(folder / f"{index}.png", image)
    assert command.run(_parse("--data", str(folder), "--out", str(tmp_path / "out"))) == 0
    printed = capsys.readouterr().out
    table_rows = [line.split()[0] for line in printed.splitlines()
                  if line[:1].isdigit() and len(line.split()) == 7]
    assert table_rows == ["5", "10"]  # 12 images: ranks up to 11 of the defaults
    assert "Recognition: skipped (the images have no classes" in printed


def test_cli_rejects_malformed_ranks():
    parser = argparse.ArgumentParser(prog="matfact images", exit_on_error=False)
    command.configure_parser(parser)
    with pytest.raises(argparse.ArgumentError, match="comma-separated integers"):
        parser.parse_args(["--ranks", "5,ten"])
    with pytest.raises(argparse.ArgumentError, match="positive"):
        parser.parse_args(["--ranks", "0,5"])


# ------------------------------------------------------------------------------ loading
def test_folder_of_colour_images_is_read_as_gray(tmp_path):
    colour = np.zeros((6, 5, 3), dtype=np.uint8)
    colour[..., 0] = 255  # pure red: ITU-R 601 luma 0.299 * 255 = 76
    _write(tmp_path / "a.png", colour)
    _write(tmp_path / "b.jpg", np.full((6, 5), 100))
    dataset = app.load_images(tmp_path)
    assert dataset.images.shape == (2, 6, 5) and dataset.images.dtype == np.uint8
    assert (dataset.images[0] == 76).all()
    assert abs(int(dataset.images[1].mean()) - 100) <= 1  # JPEG may shift a level
    assert dataset.labels.tolist() == [0, 0]


def test_subfolders_are_classes_in_natural_order(tmp_path, rng):
    for person in (10, 2, 1):
        for index in range(2):
            _write(tmp_path / f"s{person}" / f"{index}.pgm", rng.integers(0, 256, (4, 3)))
    (tmp_path / "README.txt").write_text("not an image")  # other files are ignored
    dataset = app.load_images(tmp_path)
    assert dataset.labels.tolist() == [0, 0, 1, 1, 2, 2]  # s1, s2, s10
    again = app.read_image(tmp_path / "s2" / "1.pgm")
    assert np.array_equal(dataset.images[3], again)


def test_patches_round_trip(tmp_path, rng):
    image = rng.integers(0, 256, size=(20, 27)).astype(np.uint8)
    _write(tmp_path / "one.png", image)
    dataset = app.load_images(tmp_path / "one.png", patch=6)
    assert dataset.images.shape == (3 * 4, 6, 6)
    assert np.array_equal(dataset.images[1], image[:6, 6:12])  # reading order
    assert np.array_equal(app.assemble_patches(dataset.images, (3, 4)), image[:18, :24])


def test_mixed_sizes_are_an_error(tmp_path):
    _write(tmp_path / "a.png", np.zeros((6, 5)))
    _write(tmp_path / "b.png", np.zeros((6, 5)))
    _write(tmp_path / "c.png", np.zeros((7, 5)))
    with pytest.raises(DataError, match=r"differ in size.*6x5 \(2 file.*7x5 \(1 file.*c\.png"):
        app.load_images(tmp_path)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no images in"):
        app.load_images(tmp_path)


def test_images_beside_class_folders_are_an_error(tmp_path):
    _write(tmp_path / "a.png", np.zeros((3, 3)))
    _write(tmp_path / "s1" / "b.png", np.zeros((3, 3)))
    with pytest.raises(DataError, match="both directly"):
        app.load_images(tmp_path)


def test_unreadable_image_is_an_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken.png: cannot read it as an image"):
        app.load_images(tmp_path)


def test_source_errors(tmp_path):
    _write(tmp_path / "one.png", np.zeros((8, 8)))
    with pytest.raises(ParameterError, match="single image: pass patch"):
        app.load_images(tmp_path / "one.png")
    with pytest.raises(ParameterError, match="applies to a single image"):
        app.load_images(tmp_path, patch=4)
    with pytest.raises(ParameterError, match="patch size must be an integer >= 2"):
        app.load_images(tmp_path / "one.png", patch=1)
    with pytest.raises(ParameterError, match="leaves 1 patch"):
        app.load_images(tmp_path / "one.png", patch=5)
    with pytest.raises(ParameterError, match="holds no images"):
        app.load_images("ml-100k")
    with pytest.raises(FileNotFoundError, match="no image dataset of that name"):
        app.load_images(tmp_path / "missing")


def test_rank_out_of_range(rng):
    images = rng.integers(0, 256, size=(6, 4, 5))
    with pytest.raises(ParameterError, match=r"rank 6 is out of range.*from 1 to .* = 5"):
        app.compression_table(images, [2, 6])
    with pytest.raises(ParameterError, match="rank 0 is out of range"):
        app.factorize(images, 0)
    with pytest.raises(ParameterError, match="rank 2.5"):
        app.factorize(images, 2.5)
    with pytest.raises(ParameterError, match="ranks is empty"):
        app.compression_table(images, [])
    with pytest.raises(ParameterError, match="methods"):
        app.compression_table(images, [2], methods=["pca"])


def test_pixels_must_be_8_bit_scale():
    with pytest.raises(DataError, match="0–255"):
        app.factorize(np.full((4, 3, 3), 300.0), 1)
    with pytest.raises(DataError, match="0–255"):
        app.factorize(-np.ones((4, 3, 3)), 1)
    with pytest.raises(DataError, match=r"shape \(n_images, height, width\)"):
        app.factorize(np.ones((4, 9)), 1)
