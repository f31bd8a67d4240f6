"""Assigning many points to many centers: whitening, a center index, repairs.

The K-Means groupers fit their centers on a sample and then assign every
training point in one streaming pass. Three pieces make that pass cheap and
exact enough:

* :class:`Whitening` standardises features and expresses them in an
  orthonormal basis of the span of the fitted sample. Grad-K-Means features
  of a linear softmax head, ``W^T (softmax - onehot)``, lie in a subspace of
  dimension at most the number of classes (one for binary tasks), so 50
  hidden units become one coordinate: distances are unchanged, the work
  shrinks by the ratio of the dimensions.
* :class:`CenterIndex` finds the nearest center through about ``sqrt(k)``
  cells instead of comparing every point with all ``k`` centers.
* :func:`repair_empty` keeps exactly ``k`` non-empty groups.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._kmeans import interval_labels, kmeans, nearest_center

# Directions whose variance is below this fraction of the largest are dropped
# from the basis (float32 rounding noise of structurally low-rank features).
_RANK_TOL = 1e-8
# Up to this many centers the search compares every point with every center.
_INDEX_MIN_CENTERS = 256
# Each point is compared with the candidates of its this-many nearest cells, unless
# calibrated: the first of 2, 3, 4, 6, 9, ... cells for which this share of held-out fit points finds its
# exact nearest center (one point in _HOLD_OUT_EVERY, at most _CALIBRATION_POINTS).
_N_PROBE = 2
_TARGET_AGREEMENT = 0.999
_HOLD_OUT_EVERY = 5
_CALIBRATION_POINTS = 4096


class Whitening:
    """Zero mean, unit variance per feature, then coordinates in the data's span.

    Parameters
    ----------
    mean, scale : ndarray of shape (d,)
    basis : ndarray of shape (d, r)
        Orthonormal columns spanning the whitened sample.
    """

    def __init__(self, mean, scale, basis):
        self.mean, self.scale, self.basis = mean, scale, basis

    @classmethod
    def fit(cls, features: torch.Tensor) -> "Whitening":
        """From sample features ``(m, d)``: their moments and the span of the whitened rows."""
        mean = features.mean(0)
        scale = features.std(0, unbiased=False)
        scale[scale == 0] = 1.0  # constant features stay constant
        eigenvalues, vectors = torch.linalg.eigh(_gram64((features - mean) / scale))
        keep = eigenvalues > _RANK_TOL * eigenvalues.max().clamp_min(1e-300)
        if not keep.any():  # every feature constant: one coordinate, all zero
            keep[-1] = True
        basis = vectors[:, keep].flip(1)  # largest variance first
        return cls(mean.cpu().numpy(), scale.cpu().numpy(),
                   basis.to(features.dtype).cpu().numpy())

    def on(self, device):
        """``(mean, scale, basis)`` as tensors on ``device``, for :meth:`transform`."""
        return tuple(torch.as_tensor(a, device=device) for a in (self.mean, self.scale, self.basis))

    def transform(self, features: torch.Tensor, arrays=None):
        """``(coordinates (n, r), squared residual (n,))``: the part outside the span.

        ``arrays`` is :meth:`on`'s result for ``features``' device (uploaded
        once per pass); without it the arrays are uploaded on every call.
        """
        mean, scale, basis = self.on(features.device) if arrays is None else arrays
        whitened = (features - mean) / scale
        coordinates = whitened @ basis
        residual = ((whitened * whitened).sum(1) - (coordinates * coordinates).sum(1))
        return coordinates, residual.clamp_min_(0)

    def inverse(self, coordinates: np.ndarray) -> np.ndarray:
        """Points given in the basis, back in the original feature space."""
        return coordinates @ self.basis.T * self.scale + self.mean


def _gram64(rows, chunk=1 << 16):
    """``rows^T rows`` accumulated in float64 chunk by chunk (rank detection needs it)."""
    out = torch.zeros(rows.shape[1], rows.shape[1], dtype=torch.float64, device=rows.device)
    for start in range(0, rows.shape[0], chunk):
        block = rows[start:start + chunk].double()
        out += block.T @ block
    return out


class CenterIndex:
    """Nearest-center search through about ``sqrt(k)`` cells of candidate centers.

    The ``k`` centers are clustered into ``m = ceil(sqrt(k))`` cells. Each
    cell lists as candidates its own centers and, when the points the centers
    were fitted on are given, every center that one of the cell's points was
    assigned to: centers just across a cell border are candidates too. A
    point is compared with the ``m`` cell means, then with the candidates of
    its ``n_probe`` nearest cells only: about ``(m + n_probe * c) d``
    multiply-adds per point for ``c`` candidates per cell (a small multiple
    of ``k / m``) instead of ``k d``. Like an inverted-file index it is
    approximate; :meth:`build` calibrates the number of cells probed on
    held-out fit points so that 99.9% of them find their exact nearest
    center, and compares with every center instead where that would cost
    as much (unstructured high-dimensional data). Up to 256 centers, and for
    one-dimensional centers (a binary search), the search is exact.

    Build it with :meth:`build`; :meth:`state` / :meth:`from_state` turn it
    into NumPy arrays and back, so fitted groupers pickle anywhere.
    """

    def __init__(self, centers, cell_means=None, candidates=None, n_probe=_N_PROBE):
        self.centers = centers
        self.exact = cell_means is None
        if self.exact:
            if centers.shape[1] == 1:  # one dimension: a binary search, exact for any k
                self.sorted_values, self.sorted_ids = torch.sort(centers[:, 0])
            return
        self.cell_means, self.candidates = cell_means, candidates
        self.n_probe = min(n_probe, cell_means.shape[0])
        self.sq_norms = (centers * centers).sum(1)

    @classmethod
    def build(cls, centers, points=None, labels=None, *, seed=0) -> "CenterIndex":
        """Index ``centers (k, d)``; ``points``/``labels`` are a fit's points and assignments.

        With points, the number of cells each point probes is calibrated on
        points held out of the candidate lists: the first of 2, 3, 4, 6, 9, ...
        that finds the exact nearest center for :data:`_TARGET_AGREEMENT` of
        them. Where
        that would cost about as much as comparing with every center
        (unstructured high-dimensional data), the index compares with every
        center instead.
        """
        k = centers.shape[0]
        if k <= _INDEX_MIN_CENTERS or centers.shape[1] == 1:
            return cls(centers)
        cells = kmeans(centers, math.ceil(math.sqrt(k)), algorithm="lloyd", max_iter=20,
                       seed=seed)
        own = cells.labels * k + torch.arange(k, device=centers.device)
        if points is None:
            return cls(centers, cells.centers, _candidate_lists(own, k, cells.centers))
        cell_of_point, _ = nearest_center(points, cells.centers, squared=True)
        crossing = cell_of_point * k + labels.to(own.dtype)
        held = torch.arange(0, points.shape[0], _HOLD_OUT_EVERY, device=points.device)
        held = held[:_CALIBRATION_POINTS]
        kept = torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
        kept[held] = False
        n_probe = _calibrated_probes(
            centers, cells.centers, _candidate_lists(torch.cat([own, crossing[kept]]), k,
                                                     cells.centers), points[held])
        if n_probe is None:
            return cls(centers)
        return cls(centers, cells.centers,
                   _candidate_lists(torch.cat([own, crossing]), k, cells.centers), n_probe)

    def state(self):
        """NumPy arrays that :meth:`from_state` rebuilds the index from (``None`` when exact)."""
        if self.exact:
            return None
        sizes = np.array([len(c) for c in self.candidates])
        return {
            "cell_means": self.cell_means.cpu().numpy(),
            "candidates": torch.cat(self.candidates).cpu().numpy(),
            "offsets": np.concatenate([[0], np.cumsum(sizes)]),
            "n_probe": self.n_probe,
        }

    @classmethod
    def from_state(cls, centers, state) -> "CenterIndex":
        """The index of ``centers`` (a tensor on the work device) from :meth:`state`."""
        if state is None:
            return cls(centers)
        device = centers.device
        flat = torch.as_tensor(state["candidates"], device=device)
        offsets = state["offsets"]
        candidates = [flat[offsets[c]:offsets[c + 1]] for c in range(len(offsets) - 1)]
        return cls(centers, torch.as_tensor(state["cell_means"], device=device), candidates,
                   int(state.get("n_probe", _N_PROBE)))  # files saved before calibration

    def assign(self, X, batch_size=4096):
        """``(labels, squared distances)`` of the nearest candidate center of every row."""
        if self.exact and self.centers.shape[1] == 1:
            labels = self.sorted_ids[interval_labels(X[:, 0], self.sorted_values)]
            return labels, ((X[:, 0] - self.centers[labels, 0]) ** 2)
        if self.exact:
            return nearest_center(X, self.centers, batch_size=batch_size, squared=True)
        labels = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
        best = torch.full((X.shape[0],), float("inf"), dtype=X.dtype, device=X.device)
        x2 = (X * X).sum(1)
        probes = _nearest_cells(X, self.cell_means, self.n_probe, batch_size)
        for j in range(self.n_probe):
            self._search_cells(X, x2, probes[:, j], labels, best)
        return labels, best.clamp_min_(0)

    def _search_cells(self, X, x2, cell, labels, best):
        """Update ``labels``/``best`` with the candidates of each point's cell ``cell``."""
        order = torch.argsort(cell, stable=True)
        counts = torch.bincount(cell, minlength=len(self.candidates)).tolist()
        for c, points in enumerate(torch.split(order, counts)):
            if not len(points):
                continue
            ids = self.candidates[c]
            d2 = (x2[points, None] - 2 * X[points] @ self.centers[ids].T
                  + self.sq_norms[ids])
            value, arg = d2.min(1)
            # where, not a boolean mask: indexing with a mask reads its count back to
            # the host, one device synchronisation per cell
            current = best[points]
            better = value < current
            best[points] = torch.where(better, value, current)
            labels[points] = torch.where(better, ids[arg], labels[points])


def _candidate_lists(pairs, k, cell_means):
    """Per cell, the sorted center ids of the ``cell * k + center`` codes in ``pairs``."""
    pairs = torch.unique(pairs)  # sorted: by cell, then center
    counts = torch.bincount(pairs // k, minlength=cell_means.shape[0]).tolist()
    return list(torch.split(pairs % k, counts))


def _calibrated_probes(centers, cell_means, candidates, held_out):
    """The first of 2, 3, 4, 6, 9, ... cells to probe (each about 1.5 times the last)
    that gives :data:`_TARGET_AGREEMENT` exact answers on ``held_out``, or ``None``
    when probing that many costs about a full comparison."""
    k, m = centers.shape[0], cell_means.shape[0]
    if not len(held_out):
        return _N_PROBE
    exact, _ = nearest_center(held_out, centers, squared=True)
    mean_candidates = sum(len(c) for c in candidates) / m
    n_probe = _N_PROBE
    while m + n_probe * mean_candidates < k / 2:
        found, _ = CenterIndex(centers, cell_means, candidates, n_probe).assign(held_out)
        if (found == exact).float().mean().item() >= _TARGET_AGREEMENT:
            return n_probe
        # probing every cell costs m + k >= k/2 multiply-adds: the loop ends before it
        n_probe = n_probe + max(1, n_probe // 2)
    return None


def _nearest_cells(X, means, n_probe, batch_size):
    """``(n, n_probe)``: the indices of each row's ``n_probe`` nearest cell means."""
    m2 = (means * means).sum(1)
    out = []
    for start in range(0, X.shape[0], batch_size):
        x = X[start:start + batch_size]
        d2 = (x * x).sum(1, keepdim=True) - 2 * x @ means.T + m2
        out.append(d2.topk(n_probe, dim=1, largest=False).indices)
    return torch.cat(out)


def anchors_of(labels: np.ndarray, sq_distances: np.ndarray, k: int) -> np.ndarray:
    """``(k,)``: for every cluster, the position of its member closest to its center."""
    order = np.lexsort((sq_distances, labels))
    first = np.searchsorted(labels[order], np.arange(k))
    return order[first]


def repair_empty(labels, counts, anchors):
    """Give every empty cluster its anchor row (in place); ``counts`` per cluster.

    ``anchors[c]`` is a row that belonged to cluster ``c`` when the centers
    were fitted, so moving it there costs little. Moving an anchor can empty
    the cluster it leaves; the loop repeats until no cluster is empty.

    Returns
    -------
    moved : list of (row, old cluster)
    """
    moved = []
    empty = np.flatnonzero(counts == 0)
    while empty.size:
        for c in empty:
            row = anchors[c]
            moved.append((int(row), int(labels[row])))
            counts[labels[row]] -= 1
            labels[row] = c
            counts[c] += 1
        empty = np.flatnonzero(counts == 0)
    return moved
