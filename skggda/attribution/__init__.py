"""Attributors: scikit-learn estimators that score groups of training data."""

from ._base import BaseAttributor
from ._tracin import TracInAttributor

__all__ = ["BaseAttributor", "TracInAttributor"]
