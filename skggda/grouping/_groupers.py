"""The public groupers, side by side: random groups and the three K-Means groupers.

:class:`RandomGrouper` is the paper's baseline. :class:`KMeansGrouper`
clusters the raw features; :class:`ReprKMeansGrouper` and
:class:`GradKMeansGrouper` train (or freeze) a net in ``fit`` and cluster
the input of its classification head or the loss gradients with respect to
it. The machinery lives beside: :mod:`._base` (validation and the
partition checks), :mod:`._kmeans` (the K-Means core the three share) and
:mod:`._featurisers` (what each reads from a sample).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods

from .._engine import n_samples
from ..models._resolve import fit_or_freeze
from ..utils._groups import compact_labels, label_dtype
from ..utils._inputs import check_fit_data, check_test_data
from ..utils._pipeline import model_input, preprocessing_pipeline
from ..utils._targets import check_fit_targets, encode_targets
from ._base import BaseGrouper
from ._docs import fill_grouper_doc
from ._featurisers import LossGradients, RawFeatures, Representations
from ._kmeans import _KMeansGrouper


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


@fill_grouper_doc
class KMeansGrouper(_KMeansGrouper):
    """Groups from K-Means on whitened raw features.

    Parameters
    ----------
    group_size : int, default=64
        %(group_size)s
    n_groups : int, default=None
        Number of groups; when set it wins over ``group_size``.
    algorithm : {"auto", "lloyd", "hierarchical"}, default="auto"
        %(algorithm)s
    max_iter : int, default=60
        Maximum Lloyd iterations (paper: 60).
    tol : float, default=1e-3
        %(tol)s
    batch_size : int or "auto", default="auto"
        Rows per distance computation in the assignment pass, ``predict``
        and ``transform``; ``"auto"`` is 4096.
    device : str, default="cpu"
        Torch device for the distance computations (``"cuda"`` on a GPU).
    n_jobs : int, default=None
        %(n_jobs)s
    verbose : int, default=0
        Progress bars over the row blocks of long passes when positive.
    random_state : int, RandomState instance or None, default=None
        Seeds the sample the centers are fitted on and K-Means.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        %(labels_)s
    n_groups_ : int
        Number of groups formed.
    cluster_centers_ : ndarray of shape (n_groups, n_features)
        Centers in the original feature space.
    inertia_ : float
        %(inertia_)s
    n_iter_ : int
        Lloyd iterations run (coarse plus fine level for ``"hierarchical"``).
    fit_time_ : float
        Seconds spent in ``fit``.
    n_features_in_ : int
        Number of features seen during ``fit``.

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
        super().__init__(group_size, n_groups=n_groups, algorithm=algorithm, max_iter=max_iter,
                         tol=tol, batch_size=batch_size, n_jobs=n_jobs, verbose=verbose,
                         random_state=random_state)
        self.device = device

    def _featuriser(self):
        return RawFeatures(self.device)

    def _distance_rows(self):
        return super()._distance_rows() if self.batch_size == "auto" else self.batch_size


class _NetKMeansGrouper(_KMeansGrouper):
    """K-Means on features read from a trained net (shared by Repr- and Grad-K-Means).

    A meta-estimator: ``fit`` trains ``estimator`` (or takes it, frozen),
    and test data goes through the net's preprocessing. ``_featuriser_class``
    says what is read from the net.
    """

    _parameter_constraints: dict = {
        **_KMeansGrouper._parameter_constraints,
        "estimator": [HasMethods(["fit", "predict"]), None],
    }
    _needs_y = True
    _featuriser_class = None  # a featuriser of the fitted net: Representations, LossGradients

    def __init__(self, group_size=64, *, n_groups=None, estimator=None, algorithm="auto",
                 max_iter=60, tol=1e-3, batch_size="auto", n_jobs=None, verbose=0,
                 random_state=None):
        super().__init__(group_size, n_groups=n_groups, algorithm=algorithm, max_iter=max_iter,
                         tol=tol, batch_size=batch_size, n_jobs=n_jobs, verbose=verbose,
                         random_state=random_state)
        self.estimator = estimator

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

    def _fit_inputs(self, X, y, seed):
        """Train or freeze the net; ``(X, y)`` as it reads them (labels encoded)."""
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
        """Rows as the net reads them, and labels encoded as in ``fit`` (``None``: its
        predictions)."""
        preprocessor = self._preprocessor
        X, y = check_test_data(self, X, y, preprocessed=preprocessor is not None)
        y = None if y is None else encode_targets(y, getattr(self, "classes_", None))
        return model_input(preprocessor, X), y

    def _featuriser(self):
        return self._featuriser_class(self.estimator_, self.batch_size)


@fill_grouper_doc
class ReprKMeansGrouper(_NetKMeansGrouper):
    """Groups from K-Means on a net's whitened penultimate representations.

    The representation of a sample is the input of the net's classification
    head (its last ``nn.Linear``): points the model sees alike are grouped.

    Parameters
    ----------
    group_size : int, default=64
        %(group_size)s
    n_groups : int, default=None
        Number of groups; when set it wins over ``group_size``.
    estimator : skorch net, scikit-learn model, Pipeline or FrozenEstimator, default=None
        %(estimator)s
    algorithm : {"auto", "lloyd", "hierarchical"}, default="auto"
        %(algorithm)s
    max_iter : int, default=60
        Maximum Lloyd iterations (paper: 60).
    tol : float, default=1e-3
        %(tol)s
    batch_size : int or "auto", default="auto"
        Samples per forward pass when computing features; ``"auto"`` sizes
        it from the net's activations (as the attributors do).
    n_jobs : int, default=None
        %(n_jobs)s
    verbose : int, default=0
        Progress bars over the row blocks of long passes when positive.
    random_state : int, RandomState instance or None, default=None
        %(random_state)s

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        %(labels_)s
    n_groups_ : int
        Number of groups formed.
    cluster_centers_ : ndarray of shape (n_groups, n_hidden)
        %(cluster_centers_)s
    estimator_ : skorch net or ConvertedModel
        The model the features come from.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers only).
    inertia_ : float
        %(inertia_)s
    n_iter_ : int
        Lloyd iterations run (coarse plus fine level for ``"hierarchical"``).
    fit_time_ : float
        %(fit_time_)s
    n_features_in_ : int
        Number of features seen during ``fit``.

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

    _featuriser_class = Representations


@fill_grouper_doc
class GradKMeansGrouper(_NetKMeansGrouper):
    """Groups from K-Means on whitened loss gradients w.r.t. the pre-classification activations.

    The feature of a sample is the gradient of its loss with respect to the
    input ``h`` of the net's classification head (not the parameters): points
    that push the model the same way share a group, which keeps group
    attributions faithful to the per-point ones (paper sections 5.2 and
    5.4.1). For a linear head under softmax cross-entropy the gradient is
    ``W^T (softmax(z) - onehot(y))``, and under a squared error ``c ||z -
    y||^2`` (regression) ``2 c W^T (z - y)``, computed in closed form from
    one forward pass; other heads and losses use autograd.

    Parameters
    ----------
    group_size : int, default=64
        %(group_size)s
    n_groups : int, default=None
        Number of groups; when set it wins over ``group_size``.
    estimator : skorch net, scikit-learn model, Pipeline or FrozenEstimator, default=None
        %(estimator)s
    algorithm : {"auto", "lloyd", "hierarchical"}, default="auto"
        %(algorithm)s
    max_iter : int, default=60
        Maximum Lloyd iterations (paper: 60).
    tol : float, default=1e-3
        %(tol)s
    batch_size : int or "auto", default="auto"
        Samples per forward pass when computing features; ``"auto"`` sizes
        it from the net's activations (as the attributors do).
    n_jobs : int, default=None
        %(n_jobs)s
    verbose : int, default=0
        Progress bars over the row blocks of long passes when positive.
    random_state : int, RandomState instance or None, default=None
        %(random_state)s

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        %(labels_)s
    n_groups_ : int
        Number of groups formed.
    cluster_centers_ : ndarray of shape (n_groups, n_hidden)
        %(cluster_centers_)s
    estimator_ : skorch net or ConvertedModel
        The model the features come from.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers only).
    inertia_ : float
        %(inertia_)s
    n_iter_ : int
        Lloyd iterations run (coarse plus fine level for ``"hierarchical"``).
    fit_time_ : float
        %(fit_time_)s
    n_features_in_ : int
        Number of features seen during ``fit``.

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

    _featuriser_class = LossGradients
