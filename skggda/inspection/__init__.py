"""Inspection: reports on the groups of a fitted attributor.

:func:`group_report` describes every group of a fitted attributor (score,
size, labels, the features that set it apart) as a pandas DataFrame; the
``skggda explain`` command line (:mod:`skggda.cli`) builds its report folder
from it.
"""

from ._report import group_report

__all__ = ["group_report"]
