"""SVD eigenfaces and NMF parts of a stack of images, and how well they compress it.

Every image of ``n`` same-size grayscale images becomes one row of ``X`` of
shape ``(n, d)``; :func:`factorize` fits a rank-``k`` SVD of the mean-centred
rows or an NMF, and :func:`compression_table` measures each (method, rank) by
its compression ratio (:func:`compression_ratio`), PSNR (:func:`psnr`) and
relative error (:func:`relative_error`). See :mod:`matfact.apps.images`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matfact.exceptions import DataError, ParameterError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np

__all__ = [
    "DEFAULT_RANKS",
    "METHODS",
    "NMF_MAX_ITER",
    "Factorization",
    "basis_images",
    "compression_ratio",
    "compression_table",
    "factorize",
    "psnr",
    "relative_error",
]

#: Ranks of ``matfact images`` when ``--ranks`` is not given (those below the data's limit).
DEFAULT_RANKS = (5, 10, 20, 40, 80)
#: The factorizations compared: mean-centred truncated SVD and NMF.
METHODS = ("svd", "nmf")
#: NMF iterations of :func:`factorize` (and the tables built on it) unless told otherwise.
NMF_MAX_ITER = 200

_NMF_TOL = 0.0  # run max_iter iterations: see factorize() for why


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
              max_iter: int = NMF_MAX_ITER, tol: float = _NMF_TOL,
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
                      random_state: int | None = 0, max_iter: int = NMF_MAX_ITER,
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
