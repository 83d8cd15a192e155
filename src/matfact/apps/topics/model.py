r"""The topic model: TF-IDF, then NMF, with each topic's top words and documents.

:func:`fit_topics` builds the TF-IDF matrix :math:`X` of the documents and
factorizes it as :math:`X \approx WH` with :class:`matfact.NMF`; the
:class:`TopicModel` it returns holds both factors, the top words of each topic
and, with labels, the scores of :mod:`matfact.apps.topics.scores`. See
:mod:`matfact.apps.topics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matfact.apps.topics.scores import nmi_score, purity_score
from matfact.exceptions import DataError, ParameterError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np
    import pandas as pd

__all__ = ["LOSSES", "TOKEN_PATTERN", "TopicModel", "fit_topics"]

#: The NMF losses :func:`fit_topics` offers, each with the solver that minimizes it:
#: coordinate descent for the Frobenius norm, multiplicative updates for the
#: (generalized) Kullback-Leibler divergence, which coordinate descent cannot handle.
LOSSES = {"frobenius": "cd", "kullback-leibler": "mu"}

#: Words of two or more letters: numbers ("2004", "£600m") name no topic, yet with
#: scikit-learn's default pattern "2004" ranks among the top words of BBC's business topic.
TOKEN_PATTERN = r"(?u)\b[^\W\d_][^\W\d_]+\b"


# ------------------------------------------------------------------------------------ NMF
def _make_nmf(**params: Any) -> Any:
    """The NMF estimator, built from scikit-learn's parameter names.

    The one place that chooses the implementation (:class:`matfact.models.nmf.NMF`,
    which takes scikit-learn's names), so swapping it changes nothing else here.
    """
    from matfact.models.nmf import NMF

    return NMF(**params)


# ------------------------------------------------------------------------------------ model
@dataclass(frozen=True, eq=False)
class TopicModel:
    """The topics :func:`fit_topics` found, and how the documents spread over them.

    Attributes
    ----------
    vectorizer : sklearn.feature_extraction.text.TfidfVectorizer
        The fitted TF-IDF vectorizer.
    model : NMF
        The fitted NMF; ``model.components_`` is :math:`H`, of shape
        (n_topics, n_terms).
    vocabulary : ndarray of shape (n_terms,), dtype str
        The term of each column of :math:`X` and :math:`H`.
    document_topics : ndarray of shape (n_documents, n_topics)
        :math:`W`: the weight of each topic in each document.
    top_words : list of list of str
        For each topic, its ``top_words`` heaviest terms, heaviest first.
    top_word_weights : ndarray of shape (n_topics, top_words)
        Their weights in :math:`H`.
    assignments : ndarray of shape (n_documents,), dtype int
        Each document's topic, the argmax of its row of :math:`W` (0-based); -1
        for a document none of whose terms is in the vocabulary (a zero row).
    shares : ndarray of shape (n_topics,)
        The share of all documents assigned to each topic; sums to 1 unless
        some documents have no topic.
    ids : ndarray of shape (n_documents,), dtype str
        The document ids.
    labels : ndarray of shape (n_documents,), dtype str, or None
        The known class of each document, if given.
    nmi : float or None
        :func:`nmi_score` of ``labels`` and ``assignments`` (None without labels).
    purity : float or None
        :func:`purity_score` of ``labels`` and ``assignments``.
    loss : str
        The NMF loss, a key of :data:`LOSSES`.
    """

    vectorizer: Any
    model: Any
    vocabulary: np.ndarray
    document_topics: np.ndarray
    top_words: list[list[str]]
    top_word_weights: np.ndarray
    assignments: np.ndarray
    shares: np.ndarray
    ids: np.ndarray
    labels: np.ndarray | None
    nmi: float | None
    purity: float | None
    loss: str

    @property
    def n_topics(self) -> int:
        """Number of topics, :math:`k`."""
        return int(self.document_topics.shape[1])

    @property
    def topic_words(self) -> np.ndarray:
        """:math:`H`, of shape (n_topics, n_terms): each topic's weight on each term."""
        return self.model.components_

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Topic weights of new documents, with the vocabulary and topics kept fixed.

        Parameters
        ----------
        texts : sequence of str

        Returns
        -------
        ndarray of shape (n_texts, n_topics)
        """
        texts = _as_texts(texts)
        return self.model.transform(self.vectorizer.transform(texts))

    def topic_labels(self) -> list[tuple[str, float]] | None:
        """For each topic, its most common label and that label's share of the topic.

        Returns
        -------
        list of (str, float), or None
            ``("", 0.0)`` for a topic no document was assigned to; None without
            labels.
        """
        if self.labels is None:
            return None
        from collections import Counter

        found = []
        for topic in range(self.n_topics):
            counts = Counter(self.labels[self.assignments == topic].tolist())
            if not counts:
                found.append(("", 0.0))
                continue
            label, count = counts.most_common(1)[0]
            found.append((label, count / sum(counts.values())))
        return found

    def to_frame(self) -> pd.DataFrame:
        """The document-topic weights as a table: ``id``, ``label`` (if any), ``topic_1``...

        Returns
        -------
        pandas.DataFrame of shape (n_documents, n_topics + 1 or 2)
        """
        import pandas as pd

        columns: dict[str, Any] = {"id": self.ids}
        if self.labels is not None:
            columns["label"] = self.labels
        for topic in range(self.n_topics):
            columns[f"topic_{topic + 1}"] = self.document_topics[:, topic]
        return pd.DataFrame(columns)


def _as_texts(texts: Any) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise DataError("texts must be a sequence of documents, not a single string; wrap it "
                        "in a list")
    try:
        texts = list(texts)
    except TypeError:
        raise DataError(f"texts must be a sequence of str, got {type(texts).__name__}") \
            from None
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise DataError(f"texts must be str; document {bad} is "
                        f"{type(texts[bad]).__name__}")
    return texts


def _check_df(name: str, value: Any) -> None:
    import numbers

    ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1) \
        or (isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral))
            and 0.0 <= value <= 1.0)
    if not ok:
        raise ParameterError(f"{name} must be a document count (an integer >= 1) or a "
                             f"proportion (a float in [0, 1]), got {value!r}")


def _check_int(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    import numbers

    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        none = " or None" if allow_none else ""
        raise ParameterError(f"{name} must be an integer >= {low}{none}, got {value!r}")


def fit_topics(texts: Any, n_topics: int = 5, *, loss: str = "frobenius",
               labels: Any = None, ids: Any = None, top_words: int = 10,
               max_features: int | None = None, min_df: int | float = 5,
               max_df: int | float = 0.5, sublinear_tf: bool = True,
               init: str | None = None, max_iter: int | None = None, tol: float = 1e-4,
               alpha_W: float = 0.0, alpha_H: float = 0.0,  # noqa: N803 - scikit-learn's names
               l1_ratio: float = 0.0, random_state: Any = 0) -> TopicModel:
    r"""Find ``n_topics`` topics in documents with TF-IDF and NMF.

    The documents become a TF-IDF matrix :math:`X` of shape
    (n_documents, n_terms): lower-cased words of two or more letters,
    English stop words removed, terms kept if they occur in at least
    ``min_df`` and at most ``max_df`` documents, weighted

    .. math::
        x_{dj} \propto \mathrm{tf}(d, j)\, \Big(1 + \ln\frac{1 + n}{1 + \mathrm{df}(j)}\Big),
        \qquad \lVert x_{d\cdot} \rVert_2 = 1,

    with :math:`\mathrm{tf} = 1 + \ln(\text{count})` when ``sublinear_tf``.
    NMF then finds :math:`W \ge 0, H \ge 0` minimizing

    .. math::
        \tfrac12 \lVert X - WH \rVert_F^2 \quad\text{(loss="frobenius", coordinate descent)}

    or :math:`\sum_{dj} x_{dj} \ln\frac{x_{dj}}{(WH)_{dj}} - x_{dj} + (WH)_{dj}`
    (``loss="kullback-leibler"``, multiplicative updates), plus the optional
    :math:`\alpha`/``l1_ratio`` penalties of scikit-learn's NMF.

    Parameters
    ----------
    texts : sequence of str, or Corpus or TextDataset
        The documents. A :class:`Corpus` or :class:`~matfact.datasets.TextDataset`
        also gives ``labels`` and ``ids`` unless they are passed.
    n_topics : int, default=5
        Number of topics :math:`k`, from 1 to the number of documents (and of
        terms).
    loss : {"frobenius", "kullback-leibler"}, default="frobenius"
        The NMF objective (see :data:`LOSSES`).
    labels : array-like of shape (n_documents,), default=None
        Known classes, used only to score the topics (:func:`nmi_score`,
        :func:`purity_score`).
    ids : array-like of shape (n_documents,), default=None
        Document ids; by default ``"0"``, ``"1"``, ...
    top_words : int, default=10
        How many terms to list per topic.
    max_features : int, default=None
        Keep only the most frequent terms (after the ``min_df``/``max_df`` cut).
    min_df : int or float, default=5
        Drop terms found in fewer documents (an int) or a smaller share of them
        (a float): rare terms are names and typos, no topic.
    max_df : int or float, default=0.5
        Drop terms found in more documents (a float: share): words common to
        every subject ("said", "year") would otherwise rank high in every topic.
    sublinear_tf : bool, default=True
        Use :math:`1 + \ln(\text{count})` for term frequency, so one word
        repeated in a document does not dominate it.
    init : {"nndsvd", "nndsvda", "nndsvdar", "random"}, default=None
        NMF initialization; by default ``"nndsvd"`` for the Frobenius loss and
        ``"nndsvda"`` for Kullback-Leibler (multiplicative updates cannot move
        the exact zeros ``"nndsvd"`` starts with).
    max_iter : int, default=None
        NMF iterations; by default 400 for Frobenius and 1000 for
        Kullback-Leibler.
    tol : float, default=1e-4
        NMF stopping tolerance.
    alpha_W, alpha_H, l1_ratio : float, default=0.0
        Regularization of :math:`W` and :math:`H`, as in scikit-learn's NMF.
    random_state : int, numpy.random.Generator or None, default=0
        Seed of the NMF initialization (used by ``"nndsvdar"`` and ``"random"``;
        the default ``"nndsvd"``/``"nndsvda"`` starts are deterministic).

    Returns
    -------
    TopicModel

    Raises
    ------
    DataError
        If there are no documents, no term survives the vocabulary cuts, or
        ``labels`` / ``ids`` do not have one entry per document.
    ParameterError
        If ``n_topics``, ``loss``, ``min_df``/``max_df`` or another parameter is
        out of range.

    Examples
    --------
    >>> from matfact.apps.topics import fit_topics, read_corpus
    >>> corpus = read_corpus("bbc-news")  # doctest: +SKIP
    >>> result = fit_topics(corpus, n_topics=5)  # doctest: +SKIP
    >>> result.top_words[0][:3], round(result.nmi, 2)  # doctest: +SKIP
    (['people', 'technology', 'users'], 0.85)
    """
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    if hasattr(texts, "texts") and not isinstance(texts, (str, bytes)):
        labels = getattr(texts, "labels", None) if labels is None else labels
        ids = getattr(texts, "ids", None) if ids is None else ids
        texts = texts.texts
    texts = _as_texts(texts)
    n_docs = len(texts)
    if n_docs == 0:
        raise DataError("the corpus is empty: no documents to find topics in")
    if loss not in LOSSES:
        raise ParameterError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got "
                             f"{loss!r}")
    _check_int("n_topics", n_topics, 1)
    if n_topics > n_docs:
        raise ParameterError(f"n_topics={n_topics} exceeds the number of documents "
                             f"({n_docs}); ask for at most {n_docs} topics")
    _check_int("top_words", top_words, 1)
    _check_int("max_features", max_features, 1, allow_none=True)
    _check_int("max_iter", max_iter, 1, allow_none=True)
    _check_df("min_df", min_df)
    _check_df("max_df", max_df)
    if labels is not None:
        labels = np.asarray(labels).astype(str)
        if labels.shape != (n_docs,):
            raise DataError(f"labels must have one entry per document ({n_docs}), got shape "
                            f"{labels.shape}")
    if ids is None:
        ids = np.arange(n_docs).astype(str)
    else:
        ids = np.asarray(ids).astype(str)
        if ids.shape != (n_docs,):
            raise DataError(f"ids must have one entry per document ({n_docs}), got shape "
                            f"{ids.shape}")

    vectorizer = TfidfVectorizer(stop_words="english", token_pattern=TOKEN_PATTERN,
                                 min_df=min_df, max_df=max_df, max_features=max_features,
                                 sublinear_tf=sublinear_tf)
    try:
        X = vectorizer.fit_transform(texts)
    except ValueError as err:  # empty vocabulary, or max_df below min_df
        text = str(err)
        if "empty vocabulary" in text or "no terms remain" in text:
            raise DataError(
                f"no term is left to build topics from ({n_docs} document(s), min_df="
                f"{min_df!r}, max_df={max_df!r}): the documents are empty or only stop "
                f"words, or the cuts remove every term; lower min_df or raise max_df"
            ) from None
        raise ParameterError(f"min_df={min_df!r} and max_df={max_df!r} contradict each other "
                             f"for {n_docs} documents: {text}") from None
    vocabulary = vectorizer.get_feature_names_out().astype(str)
    if n_topics > len(vocabulary):
        raise ParameterError(f"n_topics={n_topics} exceeds the number of terms kept "
                             f"({len(vocabulary)}); ask for fewer topics or lower min_df")

    solver = LOSSES[loss]
    if init is None:
        init = "nndsvd" if solver == "cd" else "nndsvda"
    if max_iter is None:
        max_iter = 400 if solver == "cd" else 1000
    model = _make_nmf(n_components=n_topics, init=init, solver=solver, beta_loss=loss,
                      tol=tol, max_iter=max_iter, alpha_W=alpha_W, alpha_H=alpha_H,
                      l1_ratio=l1_ratio, random_state=random_state)
    W = model.fit_transform(X)
    H = model.components_

    n_top = min(top_words, len(vocabulary))
    order = np.argsort(-H, axis=1, kind="stable")[:, :n_top]
    top = [vocabulary[row].tolist() for row in order]
    top_weights = np.take_along_axis(H, order, axis=1)
    assignments = np.where(W.max(axis=1) > 0, W.argmax(axis=1), -1)
    shares = np.bincount(assignments[assignments >= 0], minlength=n_topics) / n_docs
    nmi = purity = None
    if labels is not None:
        nmi = nmi_score(labels, assignments)
        purity = purity_score(labels, assignments)
    return TopicModel(vectorizer=vectorizer, model=model, vocabulary=vocabulary,
                      document_topics=W, top_words=top, top_word_weights=top_weights,
                      assignments=assignments, shares=shares, ids=ids, labels=labels,
                      nmi=nmi, purity=purity, loss=loss)
