"""Public datasets: real ones to load and synthetic ones to make.

>>> from matfact.datasets import load_dataset, make_synthetic
>>> data = load_dataset("ml-100k")  # doctest: +SKIP
>>> synthetic = make_synthetic(1_000, 500, 20_000, rank=8)
"""

from matfact.data.datasets import DATASETS, ImageDataset, TextDataset, load_dataset
from matfact.data.synthetic import SyntheticTruth, make_synthetic

__all__ = [
    "DATASETS",
    "ImageDataset",
    "SyntheticTruth",
    "TextDataset",
    "load_dataset",
    "make_synthetic",
]
