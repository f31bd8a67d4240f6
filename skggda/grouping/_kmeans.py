"""K-Means groupers: on raw features, on representations, on loss gradients.

All three whiten their features (zero mean, unit variance per feature, as in
the paper's appendix B.2) and cluster them with the engine's scalable
K-Means into exactly ``ceil(n / group_size)`` non-empty groups, fitting the
centers on a sample and assigning every row in one streaming pass.
"""

from __future__ import annotations

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .._engine import (
    CenterIndex,
    Whitening,
    activation_floats,
    anchors_of,
    auto_batch_size,
    center_distances,
    kmeans,
    module_device,
    module_dtype,
    n_samples,
    penultimate_representations,
    preactivation_gradients,
    probe_batch,
    repair_empty,
    rows,
    to_device,
)
from ..models._loss import PerSampleLoss
from ..models._resolve import fit_or_freeze
from ..utils._docs import fill_doc
from ..utils._distributed import map_row_blocks
from ..utils._groups import compact_labels, label_dtype
from ..utils._inputs import check_fit_data, check_test_data
from ..utils._pipeline import model_input, preprocessing_pipeline
from ..utils._seeding import derive_seeds
from ..utils._targets import check_fit_targets, encode_targets, is_regression
from ._base import BaseGrouper

# Rows read, featurised and assigned at a time in the streaming passes.
_BLOCK_ROWS = 1 << 16
# Rows per distance computation when batch_size="auto".
_DISTANCE_ROWS = 4096
# The centers are fitted on max(_SAMPLE_PER_GROUP * k, _MIN_SAMPLE) rows.
_SAMPLE_PER_GROUP = 32
_MIN_SAMPLE = 1 << 16


@fill_doc
class _KMeansGrouper(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseGrouper):
    """K-Means on whitened per-sample features; subclasses say which features.

    Like :class:`~sklearn.cluster.KMeans`, ``transform`` maps samples to
    their distances to the ``n_groups_`` centers, and ``fit_transform(X, y)``
    is ``fit(X, y).transform(X)`` (without computing the features twice when
    they fit in memory). For the model-based groupers ``transform(X)``
    without labels reads the features at the net's *predicted* labels, which
    can differ from the true labels ``labels_`` came from: call
    ``transform(X, y)`` for those.

    **Scale.** The centers are fitted on a random sample of
    ``max(32 * n_groups, 65536)`` rows (all rows when there are fewer), and
    every row is then assigned in one streaming pass that computes its
    features block by block and compares it with the candidate centers of
    its nearest cells (:class:`~skggda._engine.CenterIndex`), so memory stays
    bounded and time grows like ``n sqrt(k) d`` instead of ``n k d``.
    Features are expressed in an orthonormal basis of their span first: the
    Grad-K-Means features of a linear softmax head have at most one
    dimension per class.
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
    # transform(X) reads features at the net's predictions, fit at the true
    # labels: fit_transform cannot reuse the fit's features
    _features_read_labels = False

    def _group(self, X, y, n_groups, keep=None):
        seed = derive_seeds(self.random_state)
        X, y = self._prepare(X, y, seed)
        sample = fit_sample(n_samples(X), n_groups, seed)
        features = self._feature_matrix(X, y, "features" if sample is None else "sample features",
                                        index=sample)
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
            if keep is not None and not self._features_read_labels:
                keep["coordinates"] = coordinates  # fit_transform reuses them
            return result.labels.cpu().numpy()
        return self._assign_all(X, y, result, coordinates, sample)

    def _assign_all(self, X, y, result, coordinates, sample):
        """Labels of every row in one streaming pass, then empty groups repaired."""
        k = len(self._centers)
        labels, counts, inertia = self._map_blocks("_assign_block", X, y, "assignment")
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

    def _assign_block(self, X_block, y_block):
        """``(labels, counts, inertia)`` of a block of rows: its nearest centers."""
        features = self._block_features(X_block, y_block)
        coordinates, residual = self._whitening.transform(features)
        index = CenterIndex.from_state(self._center_tensor(features.device), self._index_state)
        labels, distances = index.assign(coordinates, batch_size=self._distance_rows())
        k = len(self._centers)
        labels = labels.cpu().numpy().astype(label_dtype(k))
        return labels, np.bincount(labels, minlength=k), float((distances + residual).sum())

    # -- features, in row blocks ---------------------------------------------------

    def _map_blocks(self, method, X, y, desc, index=None):
        """``method(X_block, y_block)`` over row blocks (see :func:`map_row_blocks`):
        in this process, or on Dask workers when ``X`` or ``n_jobs`` asks for it."""
        worker_copy = copy.copy(self)
        worker_copy.__dict__.pop("labels_", None)  # O(n): workers need the fitted state only
        return map_row_blocks(getattr(worker_copy, method), X, y, index=index,
                              n_jobs=self.n_jobs, block_rows=_BLOCK_ROWS,
                              progress=desc if self.verbose else False)

    def _feature_blocks(self, X, y, desc):
        """Yield ``(start, stop, features)`` over row blocks of ``X`` (features on the work device)."""
        n = n_samples(X)
        with tqdm(total=n, desc=desc, unit="sample", disable=not self.verbose,
                  leave=False) as bar:
            for start in range(0, n, _BLOCK_ROWS):
                stop = min(start + _BLOCK_ROWS, n)
                y_block = None if y is None else y[start:stop]
                yield start, stop, self._block_features(rows(X, start, stop), y_block)
                bar.update(stop - start)

    def _feature_matrix(self, X, y, desc, index=None):
        """Features of every row (or of the rows ``index``), on the work device."""
        (features,) = self._map_blocks("_block_features", X, y, desc, index=index)
        return torch.as_tensor(features, device=self._work_device())

    def _prepare(self, X, y, seed):
        """Hook run before the features: ``(X, y)`` as the features read them."""
        return X, None

    # -- after fit -------------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # distances come out of torch
        return tags

    @property
    def _n_features_out(self):
        return self.n_groups_

    def _test_labels(self, y):
        """Labels as the features read them (``None``: the net's predictions)."""
        return None

    def _distance_rows(self):
        """Rows per distance computation."""
        return _DISTANCE_ROWS

    def _center_tensor(self, device):
        return torch.as_tensor(self._centers, device=device)

    def predict(self, X, y=None):
        """Group of the nearest center, in the whitened feature space.

        Up to 256 groups every center is compared; above, the candidate
        centers of the nearest cells (see the class docstring).

        Parameters
        ----------
        %(grouper.data)s

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Group of every sample, in ``0..n_groups_-1``.
        """
        check_is_fitted(self)
        X, y = self._check_test_data(X, y)
        labels, _, _ = self._map_blocks("_assign_block", X, self._test_labels(y), "predict")
        return labels

    def transform(self, X, y=None):
        """Euclidean distances to every center, in the whitened feature space.

        Parameters
        ----------
        %(grouper.data)s

        Returns
        -------
        %(kmeans.distances)s
        """
        check_is_fitted(self)
        X, y = self._check_test_data(X, y)
        return self._transform(X, self._test_labels(y))

    def _transform(self, X, y):
        out = np.empty((n_samples(X), self.n_groups_), dtype=np.float32)
        for start, stop, block in self._feature_blocks(X, y, "transform"):
            out[start:stop] = self._distances(*self._whitening.transform(block))
        return out

    def _distances(self, coordinates, residual):
        centers = self._center_tensor(coordinates.device)
        squared = center_distances(coordinates, centers, batch_size=self._distance_rows()) ** 2
        return (squared + residual[:, None]).sqrt_().cpu().numpy()

    def fit_transform(self, X, y=None):
        """Fit, then return the distances of the training samples to the centers.

        Equal to ``fit(X, y).transform(X)``; the features computed while
        fitting are reused when they fit in memory and do not depend on the
        labels (Grad-K-Means reads them at the net's predictions in
        ``transform``, so it computes them again).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training samples.
        y : array-like of shape (n_samples,), default=None
            Labels; used by the model-based groupers.

        Returns
        -------
        %(kmeans.distances)s
        """
        self._validate_params()
        kept = {}
        self._fit(X, y, keep=kept)
        if "coordinates" in kept:
            coordinates = kept["coordinates"]
            return self._distances(coordinates, torch.zeros_like(coordinates[:, 0]))
        return self.transform(X)


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


@fill_doc
class KMeansGrouper(_KMeansGrouper):
    """Groups from K-Means on whitened raw features.

    Parameters
    ----------
    %(grouper.group_size)s
    %(grouper.n_groups)s
    %(kmeans.fitting)s
    batch_size : int or "auto", default="auto"
        Rows per distance computation in the assignment pass, ``predict``
        and ``transform``; ``"auto"`` is 4096.
    device : str, default="cpu"
        Torch device for the distance computations (``"cuda"`` on a GPU).
    %(kmeans.n_jobs)s
    %(kmeans.verbose)s
    %(kmeans.random_state)s

    Attributes
    ----------
    %(grouper.fitted)s
    cluster_centers_ : ndarray of shape (n_groups, n_features)
        Centers in the original feature space.
    %(kmeans.fitted)s
    %(grouper.fit_info)s

    See Also
    --------
    GradKMeansGrouper : Groups points that move the model the same way.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda import KMeansGrouper
    >>> X = np.r_[np.zeros((5, 2)), np.ones((5, 2))]
    >>> grouper = KMeansGrouper(group_size=5, random_state=0).fit(X)
    >>> grouper.labels_.tolist() in ([0] * 5 + [1] * 5, [1] * 5 + [0] * 5)
    True
    >>> grouper.predict([[0.9, 1.1]]) == grouper.labels_[-1]
    array([ True])
    """

    _parameter_constraints: dict = {**_KMeansGrouper._parameter_constraints, "device": [str]}

    def __init__(self, group_size=64, *, n_groups=None, algorithm="auto", max_iter=60,
                 tol=1e-3, batch_size="auto", device="cpu", n_jobs=None, verbose=0,
                 random_state=None):
        self.group_size = group_size
        self.n_groups = n_groups
        self.algorithm = algorithm
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.device = device
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    def _work_device(self):
        # a grouper fitted on a GPU and reloaded on a CPU-only machine still predicts
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            device = torch.device("cpu")
        return device

    def _block_features(self, X_block, y_block):
        block = np.asarray(X_block, dtype=np.float32)
        block = block if block.flags.writeable else block.copy()  # torch wants writable memory
        return torch.as_tensor(block.reshape(len(block), -1), device=self._work_device())

    def _distance_rows(self):
        return _DISTANCE_ROWS if self.batch_size == "auto" else self.batch_size


class _ModelGrouper(_KMeansGrouper):
    """K-Means on features read from a trained net (shared by Repr- and Grad-K-Means)."""

    _parameter_constraints: dict = {
        **_KMeansGrouper._parameter_constraints,
        "estimator": [HasMethods(["fit", "predict"]), None],
    }
    _needs_y = True

    def __init__(self, group_size=64, *, n_groups=None, estimator=None, algorithm="auto",
                 max_iter=60, tol=1e-3, batch_size="auto", n_jobs=None, verbose=0,
                 random_state=None):
        self.group_size = group_size
        self.n_groups = n_groups
        self.estimator = estimator
        self.algorithm = algorithm
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    # a meta-estimator: the net's own parameters are validated when it is fitted
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Train (or take) the net, read its features and group the samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training samples, in memory or streamed (a memmap, h5py/zarr/Dask
            array, or a torch Dataset of ``(x, y)`` items).
        y : array-like of shape (n_samples,)
            Class labels (read from the items for a Dataset).

        Returns
        -------
        self : object
            Fitted grouper.
        """
        return self._fit(X, y)

    def _prepare(self, X, y, seed):
        resolved = fit_or_freeze(self.estimator, X, y, seed)
        self.estimator_, self._preprocessor = resolved.net, resolved.preprocessor
        self.__dict__.pop("classes_", None)  # a regressor has none
        y_encoded = resolved.y_encoded
        if resolved.classes is not None:
            self.classes_ = resolved.classes
            y_encoded = compact_labels(y_encoded, len(resolved.classes))
        return resolved.X, y_encoded

    def _check_fit_data(self, X, y):
        preprocessed = preprocessing_pipeline(self.estimator) is not None
        X, y = check_fit_data(self, X, y, preprocessed=preprocessed)
        return X, check_fit_targets(y, self.estimator)

    def _check_test_data(self, X, y=None):
        preprocessor = self._preprocessor
        X, y = check_test_data(self, X, y, preprocessed=preprocessor is not None)
        return model_input(preprocessor, X), y

    def _test_labels(self, y):
        return None if y is None else encode_targets(y, getattr(self, "classes_", None))

    def _forward_batch_size(self, X_block):
        """Rows per forward pass: ``batch_size``, or the ``"auto"`` choice for the net."""
        if self.batch_size != "auto":
            return self.batch_size
        module = self.estimator_.module_
        device, dtype = module_device(module), module_dtype(module)
        floats = activation_floats(module, to_device(probe_batch(X_block), device, dtype))
        return auto_batch_size(floats * (torch.finfo(dtype).bits // 8), device)

    def _work_device(self):
        return module_device(self.estimator_.module_)

    def _block_features(self, X_block, y_block):
        features = self._model_features(X_block, y_block, self._forward_batch_size(X_block))
        # float32 whatever the module computes in (converted scikit-learn models: float64)
        return features.float()

    def _model_features(self, X, y_encoded, batch_size):  # pragma: no cover - abstract
        raise NotImplementedError


@fill_doc
class ReprKMeansGrouper(_ModelGrouper):
    """Groups from K-Means on a net's whitened penultimate representations.

    The representation of a sample is the input of the net's classification
    head (its last ``nn.Linear``): points the model sees alike are grouped.

    %(model_grouper.sections)s

    Examples
    --------
    Four groups of the representations of a net with 8 hidden units:

    >>> import numpy as np
    >>> from skggda import ReprKMeansGrouper
    >>> from skggda.models import make_classifier
    >>> X = np.random.RandomState(0).normal(size=(120, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> net = make_classifier((8,), max_epochs=3, random_state=0)
    >>> grouper = ReprKMeansGrouper(group_size=30, estimator=net, random_state=0).fit(X, y)
    >>> grouper.n_groups_, grouper.cluster_centers_.shape
    (4, (4, 8))
    """

    def _model_features(self, X, y_encoded, batch_size):
        return penultimate_representations(
            self.estimator_.module_, X, batch_size=batch_size)


@fill_doc
class GradKMeansGrouper(_ModelGrouper):
    """Groups from K-Means on whitened loss gradients w.r.t. the pre-classification activations.

    The feature of a sample is the gradient of its loss with respect to the
    input ``h`` of the net's classification head (not the parameters): points
    that push the model the same way share a group, which keeps group
    attributions faithful to the per-point ones (paper sections 5.2 and
    5.4.1). For a linear head under softmax cross-entropy the gradient is
    ``W^T (softmax(z) - onehot(y))``, and under a squared error ``c ||z -
    y||^2`` (regression) ``2 c W^T (z - y)``, computed in closed form from
    one forward pass; other heads and losses use autograd.

    %(model_grouper.sections)s

    Examples
    --------
    The gradients of a regressor trained beforehand, frozen (not trained again):

    >>> import numpy as np
    >>> from sklearn.frozen import FrozenEstimator
    >>> from skggda import GradKMeansGrouper
    >>> from skggda.models import make_regressor
    >>> X = np.random.RandomState(0).normal(size=(120, 4)).astype("float32")
    >>> net = make_regressor((8,), max_epochs=3, random_state=0).fit(X, X[:, 0])
    >>> grouper = GradKMeansGrouper(group_size=30, estimator=FrozenEstimator(net),
    ...                             random_state=0).fit(X, X[:, 0])
    >>> int(np.bincount(grouper.labels_).sum())
    120
    >>> grouper.predict(X[:3]).shape
    (3,)
    """

    _features_read_labels = True

    def _model_features(self, X, y_encoded, batch_size):
        loss = PerSampleLoss(self.estimator_.criterion_)
        return preactivation_gradients(
            self.estimator_.module_, loss, X, y_encoded,
            softmax_cross_entropy=loss.is_plain_cross_entropy,
            squared_error_scale=loss.squared_error_scale,
            regression=is_regression(self.estimator_), batch_size=batch_size,
        )
