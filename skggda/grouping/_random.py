"""Uniformly random groups: GGDA's baseline grouping."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from .._engine import n_samples
from ..utils._groups import label_dtype
from ._base import BaseGrouper
from ._docs import fill_grouper_doc


@fill_grouper_doc
class RandomGrouper(BaseGrouper):
    """Assign samples to groups uniformly at random.

    Groups are balanced: with ``k`` groups, every group holds
    ``floor(n / k)`` or ``ceil(n / k)`` samples. This is the paper's baseline
    grouping; it costs nothing but groups points regardless of how they affect
    the model, so attribution fidelity drops fastest with group size.

    Parameters
    ----------
    group_size : int, default=64
        %(group_size)s
    n_groups : int, default=None
        Number of groups; when set it wins over ``group_size``.
    random_state : int, RandomState instance or None, default=None
        Controls the random assignment.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        %(labels_)s
    n_groups_ : int
        Number of groups formed.
    fit_time_ : float
        Seconds spent in ``fit``.
    n_features_in_ : int
        Number of features seen during ``fit``.

    See Also
    --------
    skggda.TracInAttributor : Attributes a property to the groups.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda import RandomGrouper
    >>> X = np.zeros((10, 3))
    >>> grouper = RandomGrouper(group_size=4, random_state=0).fit(X)
    >>> grouper.n_groups_
    3
    >>> np.bincount(grouper.labels_).tolist()
    [4, 3, 3]
    """

    def __init__(self, group_size=64, *, n_groups=None, random_state=None):
        self.group_size = group_size
        self.n_groups = n_groups
        self.random_state = random_state

    def _group(self, X, y, n_groups):
        n = n_samples(X)
        # group sizes differ by at most one; shuffling the small-int labels in
        # place costs half of scattering them through a permutation of n
        labels = (np.arange(n) % n_groups).astype(label_dtype(n_groups))
        check_random_state(self.random_state).shuffle(labels)
        return labels
