"""Matrix factorization beyond recommenders: topics from text, bases of images.

:mod:`matfact.apps.topics` turns documents into NMF topics; :mod:`matfact.apps.images`
compares SVD and NMF bases, compression and recognition on images. Both back a
command of the CLI (``matfact topics``, ``matfact images``).
"""
