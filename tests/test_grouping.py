"""Groupers produce partitions: every point in exactly one non-empty group."""

from __future__ import annotations

import numpy as np
import pytest

from skggda import RandomGrouper


@pytest.mark.parametrize("n,group_size", [(100, 1), (100, 7), (100, 64), (5, 64), (1000, 256)])
def test_random_groups_are_a_balanced_partition(n, group_size):
    labels = RandomGrouper(group_size=group_size, random_state=0).fit_predict(np.zeros((n, 2)))
    k = int(np.ceil(n / group_size))
    assert labels.shape == (n,)
    assert set(np.unique(labels)) == set(range(k))
    sizes = np.bincount(labels)
    assert sizes.max() - sizes.min() <= 1
    assert sizes.max() <= group_size


def test_n_groups_wins_over_group_size():
    grouper = RandomGrouper(group_size=2, n_groups=4, random_state=0).fit(np.zeros((10, 1)))
    assert grouper.n_groups_ == 4
    assert np.bincount(grouper.labels_).tolist() == [3, 3, 2, 2]


def test_more_groups_than_samples_is_an_error():
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_groups=5"):
        RandomGrouper(n_groups=5).fit(np.zeros((3, 1)))


def test_random_groups_are_deterministic_given_random_state():
    X = np.zeros((50, 2))
    a = RandomGrouper(group_size=5, random_state=1).fit_predict(X)
    b = RandomGrouper(group_size=5, random_state=1).fit_predict(X)
    c = RandomGrouper(group_size=5, random_state=2).fit_predict(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_image_arrays_are_accepted():
    grouper = RandomGrouper(group_size=3, random_state=0).fit(np.zeros((9, 1, 4, 4)))
    assert grouper.n_groups_ == 3
