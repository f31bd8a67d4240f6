"""The K-Means grouper core that the three K-Means groupers share.

The three K-Means groupers (:mod:`._groupers`: on raw features, on a net's
representations and on its loss gradients) whiten their features (zero
mean, unit variance per feature, as in the paper's appendix B.2) and
cluster them with the engine's scalable K-Means into exactly
``ceil(n / group_size)`` non-empty groups, fitting the centers on a sample
and assigning every row in one streaming pass.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .._engine import (
    CenterIndex,
    Whitening,
    anchors_of,
    center_distances,
    kmeans,
    n_samples,
    repair_empty,
    rows,
)
from ..utils._distributed import map_row_blocks
from ..utils._groups import label_dtype
from ..utils._seeding import derive_seeds
from ._base import BaseGrouper

# Rows read, featurised and assigned at a time in the streaming passes.
_BLOCK_ROWS = 1 << 16
# Rows per distance computation when batch_size="auto".
_DISTANCE_ROWS = 4096
# The centers are fitted on max(_SAMPLE_PER_GROUP * k, _MIN_SAMPLE) rows.
_SAMPLE_PER_GROUP = 32
_MIN_SAMPLE = 1 << 16


class _KMeansGrouper(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseGrouper):
    """K-Means on whitened per-sample features; each grouper says which features.

    Like :class:`~sklearn.cluster.KMeans`, ``transform`` maps samples to
    their distances to the ``n_groups_`` centers, and ``fit_transform(X, y)``
    is ``fit(X, y).transform(X)``. For the model-based groupers
    ``transform(X)`` without labels reads the features at the net's
    *predicted* labels, which can differ from the true labels ``labels_``
    came from: call ``transform(X, y)`` for those.

    **Scale.** The centers are fitted on a random sample of
    ``max(32 * n_groups, 65536)`` rows (all rows when there are fewer), and
    every row is then assigned in one streaming pass that computes its
    features block by block and compares it with the candidate centers of
    its nearest cells (:class:`~skggda._engine.CenterIndex`), so memory stays
    bounded and time grows like ``n sqrt(k) d`` instead of ``n k d``.
    Features are expressed in an orthonormal basis of their span first: the
    Grad-K-Means features of a linear softmax head have at most one
    dimension per class.

    **Subclasses** say which features through a featuriser (see
    :mod:`skggda.grouping._featurisers`) built by ``_featuriser()`` from
    their parameters and fitted attributes. ``_fit_inputs`` fits what the
    featuriser needs (a net) and returns the training data as it reads
    them; ``_check_test_data`` does the same for test data.
    """

    _parameter_constraints: dict = {
        **BaseGrouper._parameter_constraints,
        "algorithm": [StrOptions({"auto", "lloyd", "hierarchical"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
    }

    def __init__(self, group_size=64, *, n_groups=None, algorithm="auto", max_iter=60,
                 tol=1e-3, batch_size="auto", n_jobs=None, verbose=0, random_state=None):
        # the K-Means parameters every grouper shares, as scikit-learn's _BaseKMeans
        # holds KMeans's; a subclass's own __init__ adds its own parameters
        self.group_size = group_size
        self.n_groups = n_groups
        self.algorithm = algorithm
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    # -- what the subclasses say -------------------------------------------------------

    def _featuriser(self):  # pragma: no cover - abstract
        """The featuriser: ``features(X_block, y_block) -> Tensor`` on its ``device``."""
        raise NotImplementedError

    def _fit_inputs(self, X, y, seed):
        """``(X, y)`` of ``fit`` as the featuriser reads them (fitting what it needs first)."""
        return X, None

    def _distance_rows(self):
        """Rows per distance computation."""
        return _DISTANCE_ROWS

    # -- fit ---------------------------------------------------------------------------

    def _group(self, X, y, n_groups):
        seed = derive_seeds(self.random_state)
        X, y = self._fit_inputs(X, y, seed)
        featuriser = self._featuriser()
        sample = fit_sample(n_samples(X), n_groups, seed)
        (features,) = self._map_blocks(featuriser.features, X, y,
                                       "features" if sample is None else "sample features",
                                       index=sample)
        features = torch.as_tensor(features, device=featuriser.device)
        self._whitening = Whitening.fit(features)
        coordinates, _ = self._whitening.transform(features)
        del features
        result = kmeans(coordinates, n_groups, algorithm=self.algorithm,
                        max_iter=self.max_iter, tol=self.tol, seed=seed)
        index = CenterIndex.build(result.centers, coordinates, result.labels, seed=seed)
        # fitted state lives on the CPU as numpy, so it pickles anywhere
        self._centers = result.centers.cpu().numpy()
        self._index_state = index.state()
        self.cluster_centers_ = self._whitening.inverse(self._centers)
        self.n_iter_ = result.n_iter
        if sample is None:
            self.inertia_ = result.inertia
            return result.labels.cpu().numpy()
        return self._assign_all(X, y, result, coordinates, sample)

    def _assign_all(self, X, y, result, coordinates, sample):
        """Labels of every row in one streaming pass, then empty groups repaired."""
        k = len(self._centers)
        labels, counts, inertia = self._map_blocks(self._nearest_centers().assign, X, y,
                                                   "assignment")
        fit_labels = result.labels.cpu().numpy()
        fit_distances = ((coordinates - result.centers[result.labels]) ** 2).sum(1).cpu().numpy()
        anchors = anchors_of(fit_labels, fit_distances, k)
        for row, old in repair_empty(labels, counts, sample[anchors]):
            # the anchor's features are the sample's: move its distance over
            position = np.searchsorted(sample, row)
            point = coordinates[position]
            inertia += float(((point - result.centers[labels[row]]) ** 2).sum()
                             - ((point - result.centers[old]) ** 2).sum())
        self.inertia_ = float(inertia)
        return labels

    def _map_blocks(self, work, X, y, desc, index=None):
        """``work(X_block, y_block)`` over row blocks (see :func:`map_row_blocks`):
        in this process, or on Dask workers when ``X`` or ``n_jobs`` asks for it."""
        return map_row_blocks(work, X, y, index=index, n_jobs=self.n_jobs,
                              block_rows=_BLOCK_ROWS,
                              progress=desc if self.verbose else False)

    def _nearest_centers(self):
        """The fitted centers with the featuriser: the work of the streaming passes."""
        return _NearestCenters(self._featuriser(), self._whitening, self._centers,
                               self._index_state, self._distance_rows())

    # -- after fit ---------------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # distances come out of torch
        return tags

    @property
    def _n_features_out(self):
        return self.n_groups_

    def predict(self, X, y=None):
        """Group of the nearest center, in the whitened feature space.

        Up to 256 groups every center is compared; above, the candidate
        centers of the nearest cells (see the class docstring).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples to assign to groups, in memory or streamed (a memmap,
            h5py/zarr/Dask array, or a torch Dataset of ``(x, y)`` items).
        y : array-like of shape (n_samples,), default=None
            Labels at which Grad-K-Means reads a sample's features (without
            them: at the net's predicted labels); the other groupers ignore
            them.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Group of every sample, in ``0..n_groups_-1``.
        """
        check_is_fitted(self)
        X, y = self._check_test_data(X, y)
        labels, _, _ = self._map_blocks(self._nearest_centers().assign, X, y, "predict")
        return labels

    def transform(self, X, y=None):
        """Euclidean distances to every center, in the whitened feature space.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples whose distances to the centers are returned, in memory
            or streamed (a memmap, h5py/zarr/Dask array, or a torch Dataset
            of ``(x, y)`` items).
        y : array-like of shape (n_samples,), default=None
            Labels at which Grad-K-Means reads a sample's features (without
            them: at the net's predicted labels, which can differ from the
            true ones); the other groupers ignore them.

        Returns
        -------
        distances : ndarray of shape (n_samples, n_groups), float32
            Euclidean distance of every sample to every center, in the whitened
            feature space.
        """
        check_is_fitted(self)
        return self._transform(*self._check_test_data(X, y))

    def fit_transform(self, X, y=None):
        """Fit, then return the distances of the training samples to the centers.

        Equal to ``fit(X, y).transform(X)``: Grad-K-Means reads the
        distances at the net's predicted labels, as ``transform(X)`` does.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training samples.
        y : array-like of shape (n_samples,), default=None
            Labels; used by the model-based groupers.

        Returns
        -------
        distances : ndarray of shape (n_samples, n_groups), float32
            Euclidean distance of every sample to every center, in the whitened
            feature space.
        """
        return self.fit(X, y)._transform(*self._check_test_data(X))

    def _transform(self, X, y):
        """Distances of validated rows (``y`` as the featuriser reads it) to the centers."""
        work = self._nearest_centers()
        n = n_samples(X)
        out = np.empty((n, self.n_groups_), dtype=np.float32)
        with tqdm(total=n, desc="transform", unit="sample", disable=not self.verbose,
                  leave=False) as bar:
            for start in range(0, n, _BLOCK_ROWS):
                stop = min(start + _BLOCK_ROWS, n)
                y_block = None if y is None else y[start:stop]
                out[start:stop] = work.distances(rows(X, start, stop), y_block)
                bar.update(stop - start)
        return out


class _NearestCenters:
    """The nearest fitted centers of row blocks: what a streaming pass sends to workers.

    Holds the featuriser and the fitted centers, nothing of size
    ``n_samples`` (the grouper's ``labels_`` stay home).
    """

    def __init__(self, featuriser, whitening, centers, index_state, distance_rows):
        self.featuriser = featuriser
        self.whitening = whitening
        self.centers = centers
        self.index_state = index_state
        self.distance_rows = distance_rows

    def __getstate__(self):
        # what goes to a worker: the arrays, never tensors cached on this process's device
        return {key: value for key, value in self.__dict__.items() if key != "_on_device"}

    def _device_state(self, device):
        """The whitening's arrays, the centers and their index on ``device``, uploaded once.

        A pass keeps one ``_NearestCenters`` for all its blocks: the centers
        and index cross to the device once per pass, not once per block.
        """
        cache = self.__dict__.setdefault("_on_device", {})
        if device not in cache:
            centers = torch.as_tensor(self.centers, device=device)
            cache[device] = (self.whitening.on(device), centers,
                             CenterIndex.from_state(centers, self.index_state))
        return cache[device]

    def _coordinates(self, X_block, y_block):
        """Whitened features ``(n_rows, d)``, squared residuals ``(n_rows,)`` off their span,
        and the device state of :meth:`_device_state`."""
        features = self.featuriser.features(X_block, y_block)
        state = self._device_state(features.device)
        return (*self.whitening.transform(features, state[0]), state)

    def assign(self, X_block, y_block):
        """``(labels, counts, inertia)`` of a block of rows: its nearest centers."""
        coordinates, residual, (_, _, index) = self._coordinates(X_block, y_block)
        labels, distances = index.assign(coordinates, batch_size=self.distance_rows)
        k = len(self.centers)
        labels = labels.cpu().numpy().astype(label_dtype(k))
        return labels, np.bincount(labels, minlength=k), float((distances + residual).sum())

    def distances(self, X_block, y_block):
        """float32 ndarray ``(n_rows, k)``: Euclidean distances to every center."""
        coordinates, residual, (_, centers, _) = self._coordinates(X_block, y_block)
        squared = center_distances(coordinates, centers, batch_size=self.distance_rows) ** 2
        return (squared + residual[:, None]).sqrt_().cpu().numpy()


def fit_sample(n, n_groups, seed):
    """Sorted rows the centers are fitted on, or ``None`` for all ``n`` rows.

    ``max(32 * n_groups, 65536)`` rows: enough for every center's mean to
    settle, few enough that fitting costs a small share of the streaming
    pass that assigns all rows.
    """
    size = max(_SAMPLE_PER_GROUP * n_groups, _MIN_SAMPLE)
    if size >= n:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False, shuffle=False))
