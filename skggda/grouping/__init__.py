"""Groupers: scikit-learn estimators that partition the training set."""

from ._base import BaseGrouper
from ._random import RandomGrouper

__all__ = ["BaseGrouper", "RandomGrouper"]
