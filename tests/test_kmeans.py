"""The engine's K-Means: partitions, quality against full Lloyd and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from skggda._engine._assign import CenterIndex
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


@pytest.mark.parametrize("total,weights,caps,expected", [
    (10, [1, 1], [5, 5], [5, 5]),
    (7, [100, 1, 1], [100, 1, 1], [5, 1, 1]),
    (3, [1, 1, 1], [1, 1, 1], [1, 1, 1]),
    (10, [0, 0, 5], [3, 3, 100], [1, 1, 8]),
    (9, [1, 0, 0], [3, 3, 3], [3, 3, 3]),  # the capped share flows to the others
])
def test_allocate_proportionally(total, weights, caps, expected):
    assert allocate_proportionally(total, weights, caps) == expected


def test_allocate_proportionally_respects_caps_at_random():
    rng = np.random.RandomState(0)
    for _ in range(2000):
        n = rng.randint(1, 30)
        caps = rng.randint(1, 40, n) * (rng.rand(n) < 0.7) + 1
        weights = rng.exponential(size=n) * (rng.rand(n) < 0.8)
        total = rng.randint(n, caps.sum() + 1)
        shares = np.array(allocate_proportionally(total, weights, caps))
        assert shares.sum() == total and (shares >= 1).all() and (shares <= caps).all()


def test_concentrated_features_do_not_starve_the_spread_out_points():
    """Most points nearly identical (well-classified samples' tiny gradients)."""
    rng = np.random.RandomState(0)
    spread = rng.normal(size=(1000, 6)) * 3
    X = torch.as_tensor(np.r_[rng.normal(size=(3000, 6)) * 0.01, spread].astype(np.float32))
    flat = kmeans(X, 200, algorithm="lloyd", seed=0)
    coarse_to_fine = kmeans(X, 200, algorithm="hierarchical", seed=0)
    assert coarse_to_fine.inertia <= 1.15 * flat.inertia
    assert (torch.bincount(coarse_to_fine.labels, minlength=200) > 0).all()


def test_too_many_clusters_is_an_error():
    with pytest.raises(ValueError, match="n_samples=5 should be >= n_clusters=6"):
        kmeans(torch.zeros(5, 2), 6)


def test_center_index_above_256_centers_agrees_with_brute_force():
    # Above 256 centers assignments go through an approximate index of
    # candidate cells; it must still find the brute-force nearest center for
    # nearly every point (the fit's own points and new ones alike), and the
    # distance it reports must be the distance to the center it names.
    X = blobs(n=4000)
    result = kmeans(X, 400, seed=0)
    index = CenterIndex.build(result.centers, X, result.labels, seed=0)
    assert not index.exact
    for points in (X, blobs(n=2000, seed=0) + 0.3 * torch.randn(2000, 8)):
        labels, sq_distances = index.assign(points)
        brute, _ = nearest_center(points, result.centers, squared=True)
        assert (labels == brute).float().mean() >= 0.99
        named = ((points - result.centers[labels]) ** 2).sum(1)
        torch.testing.assert_close(sq_distances, named, rtol=1e-4, atol=1e-4)
