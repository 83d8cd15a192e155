"""Faces from pixels: SVD eigenfaces and NMF parts on images, for compression and recognition.

Every image of ``n`` same-size grayscale images becomes one row of a data matrix
``X`` of shape ``(n, d)``, ``d = height * width`` pixels on the 0–255 scale. Two
rank-``k`` factorizations approximate it:

- **SVD, "eigenfaces"** (Turk & Pentland 1991): subtract the mean image ``m``,
  then truncate the SVD of the centred matrix, ``X ≈ 1 mᵀ + U_k Σ_k V_kᵀ``. The
  rows of ``V_kᵀ`` are the eigenfaces: signed, holistic, ordered by variance.
  By Eckart–Young this is the best fit of the images by ``m`` plus any ``k``
  directions (in the Frobenius norm), so no rank-``k`` NMF fits them better.
- **NMF, parts** (Lee & Seung 1999): ``X ≈ W H`` with ``W ≥ 0`` and ``H ≥ 0``.
  Without subtraction, images can only add parts, so the rows of ``H`` tend to
  be localized: eyes, noses, mouths, hairlines.

Storing ``W`` (``n × k``) and ``H`` (``k × d``) instead of ``X`` gives the
compression ratio ``n d / (n k + k d)`` (``+ d`` in the denominator for the
SVD's mean image), and the codes ``W`` of held-out images (``transform``) feed
a 1-nearest-neighbour classifier for recognition.

Three sources of images: the ``"orl-faces"`` dataset (400 images 112 × 92 of 40
people, see :func:`matfact.load_dataset`), a folder of same-size images (one
subfolder per person for recognition), or one image cut into non-overlapping
square patches (compression only; the patches are the rows).

The ``matfact images`` command (:func:`configure_parser`, :func:`run`) prints
the compression table and the recognition accuracies and writes the figures.

Examples
--------
>>> from matfact.apps.images import load_images, compression_table
>>> faces = load_images("orl-faces")  # doctest: +SKIP
>>> compression_table(faces, [10, 40])  # doctest: +SKIP
  method  rank  stored  compression_ratio       psnr  relative_error
0    svd    10  117344          35.124080  20.194884        0.202388
1    svd    40  438464           9.400088  22.987162        0.146747
2    nmf    10  107040          38.505232  20.054252        0.205691
3    nmf    40  428160           9.626308  22.512025        0.154999
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matfact._atomic import atomic_write
from matfact.exceptions import DataError, ParameterError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np
    import pandas as pd

    from matfact.data.datasets import ImageDataset

__all__ = [
    "DEFAULT_RANKS",
    "IMAGE_SUFFIXES",
    "METHODS",
    "Factorization",
    "assemble_patches",
    "basis_images",
    "compression_ratio",
    "compression_table",
    "configure_parser",
    "factorize",
    "format_compression_table",
    "format_recognition_table",
    "image_patches",
    "load_images",
    "plot_basis",
    "plot_compression",
    "plot_recognition",
    "plot_reconstructions",
    "psnr",
    "read_image",
    "recognition_curve",
    "relative_error",
    "run",
    "split_per_subject",
]

#: Ranks of ``matfact images`` when ``--ranks`` is not given (those below the data's limit).
DEFAULT_RANKS = (5, 10, 20, 40, 80)
#: File suffixes read as images from a folder (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pnm", ".pbm", ".bmp", ".gif",
                  ".tif", ".tiff", ".webp")
#: The factorizations compared: mean-centred truncated SVD and NMF.
METHODS = ("svd", "nmf")

_METHOD_NAMES = {"svd": "SVD (eigenfaces)", "nmf": "NMF (parts)", "pixels": "raw pixels"}
_COLORS = {"svd": "#0072B2", "nmf": "#E69F00", "pixels": "#6B6B6B"}  # Okabe & Ito, as plots.py
_IMAGE_DATASETS = ("orl-faces",)
_DEFAULT_PATCH = 16
_LEE_SEUNG_RANK = 49  # the 7 × 7 basis of Lee & Seung's figure
_N_BASIS_SHOWN = 16
_NMF_MAX_ITER = 200
_NMF_TOL = 0.0  # run max_iter iterations: see factorize() for why
_DPI = 100
_INK = "#222222"
_MUTED = "#6B6B6B"
_GRID = "#E4E4E4"


# ------------------------------------------------------------------------------ models
def _make_svd(rank: int, random_state: int | None) -> Any:
    """A truncated SVD of ``rank`` components (ARPACK: exact to solver precision)."""
    from matfact.models.svd import TruncatedSVD

    # ARPACK rather than the randomized default: the table and the monotone-error test
    # compare ranks, and randomized SVD's small per-rank errors would blur that.
    return TruncatedSVD(n_components=rank, algorithm="arpack", random_state=random_state)


def _make_nmf(rank: int, random_state: int | None, max_iter: int, tol: float,
              params: dict[str, Any] | None) -> Any:
    """An NMF of ``rank`` components on the Frobenius loss, with overridable parameters."""
    from matfact.models.nmf import NMF

    # NNDSVD starts deterministically from the SVD's dominant subspace, with zeros that
    # coordinate descent may revive: on ORL at rank 40 its parts came out a little more
    # local, and its error a little lower, than from NNDSVDa's mean-filled start.
    # Coordinate descent, not Lee & Seung's multiplicative updates: far fewer iterations.
    settings = {"init": "nndsvd", "solver": "cd", "beta_loss": "frobenius", "tol": tol,
                "max_iter": max_iter, "random_state": random_state}
    settings.update(params or {})
    return NMF(n_components=rank, **settings)


# ------------------------------------------------------------------------------ reading
def _natural_key(path: Path) -> list[Any]:
    """Sort ``s2`` before ``s10`` and ``2.pgm`` before ``10.pgm``."""
    return [int(part) if part.isdigit() else part.lower()
            for part in re.split(r"(\d+)", path.name)]


def _is_image_file(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
            and not path.name.startswith("."))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as 8-bit gray.

    Colour images are converted with Pillow's ITU-R 601 luma
    (``L = 0.299 R + 0.587 G + 0.114 B``), alpha is dropped, 16-bit images are
    scaled to 0–255 (divided by 257), and a multi-frame file (GIF, TIFF) gives
    its first frame.

    Parameters
    ----------
    path : str or os.PathLike
        An image file Pillow can read (PNG, JPEG, PGM/PPM, BMP, GIF, TIFF, WebP, ...).

    Returns
    -------
    ndarray of shape (height, width), dtype uint8

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    DataError
        If the file is not an image Pillow can read, or holds floating-point pixels.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode.startswith("I;16") or mode == "I":
                values = np.asarray(image, dtype=np.float64)
                # "I" (32-bit integer) is how Pillow opens many 16-bit PNGs: 8-bit data
                # stays as is, anything above 255 is taken as 16-bit.
                if mode != "I" or values.max(initial=0) > 255:
                    values = values / 257.0
                pixels = np.clip(np.rint(values), 0, 255).astype(np.uint8)
            elif mode == "F":
                raise DataError(f"{path}: floating-point images (mode F) are not supported; "
                                f"save it as 8- or 16-bit grayscale first")
            else:
                pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: cannot read it as an image: {err}") from None
    return np.array(pixels)  # own, writable copy, detached from Pillow's buffer


def image_patches(image: np.ndarray, size: int) -> np.ndarray:
    """Cut an image into non-overlapping ``size × size`` patches, row by row.

    The right and bottom margins that do not fill a whole patch are dropped,
    so ``assemble_patches(image_patches(x, s), grid)`` gives back
    ``x[:grid[0] * s, :grid[1] * s]`` with ``grid = (h // s, w // s)``.

    Parameters
    ----------
    image : ndarray of shape (height, width)
        One grayscale image.
    size : int
        Side of the square patches, at least 2.

    Returns
    -------
    ndarray of shape (height // size * (width // size), size, size)
        The patches in reading order (left to right, then top to bottom).

    Raises
    ------
    ParameterError
        If ``size`` is below 2 or leaves fewer than 2 patches.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(24).reshape(4, 6)
    >>> image_patches(image, 2).shape
    (6, 2, 2)
    """
    import numpy as np

    image = np.asarray(image)
    if image.ndim != 2:
        raise DataError(f"image must be 2-D (height, width), got shape {image.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ParameterError(f"patch size must be an integer >= 2, got {size!r}")
    rows, cols = image.shape[0] // size, image.shape[1] // size
    if rows * cols < 2:
        raise ParameterError(
            f"patch size {size} leaves {rows * cols} patch(es) of an image of "
            f"{image.shape[0]}x{image.shape[1]} pixels; use a smaller --patch (at most "
            f"{max(image.shape) // 2})"
        )
    cropped = image[:rows * size, :cols * size]
    return cropped.reshape(rows, size, cols, size).swapaxes(1, 2).reshape(-1, size, size)


def assemble_patches(patches: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Put patches from :func:`image_patches` back together into one image.

    Parameters
    ----------
    patches : ndarray of shape (rows * cols, size, size)
        Patches in reading order.
    grid : tuple of int
        ``(rows, cols)``: patches down and across.

    Returns
    -------
    ndarray of shape (rows * size, cols * size)
    """
    import numpy as np

    patches = np.asarray(patches)
    rows, cols = grid
    if patches.ndim != 3 or patches.shape[0] != rows * cols:
        raise DataError(f"expected {rows}x{cols}={rows * cols} patches of shape (size, size), "
                        f"got an array of shape {patches.shape}")
    size_h, size_w = patches.shape[1:]
    return patches.reshape(rows, cols, size_h, size_w).swapaxes(1, 2).reshape(
        rows * size_h, cols * size_w)


def _read_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    import numpy as np

    entries = sorted(folder.iterdir(), key=_natural_key)
    files = [p for p in entries if _is_image_file(p)]
    classes = []
    for sub in entries:
        if sub.is_dir() and not sub.name.startswith("."):
            inside = sorted((p for p in sub.iterdir() if _is_image_file(p)), key=_natural_key)
            if inside:
                classes.append(inside)
    if files and classes:
        raise DataError(
            f"{folder} holds images both directly ({files[0].name}, ...) and in subfolders; "
            f"put all images in subfolders (one per person) or all directly in the folder"
        )
    if not files and not classes:
        raise DataError(
            f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)} files, directly "
            f"or one subfolder down)"
        )
    if classes:
        paths = [path for group in classes for path in group]
        labels = np.repeat(np.arange(len(classes), dtype=np.int64), [len(g) for g in classes])
    else:
        paths = files
        labels = np.zeros(len(files), dtype=np.int64)  # one class: no recognition
    pixels = [read_image(path) for path in paths]
    shapes: dict[tuple[int, int], list[Path]] = {}
    for path, image in zip(paths, pixels, strict=True):
        shapes.setdefault(image.shape, []).append(path)
    if len(shapes) > 1:
        listed = "; ".join(
            f"{h}x{w} ({len(found)} file(s), e.g. {found[0].relative_to(folder)})"
            for (h, w), found in sorted(shapes.items(), key=lambda item: -len(item[1]))
        )
        raise DataError(f"the images in {folder} differ in size (height x width): {listed}; "
                        f"resize or crop them to one size first")
    return np.stack(pixels), labels, paths


def load_images(source: Any, *, patch: int | None = None,
                data_home: str | os.PathLike | None = None) -> ImageDataset:
    """Load grayscale images from a dataset name, a folder, or one image cut into patches.

    Parameters
    ----------
    source : str or os.PathLike or ImageDataset
        - ``"orl-faces"``: the ORL faces, via :func:`matfact.load_dataset`.
        - A folder: every image file in it (see :data:`IMAGE_SUFFIXES`), all of
          one size, read with :func:`read_image` (colour becomes gray). If the
          images sit in subfolders, each subfolder is one class (person), in
          natural order (``s2`` before ``s10``), as in the original ORL layout
          ``sX/Y.pgm``; images directly in the folder all get class 0.
        - One image file: cut into ``patch × patch`` patches with
          :func:`image_patches` (rows = patches, all of class 0).
        - An :class:`~matfact.datasets.ImageDataset`: returned as is.
    patch : int, default=None
        Patch side for a single image file (required then, and only then).
    data_home : str or os.PathLike, default=None
        Directory searched first for a named dataset.

    Returns
    -------
    ImageDataset
        ``images`` of shape (n_images, height, width), dtype uint8, and
        ``labels`` of shape (n_images,).

    Raises
    ------
    FileNotFoundError
        If ``source`` is neither an existing path nor a dataset name.
    ParameterError
        If ``source`` names a dataset without images, or ``patch`` is missing
        for a single image or given for anything else.
    DataError
        If a folder holds no images, images of different sizes, or unreadable files.
    DatasetNotFoundError
        If the named dataset's files are not found.
    """
    import numpy as np

    from matfact.data.datasets import DATASETS, ImageDataset, load_dataset

    if isinstance(source, ImageDataset):
        return source
    spec = os.fspath(source)
    path = Path(spec).expanduser()
    if path.is_dir():
        if patch is not None:
            raise ParameterError(f"--patch/patch applies to a single image file; {path} is a "
                                 f"folder (leave patch unset)")
        images, labels, _ = _read_folder(path)
        return ImageDataset(images=images, labels=labels)
    if path.is_file():
        if patch is None:
            raise ParameterError(f"{path} is a single image: pass patch=SIZE (--patch SIZE) to "
                                 f"cut it into SIZE x SIZE patches, the rows of the data matrix")
        patches = image_patches(read_image(path), patch)
        return ImageDataset(images=patches, labels=np.zeros(len(patches), dtype=np.int64))
    name = spec.lower()
    if name in DATASETS and name not in _IMAGE_DATASETS:
        raise ParameterError(f"dataset {spec!r} holds no images; image datasets: "
                             f"{', '.join(_IMAGE_DATASETS)}, or give a folder or an image file")
    if name not in DATASETS:
        raise FileNotFoundError(f"no such file or folder: {spec} (and no image dataset of that "
                                f"name; image datasets: {', '.join(_IMAGE_DATASETS)})")
    if patch is not None:
        raise ParameterError(f"--patch/patch applies to a single image file, not to the "
                             f"dataset {spec!r}")
    return load_dataset(name, data_home=data_home, download=False)


# ------------------------------------------------------------------------------ measures
def _stack(images: Any) -> np.ndarray:
    """Images (ImageDataset or array of shape (n, h, w)) as a validated float64 stack."""
    import numpy as np

    stack = getattr(images, "images", images)
    try:
        stack = np.asarray(stack, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"images must be a numeric array of shape (n_images, height, width): "
                        f"{err}") from None
    if stack.ndim != 3:
        raise DataError(f"images must have shape (n_images, height, width), got {stack.shape}")
    if stack.shape[0] < 2 or stack.shape[1] * stack.shape[2] < 2:
        raise DataError(f"need at least 2 images of at least 2 pixels, got {stack.shape}")
    if not np.isfinite(stack).all():
        raise DataError("images contain NaN or infinite pixels")
    low, high = stack.min(), stack.max()
    if low < 0 or high > 255:
        # NMF needs non-negative data and PSNR is on the 8-bit scale.
        raise DataError(f"pixel values must lie in 0–255 (8-bit gray), got {low:g} to {high:g}")
    return stack


def _check_rank(rank: Any, n_rows: int, n_pixels: int, what: str = "images") -> int:
    # Centring leaves rank <= n - 1, and ARPACK needs k < min(n, d): one bound for both.
    import numpy as np

    limit = min(n_rows, n_pixels) - 1
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) \
            or not 1 <= rank <= limit:
        raise ParameterError(
            f"rank {rank!r} is out of range: with {n_rows:,} {what} of {n_pixels:,} pixels, "
            f"ranks must be integers from 1 to min(n_images, n_pixels) - 1 = {limit:,}"
        )
    return int(rank)


def _check_ranks(ranks: Any, n_rows: int, n_pixels: int, what: str = "images") -> list[int]:
    import numpy as np

    if isinstance(ranks, (int, np.integer)):
        ranks = [ranks]
    ranks = list(ranks)
    if not ranks:
        raise ParameterError("ranks is empty; give at least one rank, e.g. [5, 10, 20]")
    return sorted({_check_rank(rank, n_rows, n_pixels, what) for rank in ranks})


def _check_methods(methods: Any) -> list[str]:
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ParameterError(f"methods must be a non-empty subset of {METHODS}, got {methods}")
    return methods


def compression_ratio(n_images: int, n_pixels: int, rank: int, *,
                      with_mean: bool = False) -> float:
    """Original pixels over stored numbers: ``n d / (n k + k d [+ d])``.

    Parameters
    ----------
    n_images, n_pixels : int
        ``n`` and ``d``, the shape of the data matrix.
    rank : int
        ``k``, the number of components.
    with_mean : bool, default=False
        Whether a mean image of ``d`` numbers is stored too (the centred SVD).

    Returns
    -------
    float

    Examples
    --------
    >>> round(compression_ratio(400, 112 * 92, 10), 2)  # 4,121,600 / 107,040
    38.51
    """
    stored = n_images * rank + rank * n_pixels + (n_pixels if with_mean else 0)
    return n_images * n_pixels / stored


def psnr(original: Any, reconstruction: Any, *, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in decibels: ``10 log10(peak² / MSE)``.

    Parameters
    ----------
    original, reconstruction : array-like of the same shape
        Pixel values on the ``0..peak`` scale.
    peak : float, default=255.0
        The largest possible pixel value.

    Returns
    -------
    float
        ``inf`` for a perfect reconstruction.

    Examples
    --------
    >>> round(psnr([0.0, 0.0], [10.0, 0.0]), 2)  # MSE 50: 10 log10(255² / 50)
    31.14
    """
    import numpy as np

    original, reconstruction = _pair(original, reconstruction)
    mse = float(np.mean((original - reconstruction) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak ** 2 / mse)


def relative_error(original: Any, reconstruction: Any) -> float:
    """Relative Frobenius error ``‖X − X̂‖_F / ‖X‖_F``.

    Parameters
    ----------
    original, reconstruction : array-like of the same shape

    Returns
    -------
    float

    Examples
    --------
    >>> relative_error([3.0, 4.0], [3.0, 0.0])
    0.8
    """
    import numpy as np

    original, reconstruction = _pair(original, reconstruction)
    norm = float(np.linalg.norm(original))
    if norm == 0:
        raise DataError("the original is all zeros: its relative error is undefined")
    return float(np.linalg.norm(original - reconstruction)) / norm


def _pair(original: Any, reconstruction: Any) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    original = np.asarray(original, dtype=np.float64)
    reconstruction = np.asarray(reconstruction, dtype=np.float64)
    if original.shape != reconstruction.shape:
        raise DataError(f"original and reconstruction differ in shape: {original.shape} vs "
                        f"{reconstruction.shape}")
    return original, reconstruction


# ------------------------------------------------------------------------------ factorizations
@dataclass(frozen=True, eq=False)
class Factorization:
    """A fitted rank-``k`` factorization ``X ≈ 1 mᵀ + W H`` of a stack of images.

    The basis images (rows of ``H``) have unit Euclidean norm, so each code
    ``W_ij`` is the size, in pixel units, of basis image ``j`` in image ``i``.
    The SVD's ``V_kᵀ`` is already so; NMF's factors are only defined up to
    ``W D, D⁻¹ H`` for a positive diagonal ``D``, and are rescaled here to
    ``D = diag(‖H_j‖)``. Without that, 1-nearest-neighbour on the raw NMF
    codes is ruled by whichever part the solver happened to give small norm
    (10 ORL subjects, NNDSVDa start, rank 10: 42% accuracy instead of 98%).

    Attributes
    ----------
    method : {"svd", "nmf"}
        Mean-centred truncated SVD (``mean`` set) or NMF (``mean`` None).
    rank : int
        ``k``.
    codes : ndarray of shape (n_images, rank)
        ``W``: each image's coefficients (``U_k Σ_k`` for the SVD).
    components : ndarray of shape (rank, n_pixels)
        ``H``: the basis images as unit-norm rows (eigenfaces ``V_kᵀ``, or NMF parts).
    mean : ndarray of shape (n_pixels,) or None
        The mean image subtracted before the SVD.
    image_shape : tuple of int
        ``(height, width)`` of one image.
    model : TruncatedSVD or NMF
        The fitted estimator (its ``components_`` not rescaled).
    scale : ndarray of shape (rank,)
        ``‖H_j‖`` of the model's ``components_``: ``codes = model codes * scale``.
    """

    method: str
    rank: int
    codes: np.ndarray
    components: np.ndarray
    mean: np.ndarray | None
    image_shape: tuple[int, int]
    model: Any
    scale: np.ndarray

    @property
    def n_stored(self) -> int:
        """Numbers kept: ``n k + k d``, plus ``d`` for the SVD's mean image."""
        n_images, n_pixels = len(self.codes), self.components.shape[1]
        return n_images * self.rank + self.rank * n_pixels + (0 if self.mean is None
                                                              else n_pixels)

    @property
    def compression_ratio(self) -> float:
        """Original pixels over :attr:`n_stored`."""
        n_images, n_pixels = len(self.codes), self.components.shape[1]
        return n_images * n_pixels / self.n_stored

    def reconstruct(self, codes: np.ndarray | None = None) -> np.ndarray:
        """Images ``1 mᵀ + W H`` from codes (the fitted ones by default), not clipped.

        Parameters
        ----------
        codes : ndarray of shape (n_images, rank), default=None
            Codes as in :attr:`codes` (e.g. from :meth:`transform`).

        Returns
        -------
        ndarray of shape (n_images, height, width)
            On the 0–255 scale, but may stray outside it.
        """
        import numpy as np

        codes = self.codes if codes is None else np.asarray(codes, dtype=np.float64)
        if codes.ndim != 2 or codes.shape[1] != self.rank:
            raise DataError(f"codes must have shape (n_images, {self.rank}), got {codes.shape}")
        flat = codes @ self.components
        if self.mean is not None:
            flat += self.mean
        return flat.reshape(len(codes), *self.image_shape)

    def transform(self, images: Any) -> np.ndarray:
        """Codes of new images of the same size, with the basis fixed.

        The model's ``transform`` (projection for the SVD, non-negative least
        squares for NMF) of the images, centred for the SVD, times :attr:`scale`.

        Parameters
        ----------
        images : ImageDataset or array-like of shape (n_images, height, width)

        Returns
        -------
        ndarray of shape (n_images, rank)
        """
        import numpy as np

        stack = _stack(images)
        if stack.shape[1:] != self.image_shape:
            raise DataError(f"images are {stack.shape[1]}x{stack.shape[2]} pixels, the "
                            f"factorization was fitted on {self.image_shape[0]}x"
                            f"{self.image_shape[1]}")
        flat = stack.reshape(len(stack), -1)
        codes = self.model.transform(flat if self.mean is None else flat - self.mean)
        return np.asarray(codes, dtype=np.float64) * self.scale


def factorize(images: Any, rank: int, method: str = "svd", *, random_state: int | None = 0,
              max_iter: int = _NMF_MAX_ITER, tol: float = _NMF_TOL,
              nmf_params: dict[str, Any] | None = None) -> Factorization:
    """Fit a rank-``k`` SVD (on the mean-centred images) or NMF to a stack of images.

    SVD: ``m = mean of the rows of X``, ``X − 1 mᵀ ≈ U_k Σ_k V_kᵀ``
    (:class:`matfact.TruncatedSVD`, ARPACK), codes ``U_k Σ_k``. NMF:
    ``min ‖X − W H‖_F²`` over ``W, H ≥ 0`` (:class:`matfact.NMF`, coordinate
    descent from an NNDSVD start), rescaled so that the rows of ``H`` have
    unit norm (see :class:`Factorization`).

    Parameters
    ----------
    images : ImageDataset or array-like of shape (n_images, height, width)
        Pixels on the 0–255 scale.
    rank : int
        ``k``, from 1 to ``min(n_images, n_pixels) - 1``.
    method : {"svd", "nmf"}, default="svd"
    random_state : int or None, default=0
        Seed of the estimator (ARPACK's start vector; NMF's random parts).
    max_iter : int, default=200
        NMF iterations. On ORL at rank 20, 200 give a relative error 0.3%
        above that after 1,000.
    tol : float, default=0.0
        NMF stopping tolerance; 0 runs exactly ``max_iter`` iterations. The
        scikit-learn rule that ``tol`` feeds (projected gradient relative to
        the first iteration's) does not suit images: on ORL at rank 20 with
        ``tol=1e-4`` it stopped after 2 iterations from NNDSVDa (relative
        error 0.267, converged 0.180) and not within 1,000 from NNDSVD.
    nmf_params : dict, default=None
        Other :class:`matfact.NMF` parameters, e.g. ``{"solver": "mu",
        "beta_loss": "kullback-leibler"}`` for Lee & Seung's own algorithm.

    Returns
    -------
    Factorization

    Raises
    ------
    ParameterError
        If ``rank`` or ``method`` is out of range.
    DataError
        If the images are not a valid stack on the 0–255 scale.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 256, size=(20, 8, 6))
    >>> fit = factorize(images, 3, "svd")
    >>> fit.codes.shape, fit.components.shape, fit.reconstruct().shape
    ((20, 3), (3, 48), (20, 8, 6))
    """
    import numpy as np

    (method,) = _check_methods([method])
    stack = _stack(images)
    flat = stack.reshape(len(stack), -1)
    rank = _check_rank(rank, *flat.shape)
    if method == "svd":
        mean = flat.mean(axis=0)
        model = _make_svd(rank, random_state)
        codes = model.fit_transform(flat - mean)
    else:
        mean = None
        model = _make_nmf(rank, random_state, max_iter, tol, nmf_params)
        codes = model.fit_transform(flat)
    components = np.asarray(model.components_, dtype=np.float64)
    scale = np.linalg.norm(components, axis=1)
    scale[scale == 0] = 1.0  # a part NMF switched off stays zero
    return Factorization(method=method, rank=rank,
                         codes=np.asarray(codes, dtype=np.float64) * scale,
                         components=components / scale[:, None], mean=mean,
                         image_shape=(stack.shape[1], stack.shape[2]), model=model, scale=scale)


def basis_images(fit: Factorization, n: int | None = None) -> np.ndarray:
    """The basis images of a factorization, most important first.

    Eigenfaces come in the SVD's order (decreasing singular value). NMF parts,
    which have no natural order, are sorted by their share of the
    reconstruction, ``Σ_i W_ij`` (the parts have unit norm).

    Parameters
    ----------
    fit : Factorization
    n : int, default=None
        How many to return (all ``rank`` by default).

    Returns
    -------
    ndarray of shape (n, height, width)
        Signed for the SVD, non-negative for NMF; not rescaled.
    """
    import numpy as np

    order = np.arange(fit.rank)
    if fit.method == "nmf":
        weight = fit.codes.sum(axis=0)
        order = np.argsort(-weight, kind="stable")
    if n is not None:
        order = order[:n]
    return fit.components[order].reshape(len(order), *fit.image_shape)


def compression_table(images: Any, ranks: Iterable[int], *, methods: Sequence[str] = METHODS,
                      random_state: int | None = 0, max_iter: int = _NMF_MAX_ITER,
                      tol: float = _NMF_TOL, nmf_params: dict[str, Any] | None = None,
                      return_fits: bool = False, progress: Any = None) -> Any:
    """Compression ratio, PSNR and relative error of each method at each rank.

    Each (method, rank) is an independent :func:`factorize` of all the images,
    measured on its unclipped reconstruction ``X̂``: ``stored = n k + k d``
    (``+ d`` for the SVD mean), ``compression_ratio = n d / stored``,
    ``psnr = 10 log10(255² / mean((X − X̂)²))`` and
    ``relative_error = ‖X − X̂‖_F / ‖X‖_F``.

    Parameters
    ----------
    images : ImageDataset or array-like of shape (n_images, height, width)
    ranks : iterable of int
        Each from 1 to ``min(n_images, n_pixels) - 1``; sorted and de-duplicated.
    methods : sequence of {"svd", "nmf"}, default=("svd", "nmf")
    random_state, max_iter, tol, nmf_params
        As for :func:`factorize`.
    return_fits : bool, default=False
        Also return the fitted :class:`Factorization` of each row.
    progress : callable, default=None
        Called with a short message before each fit (e.g. ``print``).

    Returns
    -------
    table : pandas.DataFrame
        One row per (method, rank), columns ``method``, ``rank``, ``stored``,
        ``compression_ratio``, ``psnr``, ``relative_error``.
    fits : dict of (str, int) to Factorization
        Only with ``return_fits=True``, keyed by ``(method, rank)``.
    """
    import pandas as pd

    stack = _stack(images)
    flat_shape = (len(stack), stack.shape[1] * stack.shape[2])
    ranks = _check_ranks(ranks, *flat_shape)
    methods = _check_methods(methods)
    rows, fits = [], {}
    for method in methods:
        for rank in ranks:
            if progress is not None:
                progress(f"fitting {method.upper()} at rank {rank}")
            fit = factorize(stack, rank, method, random_state=random_state, max_iter=max_iter,
                            tol=tol, nmf_params=nmf_params)
            rebuilt = fit.reconstruct()
            rows.append({"method": method, "rank": rank, "stored": fit.n_stored,
                         "compression_ratio": fit.compression_ratio,
                         "psnr": psnr(stack, rebuilt), "relative_error":
                         relative_error(stack, rebuilt)})
            if return_fits:
                fits[method, rank] = fit
    table = pd.DataFrame(rows, columns=["method", "rank", "stored", "compression_ratio",
                                        "psnr", "relative_error"])
    return (table, fits) if return_fits else table


# ------------------------------------------------------------------------------ recognition
def split_per_subject(labels: Any, n_train: int = 5, *, shuffle: bool = False,
                      random_state: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``n_train`` training images per subject and the rest held out.

    Parameters
    ----------
    labels : array-like of shape (n_images,)
        The subject of each image.
    n_train : int, default=5
        Training images per subject; every subject needs at least one more.
    shuffle : bool, default=False
        False: each subject's first ``n_train`` images (in the given order)
        train and the others are held out. True: a random ``n_train`` of each
        subject's images, drawn with ``random_state``.
    random_state : int or None, default=None
        Seed used when ``shuffle`` is True.

    Returns
    -------
    train, test : ndarray of int
        Indices into ``labels``, each in increasing order.

    Raises
    ------
    ParameterError
        If ``n_train`` is not a positive integer.
    DataError
        If a subject has ``n_train`` images or fewer.

    Examples
    --------
    >>> split_per_subject([0, 0, 0, 1, 1, 1], n_train=2)
    (array([0, 1, 3, 4]), array([2, 5]))
    """
    import numpy as np

    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"labels must be 1-D, got shape {labels.shape}")
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or n_train < 1:
        raise ParameterError(f"n_train must be a positive integer, got {n_train!r}")
    rng = np.random.default_rng(random_state)
    train, test = [], []
    for subject in np.unique(labels):
        members = np.flatnonzero(labels == subject)
        if len(members) <= n_train:
            raise DataError(f"subject {subject} has {len(members)} image(s); n_train={n_train} "
                            f"needs at least {n_train + 1} per subject (one to hold out)")
        if shuffle:
            members = rng.permutation(members)
        train.extend(members[:n_train])
        test.extend(members[n_train:])
    return np.sort(np.asarray(train, dtype=np.intp)), np.sort(np.asarray(test, dtype=np.intp))


def recognition_curve(images: Any, labels: Any, ranks: Iterable[int], *, n_train: int = 5,
                      methods: Sequence[str] = METHODS, shuffle: bool = False,
                      random_state: int | None = 0, max_iter: int = _NMF_MAX_ITER,
                      tol: float = _NMF_TOL, nmf_params: dict[str, Any] | None = None,
                      progress: Any = None) -> pd.DataFrame:
    """Accuracy of 1-nearest-neighbour recognition on SVD and NMF codes, by rank.

    The images are split with :func:`split_per_subject`; each method is fitted
    on the training images only, the held-out images are mapped to codes
    with :meth:`Factorization.transform` (``transform`` of the fitted model,
    scaled to unit-norm basis images), and
    :class:`sklearn.neighbors.KNeighborsClassifier` with one neighbour
    (Euclidean distance between codes) predicts each held-out subject. A
    ``"pixels"`` row gives the same classifier on the raw pixels (its ``rank``
    is the number of pixels), the reference that codes try to match.

    Parameters
    ----------
    images : ImageDataset or array-like of shape (n_images, height, width)
    labels : array-like of shape (n_images,)
        Subject of each image, e.g. ``dataset.labels`` (the labels of an
        ImageDataset passed as ``images`` are not looked at).
    ranks : iterable of int
        Each from 1 to ``min(n_training_images, n_pixels) - 1``.
    n_train : int, default=5
        Training images per subject.
    methods : sequence of {"svd", "nmf"}, default=("svd", "nmf")
    shuffle : bool, default=False
        Draw each subject's training images at random (with ``random_state``)
        instead of taking the first ``n_train``.
    random_state, max_iter, tol, nmf_params
        As for :func:`factorize`; ``random_state`` also seeds the shuffle.
    progress : callable, default=None
        Called with a short message before each fit.

    Returns
    -------
    pandas.DataFrame
        Columns ``method`` (``"svd"``, ``"nmf"``, ``"pixels"``), ``rank``,
        ``accuracy`` (fraction of held-out images recognized), ``n_train``
        and ``n_test`` (images).
    """
    import numpy as np
    import pandas as pd
    from sklearn.neighbors import KNeighborsClassifier

    stack = _stack(images)
    labels = np.asarray(labels)
    if labels.shape != (len(stack),):
        raise DataError(f"labels must have shape ({len(stack)},), one per image, got "
                        f"{labels.shape}")
    train, test = split_per_subject(labels, n_train, shuffle=shuffle, random_state=random_state)
    n_pixels = stack.shape[1] * stack.shape[2]
    ranks = _check_ranks(ranks, len(train), n_pixels, what="training images")
    methods = _check_methods(methods)

    def accuracy(train_codes: np.ndarray, test_codes: np.ndarray) -> float:
        classifier = KNeighborsClassifier(n_neighbors=1).fit(train_codes, labels[train])
        return float(classifier.score(test_codes, labels[test]))

    rows = []
    for method in methods:
        for rank in ranks:
            if progress is not None:
                progress(f"recognition: fitting {method.upper()} at rank {rank}")
            fit = factorize(stack[train], rank, method, random_state=random_state,
                            max_iter=max_iter, tol=tol, nmf_params=nmf_params)
            rows.append({"method": method, "rank": rank,
                         "accuracy": accuracy(fit.codes, fit.transform(stack[test]))})
    flat = stack.reshape(len(stack), -1)
    rows.append({"method": "pixels", "rank": n_pixels,
                 "accuracy": accuracy(flat[train], flat[test])})
    table = pd.DataFrame(rows, columns=["method", "rank", "accuracy"])
    table["n_train"] = len(train)
    table["n_test"] = len(test)
    return table


# ------------------------------------------------------------------------------ figures
def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas, never pyplot: no global state, no GUI backend (as plots.py).
    fig = Figure(figsize=(width, height), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike, *, faces: bool = False) -> Path:
    """Write ``fig`` as a palette PNG, atomically (temporary file, then ``os.replace``).

    ``faces``: a figure made of grayscale images, stored with 56 gray levels plus the
    figure's ink colours; otherwise an adaptive 256-colour palette (line plots).
    """
    import numpy as np
    from PIL import Image

    path = Path(path)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    if faces:
        # Photographs compress badly as PNG: 56 gray levels show no banding on these
        # faces yet bring a page of them under the docs' 200 KB per figure. The inks
        # are fixed palette entries, else an adaptive palette drops the small coloured
        # labels (they cover too few pixels to win a palette slot). Each colour goes to
        # its nearest entry (Pillow's own palette mapping turned white into 250).
        inks = [_INK, _MUTED, *_COLORS.values()]
        palette = np.array([[round(255 * i / 55)] * 3 for i in range(56)]
                           + [[int(ink[i:i + 2], 16) for i in (1, 3, 5)] for ink in inks])
        colours, inverse = np.unique(pixels.reshape(-1, 3), axis=0, return_inverse=True)
        distance = ((colours[:, None, :].astype(np.int64) - palette[None]) ** 2).sum(axis=2)
        index = distance.argmin(axis=1).astype(np.uint8)[inverse.ravel()]
        image = Image.fromarray(index.reshape(pixels.shape[:2]), mode="P")
        image.putpalette(palette.astype(np.uint8).ravel().tolist())
    else:
        image = Image.fromarray(pixels).quantize(colors=256, method=Image.Quantize.MEDIANCUT)

    def write(tmp: Path) -> None:
        with open(tmp, "xb") as handle:
            image.save(handle, format="PNG", optimize=True)

    return atomic_write(path, write)


def _show(ax: Any, image: np.ndarray, *, signed: bool = False, fixed: bool = True) -> None:
    """Draw one grayscale image without axes; ``signed``: zero is mid-gray."""
    import numpy as np

    if signed:
        scale = float(np.abs(image).max()) or 1.0
        vmin, vmax = -scale, scale
    elif fixed:
        vmin, vmax = 0.0, 255.0
    else:
        vmin, vmax = 0.0, float(image.max()) or 1.0
    ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _panel_size(image_shape: tuple[int, int], low: float, high: float) -> tuple[float, float]:
    """Inches (width, height) of one image tile: one screen pixel per image pixel if the
    longer side then lies in ``[low, high]`` inches, else scaled to the nearer bound."""
    height, width = image_shape
    # 1:1 pixels keep the faces sharp and the PNG small (no resampling to compress).
    target = min(max(max(height, width) / _DPI, low), high)
    scale = target / max(height, width)
    return width * scale, height * scale


def _title_lines(title: str | None, width: float) -> tuple[str | None, float]:
    """``title`` wrapped to a figure ``width`` inches wide, and the inches it needs."""
    if not title:
        return None, 0.0
    # 12-point bold runs up to about 10.5 pixels a character at 100 dpi.
    text = textwrap.fill(title, max(20, int(width * _DPI / 10.5)), break_on_hyphens=False)
    return text, 0.12 + 0.22 * (text.count("\n") + 1)


def _suptitle(fig: Any, text: str | None, x: float = 0.01) -> None:
    if text:
        fig.suptitle(text, x=x, y=1 - 0.06 / fig.get_figheight(), ha="left", va="top",
                     fontsize=12, fontweight="bold", color=_INK, linespacing=1.1)


def plot_basis(fits: Sequence[Factorization], path: str | os.PathLike, *,
               n: int = _N_BASIS_SHOWN, title: str | None = None) -> Path:
    """Draw the first basis images of each factorization side by side.

    Eigenfaces are signed (mid-gray is zero, each scaled to its own largest
    magnitude); NMF parts are non-negative (black is zero, each scaled to
    its own maximum). Each block is a square-ish grid of up to ``n`` images in
    the order of :func:`basis_images`.

    Parameters
    ----------
    fits : sequence of Factorization
        One block each, e.g. the SVD and the NMF fit.
    path : str or os.PathLike
        The PNG to write (atomically).
    n : int, default=16
        Basis images per block at most.
    title : str, default=None

    Returns
    -------
    pathlib.Path
    """
    if not fits:
        raise DataError("no factorization to draw")
    blocks = [basis_images(fit, n) for fit in fits]
    cols = math.ceil(math.sqrt(max(len(block) for block in blocks)))
    rows = math.ceil(max(len(block) for block in blocks) / cols)
    tile_w, tile_h = _panel_size(fits[0].image_shape, 0.6, 1.2)
    width = len(fits) * (cols * (tile_w + 0.04) + 0.4) + 0.2
    title, title_height = _title_lines(title, width)
    head = 0.5 + title_height  # inches above the tiles: block titles, suptitle
    fig = _new_figure(width, rows * (tile_h + 0.04) + head + 0.1)
    outer = fig.add_gridspec(1, len(fits), left=0.02, right=0.98,
                             bottom=0.1 / fig.get_figheight(),
                             top=1 - head / fig.get_figheight(), wspace=0.08)
    for slot, (fit, block) in enumerate(zip(fits, blocks, strict=True)):
        inner = outer[slot].subgridspec(rows, cols, wspace=0.04, hspace=0.04)
        for index in range(rows * cols):
            ax = fig.add_subplot(inner[index // cols, index % cols])
            if index < len(block):
                _show(ax, block[index], signed=fit.method == "svd", fixed=False)
            else:
                ax.set_visible(False)
            if index == 0:
                label = (f"eigenfaces 1–{len(block)} of the centred SVD"
                         if fit.method == "svd" else
                         f"the {len(block)} largest parts of a rank-{fit.rank} NMF")
                ax.set_title(f"{_METHOD_NAMES[fit.method]}\n{label}", loc="left", fontsize=10,
                             color=_INK, pad=6)
    _suptitle(fig, title, x=0.02)
    return _save(fig, path, faces=True)


def plot_reconstructions(images: Any, fits: Sequence[Factorization], path: str | os.PathLike,
                         *, indices: Sequence[int] = (0,), grid: tuple[int, int] | None = None,
                         title: str | None = None) -> Path:
    """Draw originals and their reconstructions by each method at each rank.

    One row per (image, method): the original, then the reconstruction
    clipped to 0–255 at each rank of that method, labelled with rank, PSNR
    and compression ratio.

    Parameters
    ----------
    images : ImageDataset or array-like of shape (n_images, height, width)
        The images the factorizations were fitted on.
    fits : sequence of Factorization
        Fitted on ``images``; grouped by method, columns in increasing rank.
    path : str or os.PathLike
        The PNG to write (atomically).
    indices : sequence of int, default=(0,)
        Which images to show (ignored with ``grid``).
    grid : tuple of int, default=None
        ``(rows, cols)`` when the images are the patches of one picture (see
        :func:`image_patches`): the whole picture is shown, reassembled.
    title : str, default=None

    Returns
    -------
    pathlib.Path
    """
    import numpy as np

    stack = _stack(images)
    if not fits:
        raise DataError("no factorization to draw")
    by_method: dict[str, list[Factorization]] = {}
    for fit in sorted(fits, key=lambda f: (METHODS.index(f.method), f.rank)):
        if fit.codes.shape[0] != len(stack) or fit.image_shape != stack.shape[1:]:
            raise DataError(f"the {fit.method.upper()} fit at rank {fit.rank} was not fitted on "
                            f"these {len(stack)} images of {stack.shape[1]}x{stack.shape[2]}")
        by_method.setdefault(fit.method, []).append(fit)
    if grid is not None:
        pictures = [(assemble_patches(stack, grid), None)]
        shape = pictures[0][0].shape
    else:
        for index in indices:
            if not -len(stack) <= index < len(stack):
                raise ParameterError(f"image index {index} is out of range for "
                                     f"{len(stack)} images")
        pictures = [(stack[index], index) for index in indices]
        shape = stack.shape[1:]
    n_cols = 1 + max(len(group) for group in by_method.values())
    n_rows = len(pictures) * len(by_method)
    tile_w, tile_h = _panel_size(shape, 0.8, 2.4)
    width = n_cols * (tile_w + 0.15) + 0.9
    title, title_height = _title_lines(title, width)
    fig = _new_figure(width, n_rows * (tile_h + 0.45) + title_height + 0.1)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    fig.subplots_adjust(left=0.9 / width, right=0.99, bottom=0.01, wspace=0.08,
                        top=1 - (title_height + 0.1 + 0.3) / fig.get_figheight(),
                        hspace=0.45 / tile_h)
    row = 0
    for picture, index in pictures:
        rebuilt_cache: dict[int, np.ndarray] = {}
        for method, group in by_method.items():
            _show(axes[row, 0], picture)
            axes[row, 0].set_title("original" if index is None else f"original #{index}",
                                   fontsize=8.5, color=_INK)
            axes[row, 0].set_ylabel(method.upper(), fontsize=11, fontweight="bold",
                                    color=_COLORS[method], rotation=0, ha="right", va="center",
                                    labelpad=8)
            for col, fit in enumerate(group, start=1):
                if id(fit) not in rebuilt_cache:
                    rebuilt_cache[id(fit)] = fit.reconstruct()
                rebuilt = rebuilt_cache[id(fit)]
                shown = assemble_patches(rebuilt, grid) if grid is not None else rebuilt[index]
                quality = psnr(picture, shown)
                _show(axes[row, col], np.clip(shown, 0, 255))
                axes[row, col].set_title(f"k={fit.rank}  {quality:.1f} dB\n"
                                         f"{fit.compression_ratio:.1f}:1", fontsize=8,
                                         color=_INK)
            for col in range(1 + len(group), n_cols):
                axes[row, col].set_visible(False)
            row += 1
    _suptitle(fig, title)
    return _save(fig, path, faces=True)


def _style(ax: Any) -> None:
    ax.grid(color=_GRID, linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8.5, colors=_MUTED)


def plot_compression(table: Any, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Draw relative error and PSNR against compression ratio, one line per method.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`compression_table`.
    path : str or os.PathLike
        The PNG to write (atomically).
    title : str, default=None

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    _require_columns(table, ("method", "rank", "compression_ratio", "psnr", "relative_error"))
    title, title_height = _title_lines(title, 9.0)
    fig = _new_figure(9.0, 3.9 + title_height)
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.55 / fig.get_figheight(), wspace=0.25,
                        top=1 - (0.4 + title_height) / fig.get_figheight())
    panels = (("relative_error", "relative error ‖X − X̂‖ / ‖X‖", "lower is better"),
              ("psnr", "PSNR (dB, 0–255 scale)", "higher is better"))
    for ax, (column, label, hint) in zip(axes, panels, strict=True):
        for method, group in table.groupby("method", sort=False):
            group = group.sort_values("compression_ratio")
            values = group[column].to_numpy(dtype=float)
            ax.plot(group["compression_ratio"], values, marker="o", markersize=4.5,
                    color=_COLORS.get(method, _INK), label=_METHOD_NAMES.get(method, method),
                    zorder=3)
            # Labels on the outer side of each curve: the SVD's below in the error panel
            # (where it is lower), above in the PSNR panel, NMF's the other way round.
            below = (method == "svd") == (column == "relative_error")
            for ratio, value, rank in zip(group["compression_ratio"], values, group["rank"],
                                          strict=True):
                ax.annotate(f"k={rank}", (ratio, value), xytext=(3, -11 if below else 4),
                            textcoords="offset points", fontsize=7.5,
                            color=_COLORS.get(method, _INK))
        ax.set_xscale("log")
        ax.margins(x=0.08, y=0.1)  # room for the rank labels at both ends
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}:1"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("compression ratio (pixels / stored numbers, log scale)", fontsize=9,
                      color=_INK)
        ax.set_title(label, loc="left", fontsize=10.5, fontweight="bold", color=_INK, pad=14)
        ax.annotate(hint, xy=(0, 1), xycoords="axes fraction", xytext=(0, 3),
                    textcoords="offset points", fontsize=8, color=_MUTED, va="bottom")
        _style(ax)
    axes[0].legend(fontsize=8.5, frameon=False)
    _suptitle(fig, title)
    return _save(fig, path)


def plot_recognition(table: Any, path: str | os.PathLike, *, chance: float | None = None,
                     title: str | None = None) -> Path:
    """Draw 1-NN recognition accuracy against rank, one line per method.

    The ``"pixels"`` row of the table (1-NN on the raw images) is drawn as a
    dashed reference line, ``chance`` as a dotted one.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`recognition_curve`.
    path : str or os.PathLike
        The PNG to write (atomically).
    chance : float, default=None
        Accuracy of guessing, ``1 / n_subjects``.
    title : str, default=None

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.ticker import FixedLocator, PercentFormatter

    _require_columns(table, ("method", "rank", "accuracy"))
    title, title_height = _title_lines(title, 7.0)
    fig = _new_figure(7.0, 4.0 + title_height)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.52 / fig.get_figheight(),
                        top=1 - (0.48 + title_height) / fig.get_figheight())
    curves = table[table["method"] != "pixels"]
    for method, group in curves.groupby("method", sort=False):
        group = group.sort_values("rank")
        ax.plot(group["rank"], group["accuracy"], marker="o", markersize=4.5,
                color=_COLORS.get(method, _INK), label=_METHOD_NAMES.get(method, method),
                zorder=3)
    pixels = table.loc[table["method"] == "pixels", "accuracy"]
    if len(pixels):
        ax.axhline(float(pixels.iloc[0]), color=_COLORS["pixels"], linestyle="--", linewidth=1,
                   label=f"raw pixels ({float(pixels.iloc[0]):.1%})")
    if chance is not None:
        ax.axhline(chance, color=_MUTED, linestyle=":", linewidth=1,
                   label=f"chance ({chance:.1%})")
    ranks = sorted(curves["rank"].unique())
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ranks))
    ax.xaxis.set_major_formatter("{x:g}")
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("rank k (components, log scale)", fontsize=9, color=_INK)
    ax.set_title("held-out accuracy, 1-nearest neighbour on the codes", loc="left",
                 fontsize=10.5, fontweight="bold", color=_INK, pad=14)
    ax.annotate("higher is better", xy=(0, 1), xycoords="axes fraction", xytext=(0, 3),
                textcoords="offset points", fontsize=8, color=_MUTED, va="bottom")
    ax.legend(fontsize=8.5, frameon=False, loc="lower right")
    _style(ax)
    _suptitle(fig, title)
    return _save(fig, path)


def _require_columns(table: Any, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in getattr(table, "columns", ())]
    if missing or len(table) == 0:
        raise DataError(f"the table needs rows and the columns {list(columns)}; missing "
                        f"{missing or 'rows'}")


# ------------------------------------------------------------------------------ command line
def _ranks_argument(text: str) -> list[int]:
    """``--ranks 5,10,20`` → [5, 10, 20] (argparse turns the error into a usage error)."""
    try:
        ranks = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 5,10,20,40,80, got {text!r}") from None
    if not ranks or min(ranks) < 1:
        raise argparse.ArgumentTypeError(f"ranks must be positive integers, got {text!r}")
    return ranks


def _size_argument(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return size


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``matfact images`` to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser; its description and epilog are set if empty.
    """
    if parser.description is None:
        parser.description = (
            "Factorize images with a mean-centred SVD (eigenfaces) and NMF (parts), print "
            "rank, compression ratio, PSNR and relative error of each, measure 1-nearest-"
            "neighbour recognition against rank (when the images have classes), and write "
            "the figures basis.png, reconstructions.png, compression.png and recognition.png "
            "with compression.csv and recognition.csv."
        )
    if parser.epilog is None:
        parser.epilog = (
            "examples:\n"
            "  matfact images --data orl-faces --out images/\n"
            "  matfact images --data photos/ --ranks 5,10,20 --out photos-out/\n"
            "  matfact images --data picture.png --patch 16 --out picture-out/"
        )
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--data", default="orl-faces", metavar="NAME_OR_PATH",
        help="orl-faces (default), a folder of same-size images (one subfolder per person "
             "for recognition), or one image file to cut into patches")
    parser.add_argument("--data-home", metavar="DIR",
                        help="directory searched first for orl-faces (then $MATFACT_DATA, then "
                             "the cache)")
    parser.add_argument("--out", default="matfact-images", metavar="DIR",
                        help="directory for the figures and tables (default: ./matfact-images)")
    parser.add_argument("--ranks", type=_ranks_argument, metavar="LIST",
                        help="comma-separated ranks (default: those of "
                             f"{','.join(map(str, DEFAULT_RANKS))} the data allows)")
    parser.add_argument("--patch", type=_size_argument, metavar="SIZE",
                        help=f"patch side for a single image (default: {_DEFAULT_PATCH})")
    parser.add_argument("--n-train", type=int, default=5, metavar="N",
                        help="training images per person for recognition (default: 5; the "
                             "others are held out)")
    parser.add_argument("--split", choices=("first", "random"), default="first",
                        help="which images of each person train: the first N (default) or a "
                             "random N drawn with --seed")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the models and of --split random (default: 0)")
    parser.add_argument("--max-iter", type=int, default=_NMF_MAX_ITER, metavar="N",
                        help=f"NMF iterations (default: {_NMF_MAX_ITER})")


def _format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain right-aligned columns (the first left-aligned)."""
    widths = [max(len(row[col]) for row in [headers, *rows]) for col in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(widths[col]) if col == 0 else cell.rjust(widths[col])
                         for col, cell in enumerate(cells)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def format_compression_table(table: Any) -> str:
    """The compression table as text: one line per rank, columns per method."""
    methods = [m for m in METHODS if m in set(table["method"])]
    headers = ["rank"]
    for method in methods:
        name = method.upper()
        headers += [f"{name} ratio", f"{name} PSNR (dB)", f"{name} rel. error"]
    rows = []
    for rank in sorted(table["rank"].unique()):
        cells = [str(rank)]
        for method in methods:
            found = table[(table["method"] == method) & (table["rank"] == rank)]
            if len(found):
                entry = found.iloc[0]
                cells += [f"{entry['compression_ratio']:.1f}", f"{entry['psnr']:.2f}",
                          f"{entry['relative_error']:.4f}"]
            else:
                cells += ["-", "-", "-"]
        rows.append(cells)
    return _format_table(headers, rows)


def format_recognition_table(table: Any) -> str:
    """The recognition accuracies as text: one line per rank, a column per method."""
    methods = [m for m in METHODS if m in set(table["method"])]
    curves = table[table["method"] != "pixels"]
    rows = []
    for rank in sorted(curves["rank"].unique()):
        cells = [str(rank)]
        for method in methods:
            found = curves[(curves["method"] == method) & (curves["rank"] == rank)]
            cells.append(f"{found['accuracy'].iloc[0]:.1%}" if len(found) else "-")
        rows.append(cells)
    return _format_table(["rank", *(f"{m.upper()} accuracy" for m in methods)], rows)


def _describe(source: str, dataset: Any, patch: int | None, grid: tuple[int, int] | None) -> str:
    import numpy as np

    n, height, width = dataset.images.shape
    if grid is not None:
        return (f"{source}: {n} patches of {patch}x{patch} pixels ({grid[0]} x {grid[1]}) cut "
                f"from one image")
    classes = len(np.unique(dataset.labels))
    people = f", {classes} classes" if classes > 1 else ""
    return f"{source}: {n} images of {height}x{width} pixels{people}"


def run(args: argparse.Namespace) -> int:
    """Run ``matfact images``: tables to stdout, figures and CSVs to ``--out``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser set up with :func:`configure_parser` (``quiet``, if
        present, silences the progress lines on stderr).

    Returns
    -------
    int
        0 on success. Bad input raises :class:`~matfact.ParameterError` or
        :class:`~matfact.DataError`, which the CLI reports in one line.
    """
    import numpy as np

    quiet = bool(getattr(args, "quiet", False))

    def info(text: str) -> None:
        if not quiet:
            print(f"matfact images: {text}", file=sys.stderr)

    source = os.fspath(args.data)
    is_file = Path(source).expanduser().is_file()
    patch = args.patch if args.patch is not None or not is_file else _DEFAULT_PATCH
    if args.n_train < 1:
        raise ParameterError(f"--n-train must be at least 1, got {args.n_train}")
    if args.max_iter < 1:
        raise ParameterError(f"--max-iter must be at least 1, got {args.max_iter}")
    dataset = load_images(source, patch=patch, data_home=args.data_home)
    grid = None
    if is_file:
        height, width = read_image(Path(source).expanduser()).shape
        grid = (height // patch, width // patch)
    stack = _stack(dataset)
    n_images, n_pixels = len(stack), stack.shape[1] * stack.shape[2]
    limit = min(n_images, n_pixels) - 1
    if args.ranks is None:
        ranks = [rank for rank in DEFAULT_RANKS if rank <= limit] or [limit]
    else:
        ranks = _check_ranks(args.ranks, n_images, n_pixels)
    out_dir = Path(args.out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    label = _describe(source, dataset, patch, grid)
    info(f"{label}; ranks {', '.join(map(str, ranks))}")

    table, fits = compression_table(stack, ranks, random_state=args.seed,
                                    max_iter=args.max_iter, return_fits=True, progress=info)
    print(f"Compression of {label}.")
    print(f"Data matrix {n_images} x {n_pixels}; ratio = {n_images} * {n_pixels} / stored "
          f"numbers (n*k + k*d, + d for the SVD mean); PSNR on the 0-255 scale; seed "
          f"{args.seed}.")
    print(f"SVD: mean-centred, ARPACK. NMF: Frobenius loss, coordinate descent from NNDSVD, "
          f"{args.max_iter} iterations.")
    print()
    print(format_compression_table(table))
    written = []
    csv_path = out_dir / "compression.csv"
    table.to_csv(csv_path, index=False, float_format="%.6g")
    written.append(csv_path)

    top = max(ranks)
    nmf_rank = max([rank for rank in ranks if rank <= _LEE_SEUNG_RANK] or [min(ranks)])
    written.append(plot_basis([fits["svd", top], fits["nmf", nmf_rank]], out_dir / "basis.png",
                              title=f"Basis images: {label}"))
    shown = list(fits.values())
    if grid is None:
        classes = np.unique(dataset.labels)
        # Two people when there are classes (their first images), else the first images.
        indices = ([int(np.flatnonzero(dataset.labels == c)[0]) for c in classes[:2]]
                   if len(classes) > 1 else list(range(min(2, n_images))))
    else:
        indices = []
    written.append(plot_reconstructions(stack, shown, out_dir / "reconstructions.png",
                                        indices=indices, grid=grid,
                                        title=f"Reconstructions: {label}"))
    written.append(plot_compression(table, out_dir / "compression.png",
                                    title=f"Compression: {label}"))

    reason = _recognition_obstacle(dataset.labels, args.n_train, is_file)
    print()
    if reason:
        print(f"Recognition: skipped ({reason}).")
    else:
        classes = len(np.unique(dataset.labels))
        n_train_total = classes * args.n_train
        usable = [rank for rank in ranks if rank <= min(n_train_total, n_pixels) - 1]
        dropped = sorted(set(ranks) - set(usable))
        if dropped:
            info(f"recognition skips rank(s) {', '.join(map(str, dropped))}: with "
                 f"{n_train_total} training images ranks go up to {n_train_total - 1}")
        if usable:
            shuffle = args.split == "random"
            recognition = recognition_curve(stack, dataset.labels, usable,
                                            n_train=args.n_train, shuffle=shuffle,
                                            random_state=args.seed, max_iter=args.max_iter,
                                            progress=info)
            chance = 1.0 / classes
            n_test = int(recognition["n_test"].iloc[0])
            how = "a random" if shuffle else "the first"
            print(f"Recognition: 1-nearest neighbour on the codes; {how} {args.n_train} images "
                  f"of each of {classes} classes train ({n_train_total} images), {n_test} are "
                  f"held out; chance {chance:.1%}.")
            print()
            print(format_recognition_table(recognition))
            pixels = float(recognition.loc[recognition["method"] == "pixels",
                                           "accuracy"].iloc[0])
            print(f"raw pixels (1-NN on all {n_pixels} pixels): {pixels:.1%}")
            csv_path = out_dir / "recognition.csv"
            recognition.to_csv(csv_path, index=False, float_format="%.6g")
            written.append(csv_path)
            written.append(plot_recognition(recognition, out_dir / "recognition.png",
                                            chance=chance, title=f"Recognition: {label}"))
        else:
            print(f"Recognition: skipped (no requested rank is below the {n_train_total} "
                  f"training images).")
    print()
    print("Wrote " + ", ".join(str(path) for path in written))
    return 0


def _recognition_obstacle(labels: np.ndarray, n_train: int, is_file: bool) -> str | None:
    """Why recognition cannot run on these labels, or None if it can."""
    import numpy as np

    if is_file:
        return "patches of one image have no classes"
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        return "the images have no classes: put each person's images in a subfolder"
    if counts.min() <= n_train:
        return (f"class {int(classes[counts.argmin()])} has {counts.min()} image(s); "
                f"--n-train {n_train} needs at least {n_train + 1} per class")
    return None
