"""Removal orders: which training points a removal evaluation takes out.

:func:`removal_order` and :func:`points_to_remove` remove whole groups in
score order (the last group partially, its points at random; optionally the
same share of every class); :func:`harmful_then_random` prunes the harmful
points by score and the rest at random, class by class. :mod:`._removal`
retrains without them.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from ..utils._finite import check_finite_scores
from ._noisy_labels import UNRANKABLE


def removal_order(scores, labels, *, most_important=True, random_state=None):
    """Training points in removal order: whole groups by score, random order inside a group.

    Parameters
    ----------
    scores, labels, most_important, random_state
        As in :func:`points_to_remove`.

    Returns
    -------
    order : ndarray of shape (n_samples,)
        Indices of all training points, the first removed first.

    Examples
    --------
    >>> from skggda.metrics._orders import removal_order
    >>> removal_order([0.1, 0.9], [0, 0, 1], random_state=0)[0]  # group 1 goes first
    np.int64(2)
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    check_finite_scores(scores, UNRANKABLE)
    rng = check_random_state(random_state)
    tiebreak = rng.permutation(len(scores))
    rank = np.lexsort((tiebreak, -scores if most_important else scores))
    position = np.empty(len(scores), dtype=np.int64)
    position[rank] = np.arange(len(scores))
    inside = rng.permutation(len(labels))
    return np.lexsort((inside, position[labels]))


def points_to_remove(scores, labels, fraction, *, most_important=True, stratify=None,
                     random_state=None):
    """Indices of the ``fraction`` of training points removed first.

    Whole groups in score order; the last group partially, its points at
    random. ``round(fraction * n)`` points are returned (with ``stratify``,
    ``round(fraction * n_c)`` of every class ``c``).

    Parameters
    ----------
    scores : array-like of shape (n_groups,)
        Group scores (higher = more helpful).
    labels : array-like of shape (n_samples,)
        Group of every training point, in ``0..n_groups-1``.
    fraction : float in [0, 1]
        Share of the training points removed.
    most_important : bool, default=True
        Highest scores first; ``False``: lowest first (pruning).
    stratify : array-like of shape (n_samples,), default=None
        Class of every training point: remove ``round(fraction * n_c)``
        points of each class ``c``, each class in the score order of its
        points' groups (as ``train_test_split(stratify=y)`` keeps class
        proportions). A group holding several classes is split between them.
    random_state : int, RandomState instance or None, default=None
        Order of the points inside a group (and among tied groups).

    Returns
    -------
    removed : ndarray of shape (round(fraction * n_samples),), sorted
        Indices of the training points removed.

    Examples
    --------
    Half of four points, by group score, then class by class:

    >>> from skggda.metrics._orders import points_to_remove
    >>> sorted(points_to_remove([5.0, 1.0], [0, 0, 1, 1], 0.5).tolist())
    [0, 1]
    >>> sorted(points_to_remove([5.0, 1.0], [0, 0, 1, 1], 0.5, stratify=[0, 1, 0, 1]).tolist())
    [0, 1]
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}.")
    labels = np.asarray(labels)
    if stratify is None:
        order = removal_order(scores, labels, most_important=most_important,
                              random_state=random_state)
        return np.sort(order[: int(round(fraction * len(order)))])
    stratify = np.asarray(stratify)
    if stratify.shape != labels.shape:
        raise ValueError(f"stratify has shape {stratify.shape}; expected one class per "
                         f"training point, shape {labels.shape}.")
    rng = check_random_state(random_state)
    removed = []
    for members in _class_members(stratify):
        order = removal_order(scores, labels[members], most_important=most_important,
                              random_state=rng)
        removed.append(members[order[: int(round(fraction * len(members)))]])
    return np.sort(np.concatenate(removed))


#: Pruning orders of :func:`removal_score` (``most_important=False``).
PRUNING_ORDERS = ("score", "harmful-then-random")


def harmful_then_random(scores, labels, fraction, strata, *, max_harmful=0.05,
                        random_state=None):
    """Pruning that starts with the harmful points and leaves the rest to chance.

    The points of groups with a negative score -- predicted to *lower* the
    property's badness when removed -- go first, lowest score first (whole
    groups, the last one partially at random), up to ``max_harmful`` of the
    training set; the remainder of the ``round(fraction * n)`` points is
    drawn at random class by class, topping every class up towards its share
    ``fraction * n_c`` (largest remainders), so the kept set keeps the class
    proportions as far as the harmful removals allow.

    Pruning the lowest scores all the way removes whole classes and falls
    below random removal (see ``benchmarks/REPRODUCTION.md``); this order
    uses the attribution only where it predicts a gain.

    Parameters
    ----------
    scores, labels, fraction
        As in :func:`points_to_remove`.
    strata : array-like of shape (n_samples,)
        Class of every training point.
    max_harmful : float in [0, 1], default=0.05
        At most this share of the training set is removed for its score.
    random_state : int, RandomState instance or None, default=None
        Order inside the harmful groups, and the random remainder.

    Returns
    -------
    removed : ndarray of shape (round(fraction * n_samples),), sorted
        Indices of the training points removed: the harmful ones and the
        random remainder together.

    Examples
    --------
    One harmful point goes first, the rest is drawn by class:

    >>> from skggda.metrics._orders import harmful_then_random
    >>> removed = harmful_then_random([-1.0, 2.0, 3.0, 1.0], [0, 1, 2, 3], 0.5,
    ...                               [0, 0, 1, 1], max_harmful=0.25, random_state=0)
    >>> removed.tolist()  # the harmful point 0, then one point of class 1 at random
    [0, 2]
    """
    labels, strata = np.asarray(labels), np.asarray(strata)
    scores = np.asarray(scores, dtype=float)
    rng = check_random_state(random_state)
    n = len(labels)
    n_removed = int(round(fraction * n))
    order = removal_order(scores, labels, most_important=False, random_state=rng)
    n_harmful = int(min((scores[labels] < 0).sum(), n_removed, round(max_harmful * n)))
    harmful = order[:n_harmful]
    rest = np.setdiff1d(np.arange(n), harmful)
    classes = np.unique(strata)
    taken = np.array([(strata[harmful] == c).sum() for c in classes])
    available = np.array([(strata[rest] == c).sum() for c in classes])
    wanted = np.array([fraction * (strata == c).sum() for c in classes]) - taken
    counts = _largest_remainders(n_removed - n_harmful, np.clip(wanted, 0, None), available)
    drawn = [rng.permutation(rest[strata[rest] == c])[:k] for c, k in zip(classes, counts)]
    return np.sort(np.concatenate([harmful, *drawn]).astype(np.int64))


def _largest_remainders(total, weights, caps):
    """Integers summing to ``total`` in proportion to ``weights``, each at most its cap.

    Shares a capped entry cannot take go to the others in proportion to
    their room (zero weights everywhere: in proportion to the caps).
    """
    weights = np.asarray(weights, dtype=float)
    caps = np.asarray(caps)
    counts = np.zeros(len(caps), dtype=int)
    while counts.sum() < total:
        room = caps - counts
        w = np.where(room > 0, weights if weights[room > 0].sum() > 0 else room, 0.0)
        share = (total - counts.sum()) * w / w.sum()
        add = np.minimum(np.floor(share).astype(int), room)
        left = total - counts.sum() - add.sum()
        for i in np.argsort(-(share - np.floor(share)))[:max(left, 0)]:
            if add[i] < room[i]:
                add[i] += 1
        if not add.any():  # every share below one and its remainder at a cap
            add[np.argmax(np.where(room > 0, w, -1))] = 1
        counts += add
    return counts


def _class_members(strata):
    """Indices of the points of each class of ``strata``, classes in sorted order."""
    return [np.flatnonzero(strata == value) for value in np.unique(strata)]


def _random_removal(n, fraction, strata, seed):
    """The random-removal baseline: as many points as :func:`points_to_remove`
    removes, at random (of every class, with ``strata``)."""
    rng = np.random.RandomState(seed)
    if strata is None:
        return rng.permutation(n)[: int(round(fraction * n))]
    return np.concatenate([rng.permutation(members)[: int(round(fraction * len(members)))]
                           for members in _class_members(strata)])
