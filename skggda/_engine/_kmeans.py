"""K-Means that scales with the number of clusters, in torch.

GGDA groups points with K-Means at ``k = n / group_size`` clusters: at group
size 4 on 60,000 points that is 15,000 clusters, where plain Lloyd iterations
cost ``n k d`` each. :func:`kmeans` therefore offers:

* ``"lloyd"``: k-means++ seeding and Lloyd iterations over all clusters;
* ``"hierarchical"`` (coarse to fine): Lloyd with ``k1 = ceil(sqrt(k))``
  coarse clusters, then, inside every coarse cluster, Lloyd with a share of
  the ``k`` clusters proportional to its size. One iteration costs about
  ``2 n d sqrt(k)`` instead of ``n d k``.

The per-cluster problems of the fine level are solved together as padded
batches (one batched matrix product per iteration), not one by one. Every
problem stops on its own when its squared center shift falls below
``tol`` times the mean feature variance (scikit-learn's criterion), or after
``max_iter`` iterations. Empty clusters are re-seeded at the points farthest
from their centers, and a last repair guarantees ``k`` non-empty clusters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._random import cpu_generator, draw

# Elements of one (segments, points, clusters) distance block held at once
# (32 MiB of float32; a few such blocks are alive during an assignment).
_DISTANCE_BUDGET = 1 << 23
# Up to this many clusters "auto" runs plain Lloyd.
_FLAT_MAX_CLUSTERS = 128
# The coarse level of "hierarchical" is fitted on this many points per cluster.
_COARSE_SAMPLE = 32
# After "hierarchical", _POLISH_ITER global Lloyd iterations run when together
# they cost at most this many operations (n k (d + 8) each: the distance
# products plus the per-element work on the n x k distances): small problems only.
_POLISH_BUDGET = 2e9
_POLISH_ITER = 10
# Regions are cut again at most this many times.
_MAX_DEPTH = 3
# At most this many problems share one padded batch (each batch stops when
# all its problems have converged).
_MAX_PROBLEMS_PER_BATCH = 32
# k-means++ seeds from at most this many points per cluster...
_SEED_SAMPLE_PER_CLUSTER = 32
# ... and only while its passes cost at most this many multiply-adds.
_SEED_BUDGET = 2e9


@dataclass
class KMeansResult:
    """Centers ``(k, d)``, labels ``(n,)`` in ``0..k-1``, inertia and iterations."""

    centers: torch.Tensor
    labels: torch.Tensor
    inertia: float
    n_iter: int


def kmeans(X, n_clusters, *, algorithm="auto", max_iter=60, tol=1e-3, seed=0) -> KMeansResult:
    """Cluster the rows of ``X`` into exactly ``n_clusters`` non-empty clusters.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features)
        On the device where the work should happen.
    n_clusters : int
        ``1 <= n_clusters <= n_samples``.
    algorithm : {"auto", "lloyd", "hierarchical"}
        ``"auto"`` is Lloyd up to 128 clusters, hierarchical above. One-column
        data always takes :func:`kmeans_1d` (sorted Lloyd, exact assignments).
    max_iter : int
        Maximum Lloyd iterations (per level).
    tol : float
        Relative tolerance on the squared center shift.
    seed : int

    Returns
    -------
    KMeansResult
    """
    if algorithm not in ("auto", "lloyd", "hierarchical"):
        raise ValueError(f"algorithm={algorithm!r}: use 'auto', 'lloyd' or 'hierarchical'.")
    n = X.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_samples={n} should be >= n_clusters={n_clusters} >= 1.")
    if X.shape[1] == 1:
        return kmeans_1d(X, n_clusters, max_iter=max_iter, tol=tol)
    if algorithm == "auto":
        algorithm = "lloyd" if n_clusters <= _FLAT_MAX_CLUSTERS else "hierarchical"
    # every draw is made on the CPU and moved: a seed gives the same clusters on
    # every device (CUDA's generators draw other numbers than the CPU's)
    generator = cpu_generator(seed)
    if algorithm == "lloyd":
        labels, n_iter = _segmented_lloyd(
            X, torch.zeros(n, dtype=torch.long, device=X.device), [n_clusters],
            max_iter, tol, generator,
        )
    else:
        labels, n_iter = _hierarchical(X, n_clusters, max_iter, tol, generator)
        if n * n_clusters * (X.shape[1] + 8) * _POLISH_ITER <= _POLISH_BUDGET:
            # region boundaries cost some inertia; where a global Lloyd
            # iteration is cheap, a few of them recover it
            (labels,), polish_iter = _padded_lloyd(
                X, [torch.arange(n, device=X.device)], [n_clusters], _POLISH_ITER, tol,
                generator, init=_centers(X, labels, n_clusters)[None],
            )
            n_iter += polish_iter
    centers = _centers(X, labels, n_clusters)
    inertia = float(((X - centers[labels]) ** 2).sum())
    return KMeansResult(centers, labels, inertia, n_iter)


def kmeans_1d(X, n_clusters, *, max_iter=60, tol=1e-3) -> KMeansResult:
    """K-Means of one-column data: Lloyd on the sorted values, exact at every step.

    In one dimension every cluster is an interval of the sorted values, so
    the nearest center of a point is found by a binary search among the
    midpoints of consecutive centers (``O(n log k)`` per iteration instead of
    ``O(n k)``). The centers start as the means of ``k`` equal-count runs of
    the sorted values (no seed needed). Grad-K-Means features of a binary
    classifier with a linear softmax head are one-dimensional.
    """
    x = X[:, 0]
    n = x.shape[0]
    values, order = torch.sort(x)
    centers = _companded_quantiles(values, n_clusters)
    threshold = tol * float(values.var(unbiased=False)) if n > 1 else 0.0
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        labels = interval_labels(values, centers)
        new = torch.where(torch.bincount(labels, minlength=n_clusters) > 0,
                          _run_means(values, labels, n_clusters), centers)
        shift = float(((new - centers) ** 2).sum())
        centers = torch.sort(new).values
        if shift <= threshold:
            break
    labels = interval_labels(values, centers)
    dist = (values - centers[labels]) ** 2
    labels = _repair(labels, dist, n_clusters)
    out = torch.empty_like(labels)
    out[order] = labels
    centers = _centers(X, out, n_clusters)
    inertia = float(((X - centers[out]) ** 2).sum())
    return KMeansResult(centers, out, inertia, n_iter)


def _companded_quantiles(values, k):
    """``k`` ascending starting centers at equal steps of the cumulative density^(1/3).

    The density is read off ``B`` equal-count bins of the sorted values: a
    bin of width ``w`` holding a share ``c`` of the points carries
    ``c^(1/3) w^(2/3)`` of the integral. Bins of zero width (repeated
    values) carry a small share of their count so that atoms get centers.
    """
    n = values.shape[0]
    n_bins = min(n, max(8 * k, 1024))
    edges = torch.arange(n_bins + 1, device=values.device) * (n - 1) // n_bins
    lower, upper = values[edges[:-1]].double(), values[edges[1:]].double()
    share = 1.0 / n_bins
    width = upper - lower
    mass = share ** (1 / 3) * width ** (2 / 3)
    mass = mass + 1e-3 * share * float(mass.sum().clamp_min(1e-300))
    cumulative = torch.cat([mass.new_zeros(1), torch.cumsum(mass, 0)])
    targets = (torch.arange(k, device=values.device, dtype=torch.float64) + 0.5) / k
    targets = targets * cumulative[-1]
    bin_index = torch.searchsorted(cumulative, targets).clamp(1, n_bins) - 1
    within = (targets - cumulative[bin_index]) / mass[bin_index]
    centers = lower[bin_index] + within.clamp(0, 1) * width[bin_index]
    return centers.to(values.dtype)


def interval_labels(values, centers):
    """Nearest of the ascending ``centers`` for every value (binary search on midpoints)."""
    midpoints = (centers[1:] + centers[:-1]) / 2
    return torch.searchsorted(midpoints.contiguous(), values.contiguous())


def _run_means(values, labels, k):
    sums = torch.zeros(k, dtype=values.dtype, device=values.device).index_add_(0, labels, values)
    counts = torch.bincount(labels, minlength=k).clamp_min(1).to(values.dtype)
    return sums / counts


def _hierarchical(X, k, max_iter, tol, generator, depth=0):
    n = X.shape[0]
    k1 = min(math.ceil(math.sqrt(k)), k)
    # The coarse level only has to cut the space into regions: its centers are
    # fitted on a subsample, then every point goes to its nearest region.
    sample = torch.randperm(n, generator=generator)[: _COARSE_SAMPLE * k1].to(X.device)
    coarse_fit, n_iter = _segmented_lloyd(
        X[sample], torch.zeros(len(sample), dtype=torch.long, device=X.device), [k1],
        max_iter, tol, generator,
    )
    region, _ = nearest_center(X, _centers(X[sample], coarse_fit, k1), squared=True)
    _, region = torch.unique(region, return_inverse=True)  # drop regions left empty
    n_regions = int(region.max()) + 1
    sizes = torch.bincount(region, minlength=n_regions).cpu().numpy()
    # Clusters go where the inertia is (as Lloyd would put them), not where the
    # points are: a dense, tight region must not soak up most of the clusters.
    # With k_r clusters a region's inertia falls like I_r k_r^(-2/d), so the
    # total is smallest for k_r proportional to I_r^(d / (d + 2)).
    d = X.shape[1]
    weights = _region_inertia(X, region, n_regions) ** (d / (d + 2))
    shares = np.asarray(allocate_proportionally(k, weights, sizes))
    labels = torch.empty(n, dtype=torch.long, device=X.device)
    flat = np.ones(n_regions, dtype=bool)
    if depth < _MAX_DEPTH:
        # a region that still needs many more clusters than a fine problem
        # usually gets is cut into regions of its own
        flat = shares <= max(_FLAT_MAX_CLUSTERS, 2 * k1)
    offsets = np.concatenate([[0], np.cumsum(shares)])
    for r in np.flatnonzero(~flat):
        members = torch.nonzero(region == r).squeeze(1)
        sub, sub_iter = _hierarchical(X[members], int(shares[r]), max_iter, tol, generator,
                                      depth + 1)
        labels[members] = sub + int(offsets[r])
        n_iter = max(n_iter, sub_iter)
    if flat.any():
        keep = torch.as_tensor(flat, device=X.device)[region]
        # renumber the flat regions 0..m-1 for the batched solver
        flat_ids = np.cumsum(flat) - 1
        segment = torch.as_tensor(flat_ids, device=X.device)[region[keep]]
        fine, fine_iter = _segmented_lloyd(X[keep], segment, shares[flat].tolist(), max_iter,
                                           tol, generator)
        starts = torch.as_tensor(offsets[:-1][flat], device=X.device)
        first = torch.as_tensor(np.concatenate([[0], np.cumsum(shares[flat])[:-1]]),
                                device=X.device)
        labels[keep] = fine - first[segment] + starts[segment]
        n_iter = max(n_iter, fine_iter)
    return labels, n_iter


def _region_inertia(X, region, n_regions):
    """Sum of squared distances to the region means, per region."""
    d = X.shape[1]
    sums = torch.zeros(n_regions, d, dtype=X.dtype, device=X.device).index_add_(0, region, X)
    counts = torch.bincount(region, minlength=n_regions).to(X.dtype)
    squares = torch.zeros(n_regions, dtype=X.dtype, device=X.device).index_add_(
        0, region, (X * X).sum(1))
    inertia = squares - (sums * sums).sum(1) / counts.clamp_min(1)
    return inertia.clamp_min(0).double().cpu().numpy()


def allocate_proportionally(total: int, weights, caps) -> list[int]:
    """Split ``total`` clusters over segments in proportion to ``weights``.

    Every segment gets at least one cluster and at most ``caps`` (its number
    of points); the share a capped segment cannot take goes to the others
    (water-filling), and rounding uses the largest remainders.
    """
    weights = np.maximum(np.asarray(weights, dtype=float), 0.0)
    caps = np.asarray(caps, dtype=np.int64)
    if not len(caps) <= total <= caps.sum():
        raise ValueError(f"Cannot split {total} clusters over {len(caps)} segments of "
                         f"{int(caps.sum())} points.")
    room = (caps - 1).astype(float)
    extra = np.zeros(len(caps))
    remaining, free = float(total - len(caps)), room > 0
    while remaining > 1e-9 and free.any():
        w = np.where(free, weights, 0.0)
        w = np.where(free, 1.0, 0.0) if w.sum() == 0 else w
        step = remaining * w / w.sum()
        over = free & (extra + step >= room)
        if not over.any():
            extra += step
            break
        remaining -= (room[over] - extra[over]).sum()
        extra[over] = room[over]
        free &= ~over
    shares = np.floor(extra).astype(np.int64)
    leftover = total - len(caps) - int(shares.sum())
    order = np.argsort(-(extra - shares) + (shares >= room) * 2.0, kind="stable")
    shares[order[:leftover]] += 1
    return (1 + shares).tolist()


def _segmented_lloyd(X, segment, n_clusters, max_iter, tol, generator):
    """Lloyd inside every segment; returns global labels (clusters numbered by segment)."""
    offsets = np.concatenate([[0], np.cumsum(n_clusters)])
    members = _members_by_segment(segment, len(n_clusters))
    labels = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    iterations = 0
    for batch in _segment_batches(members, n_clusters):
        points = [members[s] for s in batch]
        local, n_iter = _padded_lloyd(X, points, [n_clusters[s] for s in batch], max_iter,
                                      tol, generator)
        iterations = max(iterations, n_iter)
        for s, idx, lab in zip(batch, points, local):
            labels[idx] = lab + int(offsets[s])
    return labels, iterations


def _members_by_segment(segment, n_segments):
    order = torch.argsort(segment, stable=True)
    counts = torch.bincount(segment, minlength=n_segments).tolist()
    return list(torch.split(order, counts))


def _segment_batches(members, n_clusters):
    """Group segments of similar size so padding wastes little and memory stays bounded."""
    order = sorted(range(len(members)), key=lambda s: -len(members[s]))
    batch = []
    for s in order:
        if batch:
            largest = len(members[batch[0]])
            k = max(n_clusters[t] for t in batch + [s])
            if (
                (len(batch) + 1) * largest * k > _DISTANCE_BUDGET
                or len(members[s]) < largest / 2
                or len(batch) == _MAX_PROBLEMS_PER_BATCH
            ):
                yield batch
                batch = []
        batch.append(s)
    if batch:
        yield batch


@dataclass
class _Problems:
    """Several K-Means problems padded to ``m`` points and ``k_max`` clusters."""

    data: torch.Tensor  # (S, m, d)
    sq_norms: torch.Tensor  # (S, m)
    valid: torch.Tensor  # (S, m) real points
    centers_valid: torch.Tensor  # (S, k_max) real clusters

    @classmethod
    def gather(cls, X, points, ks):
        device = X.device
        m, k_max = max(len(p) for p in points), max(ks)
        index = torch.stack([
            torch.nn.functional.pad(p, (0, m - len(p)), value=int(p[0])) for p in points
        ])
        sizes = torch.tensor([len(p) for p in points], device=device)
        data = X[index]
        return cls(
            data,
            (data * data).sum(-1),
            torch.arange(m, device=device)[None, :] < sizes[:, None],
            torch.arange(k_max, device=device)[None, :] < torch.tensor(ks, device=device)[:, None],
        )

    def select(self, problems):
        """Only the problems ``problems`` (a tensor of indices)."""
        return _Problems(self.data[problems], self.sq_norms[problems], self.valid[problems],
                         self.centers_valid[problems])

    def subset(self, index):
        """The same problems restricted to points ``index`` of shape ``(S, m')``."""
        return _Problems(
            _take(self.data, index), _take(self.sq_norms, index), _take(self.valid, index),
            self.centers_valid,
        )

    def thresholds(self, tol):
        """``tol`` times each problem's mean feature variance (scikit-learn's criterion)."""
        w = self.valid.to(self.data.dtype)[..., None]
        count = w.sum(1)
        mean = (self.data * w).sum(1) / count
        var = (((self.data - mean[:, None]) ** 2) * w).sum(1) / count
        return tol * var.mean(1)


def _padded_lloyd(X, points, ks, max_iter, tol, generator, init=None):
    """Lloyd on several independent problems at once (padded to a common size).

    ``points[s]`` indexes the rows of problem ``s``; ``ks[s]`` its cluster
    count; ``init`` optional starting centers ``(S, k_max, d)``. Returns
    per-problem local labels and the iterations run.
    """
    problems = _Problems.gather(X, points, ks)
    centers = _initial_centers(problems, generator) if init is None else init
    threshold = problems.thresholds(tol)
    # iterate on the problems still moving; converged ones drop out of the batch
    working, index = problems, torch.arange(len(points), device=X.device)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        current = centers[index]
        labels, dist = _assign(working, current)
        new = _update(working, labels, current, dist)
        moving = ((new - current) ** 2).sum((1, 2)) > threshold[index]
        centers[index] = new
        if not moving.any():
            break
        if moving.sum() <= len(index) // 2:
            keep = torch.nonzero(moving).squeeze(1)
            working, index = working.select(keep), index[keep]
    labels, dist = _assign(problems, centers)
    return [_repair(labels[s, : len(p)], dist[s, : len(p)], ks[s])
            for s, p in enumerate(points)], n_iter


def _assign(problems, centers):
    """Nearest valid center of every point and the squared distance; chunked over points."""
    S, m, _ = problems.data.shape
    step = max(1, _DISTANCE_BUDGET // max(1, S * centers.shape[1]))
    c2 = (centers * centers).sum(-1)[:, None, :]
    labels, dist = [], []
    for start in range(0, m, step):
        chunk = slice(start, start + step)
        d2 = problems.sq_norms[:, chunk, None] + c2 - 2 * torch.bmm(
            problems.data[:, chunk], centers.transpose(1, 2))
        d2.masked_fill_(~problems.centers_valid[:, None, :], float("inf"))
        best = d2.min(-1)
        labels.append(best.indices)
        dist.append(best.values.clamp_min_(0))
    return torch.cat(labels, 1), torch.cat(dist, 1)


def _update(problems, labels, centers, dist):
    """Means of the assigned points; empty clusters re-seeded at the farthest points."""
    data, valid = problems.data, problems.valid
    S, m, d = data.shape
    k_max = centers.shape[1]
    flat = labels + torch.arange(S, device=data.device)[:, None] * k_max
    flat = flat.masked_fill(~valid, S * k_max).reshape(-1)  # padding -> a dump bucket
    sums = torch.zeros(S * k_max + 1, d, dtype=data.dtype, device=data.device)
    sums.index_add_(0, flat, data.reshape(S * m, d))
    counts = torch.bincount(flat, minlength=S * k_max + 1)[:-1].view(S, k_max)
    new = sums[:-1].view(S, k_max, d) / counts.clamp_min(1)[..., None].to(data.dtype)
    new = torch.where((counts > 0)[..., None], new, centers)
    empty = (counts == 0) & problems.centers_valid
    for s in torch.nonzero(empty.any(1)).flatten().tolist():
        slots = torch.nonzero(empty[s]).flatten()
        far = dist[s].masked_fill(~valid[s], -1.0).topk(len(slots)).indices
        new[s, slots] = data[s, far]
    return new


def _initial_centers(problems, generator):
    """k-means++ seeding on a subsample when that is cheap, else distinct random points.

    k-means++ makes one pass over its points per center. Seeding from at most
    ``32 k`` points per problem keeps its quality at a fraction of the cost;
    when even that would cost more than a few Lloyd iterations (thousands of
    clusters with a handful of points each) Lloyd starts from random points.
    """
    S, m, d = problems.data.shape
    k_max = problems.centers_valid.shape[1]
    keys = torch.rand(S, m, generator=generator).to(problems.data.device)
    shuffled = keys.masked_fill(~problems.valid, 2.0).argsort(1)  # valid points first
    sample = min(m, _SEED_SAMPLE_PER_CLUSTER * k_max)
    if S * k_max * sample * d > _SEED_BUDGET:
        return _take(problems.data, shuffled[:, :k_max])
    return _kmeans_plus_plus(problems.subset(shuffled[:, :sample]), k_max, generator)


def _take(data, index):
    return data[torch.arange(data.shape[0], device=index.device)[:, None], index]


def _kmeans_plus_plus(problems, k_max, generator):
    """Greedy k-means++ seeding of every padded problem at once.

    As in scikit-learn, each step draws ``2 + log(k)`` candidates with
    probability proportional to the squared distance to the chosen centers
    and keeps the one that lowers the potential most.
    """
    data, valid = problems.data, problems.valid
    S, m, d = data.shape
    trials = 2 + int(math.log(k_max)) if k_max > 1 else 1
    weights = valid.to(data.dtype)
    rows = torch.arange(S, device=data.device)
    centers = torch.empty(S, k_max, d, dtype=data.dtype, device=data.device)
    pick = draw(weights, 1, generator).squeeze(1)
    centers[:, 0] = data[rows, pick]
    closest = _distances_to(problems, centers[:, :1]).squeeze(2)
    for j in range(1, k_max):
        w = closest * weights
        # problems with only duplicate points left fall back to uniform choice
        w = torch.where(w.sum(1, keepdim=True) > 0, w, weights)
        candidates = draw(w, trials, generator, replacement=True)
        d2 = _distances_to(problems, _take(data, candidates))  # (S, m, trials)
        potential = (torch.minimum(closest[:, :, None], d2) * weights[:, :, None]).sum(1)
        best = potential.argmin(1)
        centers[:, j] = data[rows, candidates[rows, best]]
        closest = torch.minimum(closest, d2[rows, :, best])
    return centers


def _distances_to(problems, points):
    """``(S, m, t)`` squared distances from every point to ``t`` points per problem."""
    d2 = (
        problems.sq_norms[:, :, None]
        - 2 * torch.bmm(problems.data, points.transpose(1, 2))
        + (points * points).sum(-1)[:, None, :]
    )
    return d2.clamp_min_(0)


def _repair(labels, dist, k):
    """Make every one of the ``k`` clusters non-empty by moving the farthest points.

    The farthest points of clusters that keep at least one member move, one
    to each empty cluster, all at once (a cluster gives at most ``count - 1``).
    """
    counts = torch.bincount(labels, minlength=k)
    empty = torch.nonzero(counts == 0).flatten()
    if not len(empty):
        return labels
    by_distance = torch.argsort(dist, descending=True, stable=True)
    by_cluster = by_distance[torch.argsort(labels[by_distance], stable=True)]
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(labels)
    rank[by_cluster] = torch.arange(len(labels), device=labels.device) - first[labels[by_cluster]]
    movable = rank < counts[labels] - 1
    chosen = by_distance[movable[by_distance]][: len(empty)]
    labels = labels.clone()
    labels[chosen] = empty
    return labels


def _centers(X, labels, k):
    sums = torch.zeros(k, X.shape[1], dtype=X.dtype, device=X.device).index_add_(0, labels, X)
    counts = torch.bincount(labels, minlength=k).clamp_min(1).to(X.dtype)
    return sums / counts[:, None]


def nearest_center(X, centers, batch_size=4096, squared=False):
    """Index of the nearest center of every row, and the distance to it, in batches.

    Returns
    -------
    labels : Tensor of shape (n,)
    distances : Tensor of shape (n,)
        Euclidean (squared when ``squared=True``).
    """
    labels, distances = [], []
    c2 = (centers * centers).sum(-1)
    for start in range(0, X.shape[0], batch_size):
        x = X[start:start + batch_size]
        best = ((x * x).sum(-1, keepdim=True) - 2 * x @ centers.T + c2).min(1)
        labels.append(best.indices)
        distances.append(best.values.clamp_min_(0))
    dist = torch.cat(distances)
    return torch.cat(labels), dist if squared else dist.sqrt_()


def center_distances(X, centers, batch_size=4096):
    """``(n, k)`` Euclidean distances from every row to every center, in batches."""
    c2 = (centers * centers).sum(-1)
    out = []
    for start in range(0, X.shape[0], batch_size):
        x = X[start:start + batch_size]
        out.append(((x * x).sum(-1, keepdim=True) - 2 * x @ centers.T + c2).clamp_min_(0).sqrt_())
    return torch.cat(out)
