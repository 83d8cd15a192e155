"""Non-personalized and bias-only models: :class:`Baseline` and :class:`Popularity`."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from matfact._params import BOOLEAN, Interval
from matfact._progress import progress_bar
from matfact.data.interactions import Interactions
from matfact.models.base import FactorModel, Recommender, UserVector

__all__ = ["Baseline", "Popularity"]


class Baseline(FactorModel):
    r"""Global mean plus regularized user and item biases: :math:`\hat r_{ui} = \mu + b_u + b_i`.

    Fitted by alternating least squares, as Surprise's ``BaselineOnly``
    (Koren 2010, section 2.1): minimizing

    .. math::
        \sum_{(u,i)} w_{ui}(r_{ui} - \mu - b_u - b_i)^2
        + \lambda_u \sum_u b_u^2 + \lambda_i \sum_i b_i^2

    each half-step solves one set of biases exactly with the other fixed::

        b_i = Σ_u w (r - μ - b_u) / (λ_i + Σ_u w)      (items first, as Surprise)
        b_u = Σ_i w (r - μ - b_i) / (λ_u + Σ_i w)

    Parameters
    ----------
    reg_user : float, default=15.0
        :math:`\lambda_u`, shrinks user biases of users with few ratings.
    reg_item : float, default=10.0
        :math:`\lambda_i`.
    max_iter : int, default=10
        Number of alternations.
    tol : float, default=1e-6
        Stop when no bias moves by more than ``tol``.

    Attributes
    ----------
    global_mean_ : float
    user_bias_ : ndarray of shape (n_users,), float32
    item_bias_ : ndarray of shape (n_items,), float32
    n_iter_ : int
    loss_history_ : list of float
        Training RMSE after each iteration.

    Notes
    -----
    Unknown users get :math:`\mu + b_i`, unknown items :math:`\mu + b_u`.
    :meth:`fold_in` computes a new user's bias by the same closed form.

    Examples
    --------
    >>> import matfact
    >>> data = matfact.Interactions.from_arrays([1, 1, 2], [10, 20, 10], [5.0, 3.0, 4.0])
    >>> model = matfact.Baseline(reg_user=0, reg_item=0).fit(data, progress=False)
    >>> model.predict([1], [10]).round(2).tolist()
    [5.0]
    """

    _parameter_constraints: ClassVar[dict] = {
        "reg_user": [Interval(float, 0, None)],
        "reg_item": [Interval(float, 0, None)],
        "max_iter": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None)],
    }
    _accepts: ClassVar[tuple[str, ...]] = ("explicit",)

    def __init__(self, *, reg_user: float = 15.0, reg_item: float = 10.0, max_iter: int = 10,
                 tol: float = 1e-6) -> None:
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.max_iter = max_iter
        self.tol = tol

    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        users = data.user_codes
        items = data.item_codes
        ratings = data.ratings.astype(np.float64)
        weights = data.weights.astype(np.float64)
        total = weights.sum()
        mu = float((weights * ratings).sum() / total) if total > 0 else float(ratings.mean())
        user_weight = np.bincount(users, weights, minlength=data.n_users)
        item_weight = np.bincount(items, weights, minlength=data.n_items)
        bu = np.zeros(data.n_users)
        bi = np.zeros(data.n_items)
        residual = ratings - mu
        self.loss_history_ = []
        self.n_iter_ = 0
        for _ in progress_bar(range(self.max_iter), progress=progress, desc="Baseline"):
            new_bi = (np.bincount(items, weights * (residual - bu[users]), minlength=data.n_items)
                      / (self.reg_item + item_weight + (item_weight + self.reg_item == 0)))
            new_bu = (np.bincount(users, weights * (residual - new_bi[items]),
                                  minlength=data.n_users)
                      / (self.reg_user + user_weight + (user_weight + self.reg_user == 0)))
            change = max(np.abs(new_bi - bi).max(), np.abs(new_bu - bu).max())
            bi, bu = new_bi, new_bu
            self.n_iter_ += 1
            error = residual - bu[users] - bi[items]
            self.loss_history_.append(float(np.sqrt((weights * error**2).sum() / max(total, 1e-300))))
            if change <= self.tol:
                break
        self.global_mean_ = mu
        self.user_bias_ = bu.astype(np.float32)
        self.item_bias_ = bi.astype(np.float32)

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        residual = values - self.global_mean_ - self.item_bias_[items]
        bias = residual.sum() / (self.reg_user + len(items)) if len(items) else 0.0
        return UserVector(np.zeros(0, dtype=np.float32), float(bias))

    def _fold_in_item(self, users: np.ndarray, values: np.ndarray) -> UserVector:
        residual = values - self.global_mean_ - self.user_bias_[users]
        bias = residual.sum() / (self.reg_item + len(users)) if len(users) else 0.0
        return UserVector(np.zeros(0, dtype=np.float32), float(bias))


class Popularity(Recommender):
    """Recommend the most popular items: the number of users who interacted with each.

    Parameters
    ----------
    weighted : bool, default=False
        Score items by the sum of interaction weights (plays, hours) rather than
        by the number of users.

    Attributes
    ----------
    item_popularity_ : ndarray of shape (n_items,), float32

    Notes
    -----
    ``predict`` returns the item's popularity score whatever the user (it is
    not a rating and is not clipped); unknown items score 0. Ties rank the
    lower item index (the smaller raw id) first.
    """

    _ranks_only = True

    _parameter_constraints: ClassVar[dict] = {"weighted": [BOOLEAN]}
    _needs_ratings: ClassVar[bool] = False

    def __init__(self, *, weighted: bool = False) -> None:
        self.weighted = weighted

    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        self.rating_scale_ = None
        weights = data.weights if self.weighted else None
        self.item_popularity_ = np.bincount(
            data.item_codes, weights, minlength=data.n_items
        ).astype(np.float32)

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.where(items >= 0, self.item_popularity_[np.maximum(items, 0)], 0.0)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_popularity_, (len(users), self.n_items_))

    def _score_vector(self, vector: UserVector) -> np.ndarray:
        return self.item_popularity_.copy()

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        return UserVector(np.zeros(0, dtype=np.float32), 0.0)

    _item_arrays: ClassVar[tuple[str, ...]] = ("item_popularity_",)

    def _fold_in_item(self, users: np.ndarray, values: np.ndarray) -> UserVector:
        # A new item's popularity is its first interactions (their weights when weighted).
        score = float(np.sum(values)) if self.weighted and self.is_implicit_ else len(users)
        return UserVector(np.zeros(0, dtype=np.float32), score)

    def _set_item(self, code: int, vector: UserVector) -> None:
        if not self.item_popularity_.flags.writeable:
            self.item_popularity_ = self.item_popularity_.copy()
        self.item_popularity_[code] = vector.bias

    def _validate_state(self) -> None:
        super()._validate_state()
        if self.item_popularity_.shape != (len(self.item_index_),):
            raise ValueError("item_popularity_ does not match the item ids")
