"""Inspection: reports on the groups of a fitted attributor.

:func:`group_report` describes every group of a fitted attributor (score,
size, labels, the features that set it apart) as a pandas DataFrame; the
``skggda explain`` command line (:mod:`skggda.cli`) builds its report folder
from it. :func:`verify_removal` checks an attribution by retraining without
its most harmful groups, against random groups of the same size.
"""

from ._report import group_report
from ._verify import verify_removal

__all__ = ["group_report", "verify_removal"]
