"""K-Means groupers: on raw features, on representations, on loss gradients.

All three whiten their features (zero mean, unit variance per feature, as in
the paper's appendix B.2) and cluster them with the engine's scalable
K-Means into exactly ``ceil(n / group_size)`` non-empty groups.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._engine import _features
from .._engine._kmeans import center_distances, kmeans, nearest_center
from ..utils._inputs import model_input, preprocessing_pipeline, raw_input_checks
from ..utils._skorch import PerSampleLoss, fit_or_freeze
from ..utils._targets import check_fit_targets, encode_targets, predicted_targets
from ._base import BaseGrouper

_SEED_MAX = np.iinfo(np.int32).max


class _KMeansGrouper(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseGrouper):
    """K-Means on whitened per-sample features; subclasses say which features.

    Like :class:`~sklearn.cluster.KMeans`, ``transform`` maps samples to
    their distances to the ``n_groups_`` centers, and ``fit_transform(X, y)``
    is ``fit(X, y).transform(X)``. For the model-based groupers
    ``transform(X)`` without labels reads the features at the net's
    *predicted* labels, which can differ from the true labels ``labels_``
    came from: call ``transform(X, y)`` for those.
    """

    _parameter_constraints: dict = {
        **BaseGrouper._parameter_constraints,
        "algorithm": [StrOptions({"auto", "lloyd", "hierarchical"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }

    def _group(self, X, y, n_groups):
        features = self._fit_features(X, y)
        mean = features.mean(0)
        scale = features.std(0, unbiased=False)
        scale[scale == 0] = 1.0  # constant features stay constant
        # fitted state lives on the CPU as numpy, so it pickles anywhere
        self._mean, self._scale = mean.cpu().numpy(), scale.cpu().numpy()
        seed = int(check_random_state(self.random_state).randint(_SEED_MAX))
        result = kmeans(
            (features - mean) / scale, n_groups, algorithm=self.algorithm,
            max_iter=self.max_iter, tol=self.tol, seed=seed,
        )
        self._whitened_centers = result.centers.cpu().numpy()
        self.cluster_centers_ = self._whitened_centers * self._scale + self._mean
        self.inertia_ = result.inertia
        self.n_iter_ = result.n_iter
        return result.labels.cpu().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # distances come out of torch
        return tags

    @property
    def _n_features_out(self):
        return self.n_groups_

    def _whitened(self, X, y):
        """Whitened features of ``X`` and the centers, as tensors on the work device."""
        features = self._features(X, y)
        as_tensor = lambda a: torch.as_tensor(a, device=features.device)  # noqa: E731
        whitened = (features - as_tensor(self._mean)) / as_tensor(self._scale)
        return whitened, as_tensor(self._whitened_centers)

    def predict(self, X, y=None):
        """Group of the nearest center, in the whitened feature space.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
        y : array-like of shape (n_samples,), default=None
            Labels; gradient features use the net's predictions without them.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        labels, _ = nearest_center(*self._whitened(X, y), batch_size=self.batch_size)
        return labels.cpu().numpy()

    def transform(self, X, y=None):
        """Euclidean distances to every center, in the whitened feature space.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
        y : array-like of shape (n_samples,), default=None

        Returns
        -------
        distances : ndarray of shape (n_samples, n_groups)
        """
        check_is_fitted(self)
        distances = center_distances(*self._whitened(X, y), batch_size=self.batch_size)
        return distances.cpu().numpy()


class KMeansGrouper(_KMeansGrouper):
    """Groups from K-Means on whitened raw features.

    Parameters
    ----------
    group_size : int, default=64
        Target group size; ``n_groups = ceil(n_samples / group_size)``.
    n_groups : int, default=None
        Number of groups; wins over ``group_size`` when set.
    algorithm : {"auto", "lloyd", "hierarchical"}, default="auto"
        ``"lloyd"``: k-means++ and Lloyd over all clusters. ``"hierarchical"``:
        coarse-to-fine (about ``sqrt(k)`` regions, then K-Means inside each),
        whose cost grows like ``sqrt(k)`` instead of ``k``. ``"auto"`` uses
        Lloyd up to 128 groups.
    max_iter : int, default=60
        Maximum Lloyd iterations (paper: 60).
    tol : float, default=1e-3
        Tolerance on the squared center shift, relative to the mean feature
        variance (paper: 1e-3).
    batch_size : int, default=4096
        Rows per batch when computing distances in ``predict`` / ``transform``.
    device : str, default="cpu"
        Torch device for the distance computations (``"cuda"`` on a GPU).
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Group of every training sample, in ``0..n_groups_-1``; no group is empty.
    n_groups_ : int
    cluster_centers_ : ndarray of shape (n_groups, n_features)
        Centers in the original feature space.
    inertia_ : float
        Sum of squared distances to the centers, in the whitened space.
    n_iter_ : int
        Lloyd iterations run (coarse plus fine level for ``"hierarchical"``).
    fit_time_ : float
        Seconds spent in ``fit``.
    n_features_in_ : int

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
                 tol=1e-3, batch_size=4096, device="cpu", random_state=None):
        self.group_size = group_size
        self.n_groups = n_groups
        self.algorithm = algorithm
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    def _fit_features(self, X, y):
        return self._as_tensor(X, self.device)

    def _features(self, X, y):
        # a grouper fitted on a GPU and reloaded on a CPU-only machine still predicts
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            device = torch.device("cpu")
        return self._as_tensor(self._validate_X(X, reset=False), device)

    @staticmethod
    def _as_tensor(X, device):
        return torch.as_tensor(np.asarray(X, dtype=np.float32).reshape(len(X), -1),
                               device=device)


class _ModelGrouper(_KMeansGrouper):
    """K-Means on features read from a trained net (shared by Repr- and Grad-K-Means)."""

    _parameter_constraints: dict = {
        **_KMeansGrouper._parameter_constraints,
        "estimator": [HasMethods(["fit", "predict"]), None],
    }

    def __init__(self, group_size=64, *, n_groups=None, estimator=None, algorithm="auto",
                 max_iter=60, tol=1e-3, batch_size=1024, random_state=None):
        self.group_size = group_size
        self.n_groups = n_groups
        self.estimator = estimator
        self.algorithm = algorithm
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def _validate_fit_data(self, X, y):
        preprocessed = preprocessing_pipeline(self.estimator) is not None
        X, y = validate_data(self, X, y, **raw_input_checks(preprocessed))
        return X, check_fit_targets(y, self.estimator)

    def _fit_features(self, X, y):
        seed = int(check_random_state(self.random_state).randint(_SEED_MAX))
        resolved = fit_or_freeze(self.estimator, X, y, seed)
        self.estimator_, self._preprocessor = resolved.net, resolved.preprocessor
        self.__dict__.pop("classes_", None)  # a regressor has none
        if resolved.classes is not None:
            self.classes_ = resolved.classes
        # float32 whatever the module computes in (converted scikit-learn models: float64)
        return self._model_features(resolved.X, resolved.y_encoded).float()

    def _features(self, X, y):
        preprocessor = getattr(self, "_preprocessor", None)
        X = validate_data(self, X, reset=False, **raw_input_checks(preprocessor is not None))
        X = model_input(preprocessor, X)
        classes = getattr(self, "classes_", None)
        if y is None:
            y_encoded = predicted_targets(self.estimator_, X, classes)
        else:
            y_encoded = encode_targets(np.asarray(y), classes)
        return self._model_features(X, y_encoded).float()

    def _model_features(self, X, y_encoded):  # pragma: no cover - abstract
        raise NotImplementedError


_MODEL_PARAMETERS = """
    Parameters
    ----------
    group_size : int, default=64
        Target group size; ``n_groups = ceil(n_samples / group_size)``.
    n_groups : int, default=None
        Number of groups; wins over ``group_size`` when set.
    estimator : skorch net, scikit-learn model, Pipeline or FrozenEstimator, default=None
        The model (classifier or regressor) whose {what} are clustered. A
        plain net is cloned and trained in ``fit``; ``FrozenEstimator(net)``
        is used as is; scikit-learn's models and pipelines as for
        :class:`~skggda.TracInAttributor`; ``None`` trains the default MLP.
        Inside an attributor (``grouper=``) it is filled in with the
        attributor's fitted model, so nothing is trained twice.
    algorithm : {{"auto", "lloyd", "hierarchical"}}, default="auto"
        See :class:`KMeansGrouper`.
    max_iter : int, default=60
    tol : float, default=1e-3
    batch_size : int, default=1024
        Samples per forward pass when computing features.
    random_state : int, RandomState instance or None, default=None
        Seeds K-Means and, when the net is trained here, its training.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Group of every training sample, in ``0..n_groups_-1``; no group is empty.
    n_groups_ : int
    cluster_centers_ : ndarray of shape (n_groups, n_hidden)
        Centers in the (unwhitened) feature space.
    estimator_ : skorch net or ConvertedModel
        The model the features come from.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers only).
    inertia_ : float
    n_iter_ : int
    fit_time_ : float
        Seconds spent in ``fit`` (including training the net, if it was trained here).
    n_features_in_ : int
"""


class ReprKMeansGrouper(_ModelGrouper):
    __doc__ = """Groups from K-Means on a net's whitened penultimate representations.

    The representation of a sample is the input of the net's classification
    head (its last ``nn.Linear``): points the model sees alike are grouped.
    """ + _MODEL_PARAMETERS.format(what="penultimate representations") + """
    Examples
    --------
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

    def _model_features(self, X, y_encoded):
        return _features.penultimate_representations(
            self.estimator_.module_, X, batch_size=self.batch_size)


class GradKMeansGrouper(_ModelGrouper):
    __doc__ = """Groups from K-Means on whitened loss gradients w.r.t. the pre-classification activations.

    The feature of a sample is the gradient of its loss with respect to the
    input ``h`` of the net's classification head (not the parameters): points
    that push the model the same way share a group, which keeps group
    attributions faithful to the per-point ones (paper sections 5.2 and
    5.4.1). For a linear head under softmax cross-entropy the gradient is
    ``W^T (softmax(z) - onehot(y))``, and under a squared error ``c ||z -
    y||^2`` (regression) ``2 c W^T (z - y)``, computed in closed form from
    one forward pass; other heads and losses use autograd.
    """ + _MODEL_PARAMETERS.format(what="pre-activation loss gradients") + """
    Examples
    --------
    >>> import numpy as np
    >>> from skggda import GradKMeansGrouper
    >>> from skggda.models import make_classifier
    >>> X = np.random.RandomState(0).normal(size=(120, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> net = make_classifier((8,), max_epochs=3, random_state=0)
    >>> grouper = GradKMeansGrouper(group_size=30, estimator=net, random_state=0).fit(X, y)
    >>> int(np.bincount(grouper.labels_).sum())
    120
    >>> grouper.predict(X[:3]).shape
    (3,)
    """

    def _model_features(self, X, y_encoded):
        loss = PerSampleLoss(self.estimator_.criterion_)
        return _features.preactivation_gradients(
            self.estimator_.module_, loss, X, y_encoded,
            softmax_cross_entropy=loss.is_plain_cross_entropy,
            squared_error_scale=loss.squared_error_scale, batch_size=self.batch_size,
        )
