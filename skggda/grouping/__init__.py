"""Groupers: scikit-learn estimators that partition the training set."""

from ._base import BaseGrouper
from ._kmeans import KMeansGrouper
from ._net_kmeans import GradKMeansGrouper, ReprKMeansGrouper
from ._random import RandomGrouper

__all__ = [
    "BaseGrouper",
    "GradKMeansGrouper",
    "KMeansGrouper",
    "RandomGrouper",
    "ReprKMeansGrouper",
]
