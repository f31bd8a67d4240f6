"""Utilities: per-call timings of the scoring methods.

The rest of this package (input validation, group labels, targets, seeding,
the distributed passes) is private.
"""

from ._timings import record_timings

__all__ = ["record_timings"]
