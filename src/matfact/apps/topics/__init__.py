r"""Topics from text: TF-IDF, then non-negative matrix factorization.

A corpus of :math:`n` documents becomes a non-negative matrix
:math:`X \in \mathbb{R}_{\ge 0}^{n \times m}` of TF-IDF weights (rows are
documents, columns the :math:`m` terms of the vocabulary), factorized as

.. math::
    X \approx W H, \qquad W \in \mathbb{R}_{\ge 0}^{n \times k},\;
    H \in \mathbb{R}_{\ge 0}^{k \times m}.

Row :math:`t` of :math:`H` is topic :math:`t`, a weighting of the terms; row
:math:`d` of :math:`W` says how much of each topic document :math:`d` holds.
Because nothing can be subtracted, each document is an additive mixture of
topics and each topic an additive set of words, so the rows of :math:`H` read as
subjects ("parts") rather than as the signed contrasts of an SVD.

The package, one module per step:

- :mod:`~matfact.apps.topics.corpus`: :func:`read_corpus` reads a dataset name,
  a CSV/JSON-lines file or a folder of ``.txt`` files into a :class:`Corpus`;
- :mod:`~matfact.apps.topics.model`: :func:`fit_topics`, the library entry
  point, returns a :class:`TopicModel`;
- :mod:`~matfact.apps.topics.scores`: :func:`purity_score` and
  :func:`nmi_score` of the topics against known labels;
- :mod:`~matfact.apps.topics.figures`: :func:`plot_topics`.

Every public name is importable from ``matfact.apps.topics``; the ``matfact
topics`` command lives in :mod:`matfact.cli.topics`. See ``docs/topics.md`` for
a guide and the results on BBC News.
"""


from matfact.apps.topics.corpus import (
    ID_COLUMNS,
    LABEL_COLUMNS,
    TEXT_COLUMNS,
    Corpus,
    read_corpus,
)
from matfact.apps.topics.figures import plot_topics
from matfact.apps.topics.model import LOSSES, TOKEN_PATTERN, TopicModel, fit_topics
from matfact.apps.topics.scores import nmi_score, purity_score

__all__ = [
    "LOSSES",
    "TEXT_COLUMNS",
    "LABEL_COLUMNS",
    "ID_COLUMNS",
    "TOKEN_PATTERN",
    "Corpus",
    "TopicModel",
    "fit_topics",
    "read_corpus",
    "nmi_score",
    "purity_score",
    "plot_topics",
]
