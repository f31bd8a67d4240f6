"""Noisy-label detection: how early low-scoring groups reveal flipped labels."""

from __future__ import annotations

import numpy as np


def check_finite_scores(scores):
    """Reject NaN / infinite scores: sorting would silently put them last."""
    if not np.isfinite(scores).all():
        raise ValueError(
            f"scores contain {int((~np.isfinite(scores)).sum())} NaN or infinite values "
            f"(a diverged solver, e.g. LiSSA: see its ConvergenceWarning); they cannot be "
            f"ranked."
        )


def detection_curve(scores, labels, is_noisy):
    """Fraction of noisy points found against fraction of points inspected.

    Groups are inspected whole, in order of increasing score (most harmful
    first). Inside a group the inspection order is arbitrary, and so is the
    order among groups with equal scores, so the curve is the expected one:
    linear between the boundaries of groups (of tied groups taken together).

    Parameters
    ----------
    scores : array-like of shape (n_groups,)
        Group scores (higher = more helpful).
    labels : array-like of shape (n_samples,)
        Group of every training sample, in ``0..n_groups-1``.
    is_noisy : array-like of shape (n_samples,), bool
        Which training labels were flipped.

    Returns
    -------
    inspected : ndarray of shape (n_distinct_scores + 1,)
        Fraction of training points inspected, from 0 to 1.
    found : ndarray of shape (n_distinct_scores + 1,)
        Fraction of noisy points found.

    Examples
    --------
    >>> from skggda.metrics import detection_curve
    >>> detection_curve([0.5, -1.0], [0, 0, 1, 1], [False, False, True, False])
    (array([0. , 0.5, 1. ]), array([0., 1., 1.]))
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    is_noisy = np.asarray(is_noisy, dtype=bool)
    if labels.shape != is_noisy.shape:
        raise ValueError(
            f"labels and is_noisy must have the same shape, got {labels.shape} and {is_noisy.shape}."
        )
    if not is_noisy.any():
        raise ValueError("is_noisy marks no sample: there is nothing to detect.")
    check_finite_scores(scores)
    distinct, block = np.unique(scores, return_inverse=True)  # tied groups: one block
    sizes = np.bincount(block, weights=np.bincount(labels, minlength=len(scores)),
                        minlength=len(distinct))
    noisy = np.bincount(block, weights=np.bincount(labels, weights=is_noisy,
                                                   minlength=len(scores)),
                        minlength=len(distinct))
    inspected = np.concatenate([[0.0], np.cumsum(sizes) / sizes.sum()])
    found = np.concatenate([[0.0], np.cumsum(noisy) / noisy.sum()])
    return inspected, found


def noisy_label_auc(scores, labels, is_noisy):
    """Area under the noisy-label detection curve (paper section 5.3).

    0.5 is what random scores achieve on average; 1 means every flipped
    label sits in the lowest-scoring groups.

    Parameters
    ----------
    scores : array-like of shape (n_groups,)
    labels : array-like of shape (n_samples,)
    is_noisy : array-like of shape (n_samples,), bool

    Returns
    -------
    auc : float

    See Also
    --------
    detection_curve : The curve whose area this is.

    Examples
    --------
    >>> from skggda.metrics import noisy_label_auc
    >>> noisy_label_auc([0.5, -1.0], [0, 0, 1, 1], [False, False, True, False])
    0.75
    """
    inspected, found = detection_curve(scores, labels, is_noisy)
    return float(np.sum(np.diff(inspected) * (found[1:] + found[:-1]) / 2))
