"""Reading images: one file as 8-bit gray, a folder of them, or one image cut into patches."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matfact.exceptions import DataError, ParameterError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np

    from matfact.data.datasets import ImageDataset

__all__ = ["IMAGE_SUFFIXES", "assemble_patches", "image_patches", "load_images", "read_image"]

#: File suffixes read as images from a folder (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pnm", ".pbm", ".bmp", ".gif",
                  ".tif", ".tiff", ".webp")

_IMAGE_DATASETS = ("orl-faces",)


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
