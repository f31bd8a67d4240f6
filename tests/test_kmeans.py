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


# -- whitening, the index's pieces and empty-cluster repair, value by value ---------------
# (mutation testing: benchmarks/TESTING.md)

from skggda._engine._assign import (  # noqa: E402
    Whitening, _calibrated_probes, anchors_of, repair_empty)


def test_whitening_standardises_and_keeps_the_span():
    # column 0 varies, column 1 is constant, column 2 is twice column 0: after
    # standardising, one direction, (1, 0, 1) / sqrt(2), spans the rows
    t = torch.arange(4, dtype=torch.float64)
    features = torch.stack([t, torch.full_like(t, 5.0), 2 * t], dim=1)
    w = Whitening.fit(features)
    np.testing.assert_allclose(w.mean, [1.5, 5.0, 3.0], rtol=1e-12)
    sd = np.sqrt(1.25)  # population standard deviation of 0, 1, 2, 3
    np.testing.assert_allclose(w.scale, [sd, 1.0, 2 * sd], rtol=1e-12)  # constant: 1
    assert w.basis.shape == (3, 1)
    np.testing.assert_allclose(np.abs(w.basis[:, 0]), [2 ** -0.5, 0, 2 ** -0.5], atol=1e-12)
    coordinates, residual = w.transform(features)
    standard = ((t - 1.5) / sd).numpy()
    np.testing.assert_allclose(np.abs(coordinates[:, 0].numpy()), np.abs(standard) * 2 ** 0.5,
                               rtol=1e-12)
    np.testing.assert_allclose(residual.numpy(), 0, atol=1e-12)  # in the span
    np.testing.assert_allclose(w.inverse(coordinates.numpy()), features.numpy(), atol=1e-12)
    # outside the span: one unit along the constant column, 2 along column 0 alone
    # (standardised (2, 1, 0)), and 3 units along the constant column alone
    off = torch.tensor([[1.5 + 2 * sd, 6.0, 3.0], [1.5, 8.0, 3.0]], dtype=torch.float64)
    coordinates, residual = w.transform(off)
    np.testing.assert_allclose(coordinates.abs().numpy(), [[2 ** 0.5], [0]], atol=1e-12)
    np.testing.assert_allclose(residual.numpy(), [1 + 4 - 2, 9], rtol=1e-12)


@pytest.mark.parametrize("ratio,rank", [(1e-6, 2), (1e-10, 1)])
def test_whitening_drops_directions_below_1e8_of_the_largest(ratio, rank):
    # two standardised columns with correlation rho have eigenvalues n (1 +/- rho)
    n = 8
    a = torch.tensor([-1.0, 1.0] * (n // 2), dtype=torch.float64)
    b = torch.tensor([-1.0, -1.0, 1.0, 1.0] * (n // 4), dtype=torch.float64)  # orthogonal to a
    rho = (1 - ratio) / (1 + ratio)  # smallest / largest eigenvalue = ratio
    features = torch.stack([a, rho * a + (1 - rho ** 2) ** 0.5 * b], dim=1)
    assert Whitening.fit(features).basis.shape == (2, rank)


def test_whitening_rank_is_detected_in_float64_for_float32_features():
    # 20 float32 columns mixing 3: a float32 Gram matrix would keep rounding noise
    # (about 1e-7 of the largest eigenvalue) as extra directions
    rng = np.random.RandomState(0)
    features = (rng.normal(size=(500, 3)) @ rng.normal(size=(3, 20))).astype(np.float32)
    assert Whitening.fit(torch.as_tensor(features)).basis.shape == (20, 3)


def test_whitening_of_constant_features_is_one_zero_coordinate():
    w = Whitening.fit(torch.full((5, 3), 2.0))
    assert w.basis.shape == (3, 1)
    coordinates, residual = w.transform(torch.full((4, 3), 2.0))
    assert torch.equal(coordinates, torch.zeros(4, 1)) and torch.equal(residual, torch.zeros(4))


def test_exact_center_index_reports_squared_distances():
    rng = torch.Generator().manual_seed(0)
    X = torch.randn(50, 2, generator=rng, dtype=torch.float64)
    for centers in (torch.randn(6, 2, generator=rng, dtype=torch.float64),  # brute force
                    torch.randn(6, 1, generator=rng, dtype=torch.float64)):  # binary search
        points = X[:, :centers.shape[1]]
        labels, sq_distances = CenterIndex(centers).assign(points)
        brute = torch.cdist(points, centers) ** 2
        assert torch.equal(labels, brute.argmin(1))
        torch.testing.assert_close(sq_distances, brute.min(1).values, rtol=1e-10, atol=1e-12)


def _line_index(rank, n_far):
    """An index by hand on a line: 20 cells with means at 10c + 1, each listing
    its own center and one far center; the held-out points, at 1, find their
    nearest center (at 0) in the cell ranked ``rank`` by distance, so probing
    ``rank + 1`` cells or more finds it. ``n_far`` centers far away are in no list."""
    m = 20
    means = torch.arange(m, dtype=torch.float64)[:, None] * 10 + 1
    order = torch.argsort((means[:, 0] - 1).abs(), stable=True)  # cells by distance to 1
    own = means[:, 0] + 3.0  # 3 from its mean, 2 or more from the points...
    own[order[rank]] = 0.0  # ...but for this cell's center: 1 from the points
    far = 1e6 + torch.arange(n_far, dtype=torch.float64)
    centers = torch.cat([own, far])[:, None]
    candidates = [torch.tensor([c, m + c % n_far]) for c in range(m)]
    return centers, means, candidates, torch.ones(1000, 1, dtype=torch.float64)


@pytest.mark.parametrize("rank,n_far,expected", [
    # the search probes 2, 3, 4, 6, 9, 13, ... cells while 20 cells + 2 candidates
    # per probed cell cost less than half the k centers (k = 20 + n_far)
    (2, 60, 3),
    (4, 60, 6),
    (8, 60, 9),
    (10, 60, None),  # 13 probes would cost 46 of k / 2 = 40: compare with every center
    (8, 56, None),   # 9 probes cost 38, not less than k / 2 = 38
])
def test_calibration_probes_the_fewest_cells_worth_probing(rank, n_far, expected):
    centers, means, candidates, held_out = _line_index(rank, n_far)
    assert _calibrated_probes(centers, means, candidates, held_out) == expected


def test_center_index_state_round_trip_and_batches():
    centers, means, candidates, _ = _line_index(4, 60)
    index = CenterIndex(centers, means, candidates, n_probe=6)
    state = index.state()
    assert len(state["offsets"]) == len(means) + 1
    back = CenterIndex.from_state(centers, state)
    assert back.n_probe == 6 and not back.exact
    for key, value in back.state().items():
        np.testing.assert_array_equal(value, state[key])
    older = {key: value for key, value in state.items() if key != "n_probe"}
    assert CenterIndex.from_state(centers, older).n_probe == 2  # saved before calibration
    # each point takes the nearest candidate of its 6 nearest cells: from 100,
    # cells 7 to 12 (means 71 to 121), whose own centers 74 to 124 include 104;
    # from 0 and -5, cells 0 to 5, where cell 4 lists the center at 0
    labels, sq_distances = index.assign(torch.tensor([[100.0], [0.0], [-5.0]],
                                                     dtype=torch.float64))
    assert labels.tolist() == [10, 4, 4] and sq_distances.tolist() == [16.0, 0.0, 25.0]
    X = torch.linspace(-5, 200, 300, dtype=torch.float64)[:, None]
    labels, sq_distances = index.assign(X)
    assert sq_distances.dtype == torch.float64
    small_batches = index.assign(X, batch_size=7)
    assert torch.equal(small_batches[0], labels) and torch.equal(small_batches[1], sq_distances)


def test_center_index_built_on_wide_centers_has_one_list_per_cell():
    centers = blobs(n=300, d=20, centers=30)  # 300 centers, 18 cells, 20 features
    index = CenterIndex.build(centers, seed=0)
    assert len(index.candidates) == index.cell_means.shape[0] == 18


def test_anchors_are_each_clusters_closest_member():
    labels = np.array([1, 0, 1, 0, 2])
    sq_distances = np.array([5.0, 3.0, 1.0, 4.0, 0.0])
    np.testing.assert_array_equal(anchors_of(labels, sq_distances, 3), [1, 2, 4])


def test_repair_empty_moves_anchors_until_no_cluster_is_empty():
    # clusters 2 and 3 are empty; their anchors (rows 3 and 4) empty cluster 1,
    # whose anchor (row 2) then leaves cluster 0
    labels = np.array([0, 0, 0, 1, 1])
    counts = np.array([3, 2, 0, 0])
    moved = repair_empty(labels, counts, anchors=np.array([0, 2, 3, 4]))
    assert moved == [(3, 1), (4, 1), (2, 0)]
    np.testing.assert_array_equal(labels, [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(counts, [2, 1, 1, 1])
    assert repair_empty(labels, counts, np.array([0, 2, 3, 4])) == []


def test_gram64_accumulates_every_row_once_chunk_by_chunk():
    from skggda._engine._assign import _gram64

    rows = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    expected = rows.double().T @ rows.double()
    for chunk in (3, 4, 10, 64):
        gram = _gram64(rows, chunk=chunk)
        assert gram.dtype == torch.float64
        torch.testing.assert_close(gram, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,d,exact", [(100, 2, True), (256, 3, True), (300, 1, True),
                                       (300, 2, False)])
def test_center_index_compares_with_every_center_up_to_256_or_in_one_dimension(k, d, exact):
    centers = torch.randn(k, d, generator=torch.Generator().manual_seed(0))
    assert CenterIndex.build(centers, seed=0).exact is exact


def test_center_index_cells_follow_the_seed():
    centers = blobs(n=300, d=4, centers=30)
    a, b, c = (CenterIndex.build(centers, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.cell_means, b.cell_means)
    assert not torch.equal(a.cell_means, c.cell_means)


def test_calibrated_index_finds_the_exact_center_of_new_points():
    # clustered data where two probed cells are not enough: the build
    # calibrates on held-out fit points and probes 3; 99.9% of new points from
    # the same distribution then find their exact nearest center (measured:
    # all 3,000 with 3 cells probed, 99.6% with 2). A worse order of probed
    # cells still reaches 99.9%, by probing more: the count is checked too
    data = blobs(n=6000, d=4, centers=400)
    X, new = data[:3000], data[3000:]
    result = kmeans(X, 300, seed=0)
    index = CenterIndex.build(result.centers, X, result.labels, seed=0)
    assert not index.exact and index.n_probe == 3
    exact, _ = nearest_center(new, result.centers, squared=True)
    assert (index.assign(new)[0] == exact).float().mean() >= 0.999


def test_calibrated_index_finds_the_nearest_center_of_points_with_zero_coordinates():
    # exact zeros are common in features (ReLU activations, one-hot columns)
    data = blobs(n=6000, d=4, centers=400)
    X, new = data[:3000], data[3000:].clone()
    new[:, 1] = 0.0
    result = kmeans(X, 300, seed=0)
    index = CenterIndex.build(result.centers, X, result.labels, seed=0)
    exact, _ = nearest_center(new, result.centers, squared=True)
    assert (index.assign(new)[0] == exact).float().mean() >= 0.99  # measured: 0.998


def test_an_unknown_algorithm_is_refused():
    X = blobs(n=50)
    with pytest.raises(ValueError, match="algorithm='elkan'"):
        kmeans(X, 4, algorithm="elkan", seed=0)
