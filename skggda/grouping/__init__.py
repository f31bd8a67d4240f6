"""Groupers: scikit-learn estimators that partition the training set."""

from ._base import BaseGrouper
from ._groupers import GradKMeansGrouper, KMeansGrouper, RandomGrouper, ReprKMeansGrouper

__all__ = [
    "BaseGrouper",
    "GradKMeansGrouper",
    "KMeansGrouper",
    "RandomGrouper",
    "ReprKMeansGrouper",
]
