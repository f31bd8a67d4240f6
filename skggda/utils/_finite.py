"""One check for the scores every attributor returns and every metric ranks."""

from __future__ import annotations

import numpy as np


def check_finite_scores(scores, reason):
    """Return ``scores``; raise ``ValueError`` if any is NaN or infinite.

    Parameters
    ----------
    scores : ndarray
        Scores of groups or points.
    reason : str
        What a non-finite score means where the check runs, appended to the
        message (an attributor: overflowing gradients; a metric: a ranking
        that would silently put them last).
    """
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"The scores are not finite: {int(bad.sum())} NaN or infinite "
                         f"values; {reason}")
    return scores
