"""Scores of topics against known labels: purity and normalized mutual information."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matfact.exceptions import DataError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np

__all__ = ["nmi_score", "purity_score"]


def _check_pair(labels: Any, assignments: Any) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    labels, assignments = np.asarray(labels), np.asarray(assignments)
    if labels.ndim != 1 or assignments.ndim != 1 or len(labels) != len(assignments):
        raise DataError(f"labels and assignments must be 1-D of the same length, got shapes "
                        f"{labels.shape} and {assignments.shape}")
    if len(labels) == 0:
        raise DataError("labels and assignments are empty: nothing to score")
    return labels, assignments


def purity_score(labels: Any, assignments: Any) -> float:
    r"""The share of documents whose topic's most common label is their own.

    .. math::
        \text{purity} = \frac{1}{n} \sum_{t} \max_{c} \lvert D_t \cap L_c \rvert

    where :math:`D_t` are the documents assigned to topic :math:`t` and
    :math:`L_c` those of label :math:`c`. It is 1 when every topic holds one
    label only, and rewards many small topics (one topic per document scores
    1), so read it next to :func:`nmi_score`.

    Parameters
    ----------
    labels : array-like of shape (n_documents,)
        The true class of each document.
    assignments : array-like of shape (n_documents,)
        The topic (cluster) of each document.

    Returns
    -------
    float
        In (0, 1].

    Examples
    --------
    >>> purity_score(["a", "a", "b", "b", "b"], [0, 0, 0, 1, 1])
    0.8
    """
    from sklearn.metrics.cluster import contingency_matrix

    labels, assignments = _check_pair(labels, assignments)
    table = contingency_matrix(labels, assignments)  # labels x topics
    return float(table.max(axis=0).sum() / len(labels))


def nmi_score(labels: Any, assignments: Any) -> float:
    r"""Normalized mutual information between labels and topics.

    .. math::
        \text{NMI} = \frac{I(L; T)}{\tfrac12 \big(H(L) + H(T)\big)}

    (scikit-learn's :func:`~sklearn.metrics.normalized_mutual_info_score`
    with the arithmetic mean): 1 when topics and labels are the same partition
    up to renaming, near 0 when independent. Unlike purity it penalizes
    splitting a label over several topics.

    Parameters
    ----------
    labels : array-like of shape (n_documents,)
    assignments : array-like of shape (n_documents,)

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> nmi_score(["a", "a", "b", "b"], [1, 1, 0, 0])
    1.0
    """
    from sklearn.metrics import normalized_mutual_info_score

    labels, assignments = _check_pair(labels, assignments)
    return float(normalized_mutual_info_score(labels, assignments))
