"""Face recognition on the codes: 1-nearest neighbour on SVD and NMF codes, by rank."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from matfact.apps.images.factorization import (
    _NMF_TOL,
    METHODS,
    NMF_MAX_ITER,
    _check_methods,
    _check_ranks,
    _stack,
    factorize,
)
from matfact.exceptions import DataError, ParameterError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np
    import pandas as pd

__all__ = ["recognition_curve", "split_per_subject"]


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
                      random_state: int | None = 0, max_iter: int = NMF_MAX_ITER,
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
