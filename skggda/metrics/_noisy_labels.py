"""Noisy-label detection: how early low-scoring groups reveal flipped labels.

The same curve and area measure noisy-*target* detection for a regressor:
:func:`corrupt_targets` shifts a fraction of the targets, and
``is_noisy`` marks them.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import validate_params

from ..utils._finite import check_finite_scores


#: What a non-finite score means when a metric ranks it.
UNRANKABLE = ("they cannot be ranked (a diverged solver, e.g. LiSSA: see its "
              "ConvergenceWarning).")

# The detection curve and its area take the same three arrays: one constraint table.
_DETECTION_PARAMS = {"scores": ["array-like"], "labels": ["array-like"],
                     "is_noisy": ["array-like"]}


@validate_params(_DETECTION_PARAMS, prefer_skip_nested_validation=True)
def detection_curve(scores, labels, is_noisy):
    """Fraction of noisy points found against fraction of points inspected.

    Groups are inspected whole, in order of increasing score (most harmful
    first). Inside a group the inspection order is arbitrary, and so is the
    order among groups with equal scores, so the curve is the expected one:
    linear between the boundaries of groups (of tied groups taken together).

    Parameters
    ----------
    scores : array-like of shape (n_groups,)
        Group scores (higher = more helpful): groups are inspected from the
        lowest score up.
    labels : array-like of shape (n_samples,)
        Group of every training sample, in ``0..n_groups-1``.
    is_noisy : array-like of shape (n_samples,), bool
        Which training labels were flipped (or targets corrupted, see
        :func:`corrupt_targets`).

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
    check_finite_scores(scores, UNRANKABLE)
    distinct, block = np.unique(scores, return_inverse=True)  # tied groups: one block
    sizes = np.bincount(block, weights=np.bincount(labels, minlength=len(scores)),
                        minlength=len(distinct))
    noisy = np.bincount(block, weights=np.bincount(labels, weights=is_noisy,
                                                   minlength=len(scores)),
                        minlength=len(distinct))
    inspected = np.concatenate([[0.0], np.cumsum(sizes) / sizes.sum()])
    found = np.concatenate([[0.0], np.cumsum(noisy) / noisy.sum()])
    return inspected, found


@validate_params(_DETECTION_PARAMS, prefer_skip_nested_validation=True)
def noisy_label_auc(scores, labels, is_noisy):
    """Area under the noisy-label detection curve (paper section 5.3).

    0.5 is what random scores achieve on average; 1 means every flipped
    label sits in the lowest-scoring groups. For a regressor, pass the
    corrupted targets of :func:`corrupt_targets` as ``is_noisy``: the area
    then measures noisy-target detection.

    Parameters
    ----------
    scores : array-like of shape (n_groups,)
        Group scores (higher = more helpful), as :func:`detection_curve`
        inspects them: from the lowest score up.
    labels : array-like of shape (n_samples,)
        Group of every training sample, in ``0..n_groups-1``.
    is_noisy : array-like of shape (n_samples,), bool
        Which training labels were flipped (or targets corrupted), as for
        :func:`detection_curve`.

    Returns
    -------
    auc : float
        Area under :func:`detection_curve`, between 0 and 1.

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


@validate_params(
    {
        "y": ["array-like"],
        "fraction": [Real],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def flip_labels(y, fraction=0.1, *, random_state=None):
    """Move a fraction of class labels to another class, drawn at random.

    Each label flips with probability ``fraction``, to one of the other
    classes chosen uniformly: the classification twin of
    :func:`corrupt_targets`.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class indices ``0..n_classes-1``.
    fraction : float in [0, 1], default=0.1
        Probability that a label is flipped.
    random_state : int, RandomState instance or None, default=None
        Which labels flip, and to what.

    Returns
    -------
    y_noisy : ndarray of shape (n_samples,)
        The labels, flipped ones replaced by another class.
    flipped : ndarray of shape (n_samples,), bool
        Which labels were flipped (``is_noisy`` of :func:`noisy_label_auc`).

    See Also
    --------
    corrupt_targets : The same for regression targets.
    noisy_label_auc : How early attribution scores find them.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics import flip_labels
    >>> y = np.arange(1000) % 3
    >>> y_noisy, flipped = flip_labels(y, 0.1, random_state=0)
    >>> bool((y_noisy[flipped] != y[flipped]).all()), bool(0.05 < flipped.mean() < 0.15)
    (True, True)
    """
    y = np.asarray(y)
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}.")
    rng = check_random_state(random_state)
    n_classes = max(int(y.max()) + 1 if y.size else 1, 2)
    flipped = rng.rand(len(y)) < fraction
    shift = rng.randint(1, n_classes, size=len(y))
    return np.where(flipped, (y + shift) % n_classes, y), flipped


@validate_params(
    {
        "y": ["array-like"],
        "fraction": [Real],
        "scale": [Real],
        "direction": [str],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def corrupt_targets(y, fraction=0.1, *, scale=3.0, direction="both", random_state=None):
    """Corrupt a fraction of regression targets, as flipped labels do for a classifier.

    ``round(fraction * n)`` targets chosen at random are shifted by
    ``scale`` standard deviations of ``y``: each is then far from what its
    features predict, as a mislabeled point is. Shifts in both directions
    (random noise) partly cancel in what the model learns, so attributions
    find them less easily than one-sided shifts (a systematic error: a unit
    mix-up, a biased sensor).

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Regression targets.
    fraction : float in [0, 1], default=0.1
        Share of the targets corrupted.
    scale : float, default=3.0
        Size of the shift, in standard deviations of ``y``.
    direction : {"both", "up", "down"}, default="both"
        Shift each chosen target up or down at random, or all one way.
    random_state : int, RandomState instance or None, default=None
        Which targets, and the direction of each shift.

    Returns
    -------
    y_corrupted : ndarray of shape (n_samples,), float64
        A copy of ``y`` with the corrupted targets.
    is_corrupted : ndarray of shape (n_samples,), bool
        Which targets were corrupted (``is_noisy`` of :func:`noisy_label_auc`).

    See Also
    --------
    noisy_label_auc : How early attribution scores find them.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics import corrupt_targets
    >>> y = np.arange(10.0)
    >>> y_noisy, is_corrupted = corrupt_targets(y, 0.2, random_state=0)
    >>> int(is_corrupted.sum()), np.abs(y_noisy - y)[is_corrupted].round(2).tolist()
    (2, [8.62, 8.62])
    """
    y = np.asarray(y, dtype=np.float64)
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}.")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}.")
    signs = {"both": [-1.0, 1.0], "up": [1.0], "down": [-1.0]}
    if direction not in signs:
        raise ValueError(f"direction={direction!r} is not one of {sorted(signs)}.")
    rng = check_random_state(random_state)
    chosen = rng.permutation(len(y))[: int(round(fraction * len(y)))]
    is_corrupted = np.zeros(len(y), dtype=bool)
    is_corrupted[chosen] = True
    y_corrupted = y.copy()
    y_corrupted[chosen] += rng.choice(signs[direction], size=len(chosen)) * scale * y.std()
    return y_corrupted, is_corrupted
