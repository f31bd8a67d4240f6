"""Attributors: scikit-learn estimators that score groups of training data."""

from ._base import BaseAttributor
from ._influence import InfluenceAttributor
from ._tracin import TracInAttributor
from ._trak import TRAKAttributor

__all__ = ["BaseAttributor", "InfluenceAttributor", "TRAKAttributor", "TracInAttributor"]
