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

The package, one module per step:

- :mod:`~matfact.apps.images.reading`: image files, folders, patches
  (:func:`read_image`, :func:`load_images`, :func:`image_patches`);
- :mod:`~matfact.apps.images.factorization`: the two factorizations and their
  measures (:func:`factorize`, :class:`Factorization`, :func:`compression_table`,
  :func:`psnr`, :func:`relative_error`, :func:`compression_ratio`);
- :mod:`~matfact.apps.images.recognition`: 1-nearest-neighbour recognition on
  the codes (:func:`recognition_curve`, :func:`split_per_subject`);
- :mod:`~matfact.apps.images.figures`: basis images, reconstructions,
  compression and recognition plots.

Every public name is importable from ``matfact.apps.images``. The ``matfact
images`` command (:mod:`matfact.cli.images`) prints the compression table and
the recognition accuracies and writes the figures.

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


from matfact.apps.images.factorization import (
    DEFAULT_RANKS,
    METHODS,
    NMF_MAX_ITER,
    Factorization,
    basis_images,
    compression_ratio,
    compression_table,
    factorize,
    psnr,
    relative_error,
)
from matfact.apps.images.figures import (
    plot_basis,
    plot_compression,
    plot_recognition,
    plot_reconstructions,
)
from matfact.apps.images.reading import (
    IMAGE_SUFFIXES,
    assemble_patches,
    image_patches,
    load_images,
    read_image,
)
from matfact.apps.images.recognition import recognition_curve, split_per_subject

__all__ = [
    "DEFAULT_RANKS",
    "IMAGE_SUFFIXES",
    "METHODS",
    "NMF_MAX_ITER",
    "Factorization",
    "assemble_patches",
    "basis_images",
    "compression_ratio",
    "compression_table",
    "factorize",
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
    "split_per_subject",
]
