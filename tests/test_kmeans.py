"""The engine's K-Means: partitions, quality against full Lloyd and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from skggda._engine._kmeans import allocate_proportionally, kmeans, nearest_center


def blobs(n=2000, d=8, centers=40, seed=0):
    rng = np.random.RandomState(seed)
    means = rng.normal(scale=4, size=(centers, d))
    X = means[rng.randint(centers, size=n)] + rng.normal(size=(n, d))
    return torch.as_tensor(((X - X.mean(0)) / X.std(0)).astype(np.float32))


@pytest.mark.parametrize("algorithm", ["lloyd", "hierarchical"])
@pytest.mark.parametrize("k", [1, 7, 160, 700])
def test_exactly_k_non_empty_clusters(algorithm, k):
    X = blobs()
    result = kmeans(X, k, algorithm=algorithm, seed=0)
    counts = torch.bincount(result.labels, minlength=k)
    assert result.labels.shape == (2000,)
    assert int(result.labels.max()) == k - 1
    assert (counts > 0).all()
    assert result.centers.shape == (k, 8)


def test_duplicate_points_still_give_k_clusters():
    X = torch.zeros(50, 3)
    X[:5] = 1.0
    result = kmeans(X, 10, seed=0)
    assert (torch.bincount(result.labels, minlength=10) > 0).all()


@pytest.mark.parametrize("k", [20, 60])
def test_lloyd_inertia_matches_scikit_learn(k):
    X = blobs()
    ours = np.mean([kmeans(X, k, algorithm="lloyd", seed=s).inertia for s in range(5)])
    theirs = np.mean([KMeans(k, n_init=1, random_state=s).fit(X.numpy()).inertia_
                      for s in range(5)])
    assert ours <= 1.1 * theirs


@pytest.mark.parametrize("k", [64, 250])
def test_hierarchical_inertia_within_15_percent_of_lloyd(k):
    X = blobs(n=4000)
    flat = kmeans(X, k, algorithm="lloyd", seed=0).inertia
    coarse_to_fine = kmeans(X, k, algorithm="hierarchical", seed=0).inertia
    assert coarse_to_fine <= 1.15 * flat


def test_inertia_is_sum_of_squared_distances():
    X = blobs(n=300)
    result = kmeans(X, 12, seed=0)
    expected = ((X - result.centers[result.labels]) ** 2).sum()
    assert result.inertia == pytest.approx(float(expected), rel=1e-4)


def test_seed_determines_the_result():
    X = blobs(n=500)
    a, b = kmeans(X, 30, seed=1), kmeans(X, 30, seed=1)
    assert torch.equal(a.labels, b.labels)


def test_nearest_center_agrees_with_brute_force():
    X, C = torch.randn(100, 4), torch.randn(7, 4)
    labels, dist = nearest_center(X, C, batch_size=13)
    brute = torch.cdist(X, C)
    assert torch.equal(labels, brute.argmin(1))
    torch.testing.assert_close(dist, brute.min(1).values, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("total,sizes", [(10, [5, 5]), (7, [100, 1, 1]), (3, [1, 1, 1]),
                                         (50, [10, 20, 30])])
def test_allocate_proportionally(total, sizes):
    shares = allocate_proportionally(total, sizes)
    assert sum(shares) == total
    assert all(1 <= s <= n for s, n in zip(shares, sizes))


def test_too_many_clusters_is_an_error():
    with pytest.raises(ValueError, match="n_samples=5 should be >= n_clusters=6"):
        kmeans(torch.zeros(5, 2), 6)
