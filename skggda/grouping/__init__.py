"""Groupers: scikit-learn estimators that partition the training set."""

from ._base import BaseGrouper
from ._kmeans import GradKMeansGrouper, KMeansGrouper, ReprKMeansGrouper
from ._random import RandomGrouper

__all__ = [
    "BaseGrouper",
    "GradKMeansGrouper",
    "KMeansGrouper",
    "RandomGrouper",
    "ReprKMeansGrouper",
]
