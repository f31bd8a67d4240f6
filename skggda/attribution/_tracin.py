"""TracIn for groups (paper section 4, appendix A.2)."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from .. import _engine
from ..utils._distributed import training_pass
from ._base import BaseAttributor
from ._checkpoints import TrainingCheckpoints, recorded_checkpoints
from ._docs import fill_attributor_doc
from ._store import (attribute_with_store, build_store, keeps_store, score_with_store,
                     squared_norms, store_features)

# Above this size the exact (k, p) group-gradient matrix used by `attribute`
# is not formed; the training data is streamed once per block of test points.
_MAX_GROUP_GRADIENT_BYTES = 1 << 30
_TEST_BLOCK = 64


@fill_attributor_doc
class TracInAttributor(TrainingCheckpoints, BaseAttributor):
    """Group TracIn: learning-rate-weighted gradient dot products, summed per group.

    The score of group ``z_j`` for a property ``g`` (by default the mean loss
    on the evaluation data) is

    .. math:: \\tau_j = \\sum_t \\eta_t \\, \\nabla g(\\theta_t)^\\top
              \\sum_{x \\in z_j} \\nabla \\ell(x; \\theta_t)

    over checkpoints ``theta_t``. Group size 1 is classical TracIn
    (Pruthi et al., 2020); a group's score is exactly the sum of its members'
    scores.

    **Sign and scale.** A higher score means the group helps: a gradient step
    on it lowers the property's loss, so removing it is predicted to raise the
    test loss. Mislabeled points get low, usually negative, scores. With
    ``checkpoints="last"`` (the paper's setting) the weight ``eta`` is 1 and
    the score is the plain dot product; with ``"all"`` each epoch's checkpoint
    is weighted by the mean learning rate of that epoch.

    **Cost.** With ``n_components=None`` nothing is stored at fit time:
    :meth:`score_groups` makes one forward/backward pass over the evaluation
    data (the property gradient) and one over the training data, in which each
    sample's dot product is read off the layer activations and output
    gradients without forming per-sample gradients -- about 1.5 passes of
    training, whatever the group size. With ``n_components=r`` fit stores the
    ``(n_groups, r)`` projected group gradients, and scoring only projects
    the property gradient: cheap, approximate, and what :meth:`attribute`
    needs for many test points.

    Parameters
    ----------
    estimator : skorch net, scikit-learn model, Pipeline or FrozenEstimator, default=None
        %(estimator)s
    grouper : estimator, default=None
        %(grouper)s
    property : {"loss", "margin", "accuracy", "prediction"}, Property or callable, default="loss"
        %(property)s
    checkpoints : {"last", "all"}, default="last"
        ``"last"`` uses the final weights; ``"all"`` sums over the checkpoints
        recorded after every training epoch (needs training: not available
        with a frozen net).
    n_components : int, default=None
        Project gradients to this many dimensions with a seeded random
        projection (factorised per linear layer). ``None`` is exact.
    param_subset : "all", "last" or list of str, default="all"
        %(param_subset)s
    batch_size : int or "auto", default="auto"
        %(batch_size)s
    memory : str, joblib.Memory or None, default=None
        %(memory)s
    n_jobs : int, default=None
        %(n_jobs)s
    verbose : int, default=0
        Progress bars over the gradient passes when positive.
    random_state : int, RandomState instance or None, default=None
        Seeds the net's training (when the net's own ``random_state`` is
        ``None``) and the grouper (likewise).
        It also seeds the projection.

    Attributes
    ----------
    estimator_ : skorch net or ConvertedModel
        The trained (or frozen) model that is attributed (a Pipeline's last
        step).
    grouper_ : estimator
        The fitted grouper, when ``grouper`` was given (absent otherwise).
    labels_ : ndarray of shape (n_samples,)
        Group of every training sample, in ``0..n_groups_-1``.
    groups_ : ndarray of shape (n_groups,)
        %(groups_)s
    n_groups_ : int
        Number of groups: the length of every score vector.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers only: a regressor has none).
    n_features_in_ : int
        Number of features seen during ``fit``.
    timings_ : dict of str to float
        %(timings_)s
        TracIn's gradient pass has no sub-stages.

    See Also
    --------
    skggda.RandomGrouper : Random groups, the baseline grouping.

    Examples
    --------
    Ten random groups of twenty, scored in aggregate and per test sample:

    >>> import numpy as np
    >>> from skggda import RandomGrouper, TracInAttributor
    >>> from skggda.models import make_classifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> net = make_classifier((8,), max_epochs=5, random_state=0)
    >>> attr = TracInAttributor(net, grouper=RandomGrouper(group_size=20),
    ...                         random_state=0).fit(X, y)
    >>> attr.score_groups(X[:50], y[:50]).shape
    (10,)
    >>> attr.attribute(X[:3], y[:3]).shape
    (3, 10)
    """

    _parameter_constraints: dict = {
        **BaseAttributor._parameter_constraints,
        "checkpoints": [StrOptions({"last", "all"})],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "memory": [None, str, HasMethods(["cache"])],
        "n_jobs": [Integral, None],
    }

    def __init__(self, estimator=None, *, grouper=None, property="loss", checkpoints="last",
                 n_components=None, param_subset="all", batch_size="auto", memory=None,
                 n_jobs=None, verbose=0, random_state=None):
        self.estimator = estimator
        self.grouper = grouper
        self.property = property
        self.checkpoints = checkpoints
        self.n_components = n_components
        self.param_subset = param_subset
        self.batch_size = batch_size
        self.memory = memory
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    # -- training side ------------------------------------------------------------

    def _fit_attribution(self, X, y, seed):
        if self.checkpoints == "all":
            self._checkpoints = recorded_checkpoints(self.estimator_)
        else:
            self._checkpoints = [(None, 1.0)]
        self._projection_seed = seed
        self._group_features = self._group_store = None
        if self.n_components is None:
            self._group_store = self._stored_group_gradients(X)
            return
        self._group_features = []
        for plan, _ in self._checkpoint_plans(X, self._checkpoints):
            (features,) = training_pass(
                "projected", plan, X, y, self.labels_, self.n_groups_,
                projector=self._projector(plan), n_jobs=self.n_jobs,
                batch_size=plan.batch_size(self.batch_size, self.n_components),
                progress=self._progress("group gradients"),
            )
            # checked finite block by block as the store is written
            self._group_features.append(store_features(self, features))

    def _projector(self, plan):
        return _engine.Projector(plan, self.n_components, self._projection_seed)

    def _stored_group_gradients(self, X):
        """Every checkpoint's exact group gradients, when all of them fit the store's budget."""
        # the checkpoints share the fitted module's shapes: size the store before
        # copying the module to load any of them
        plan = self._make_plan(self.estimator_, X)
        if not keeps_store(self, X, plan.n_params, _engine.module_dtype(plan.module).itemsize,
                           len(self._checkpoints)):
            return None
        return [build_store(self, plan) for plan, _ in self._checkpoint_plans(X, self._checkpoints)]

    # -- scoring --------------------------------------------------------------------

    def _score_groups(self, X, y):
        scores = np.zeros(self.n_groups_)
        for index, (plan, weight) in enumerate(self._checkpoint_plans(X, self._checkpoints)):
            grad = self._property_gradient(plan, X, y, progress=self._progress("property"))
            if self._group_features is not None:
                vector = self._projector(plan).dense(grad)
                scores += weight * score_with_store(vector, self._group_features[index])
            elif self._group_store is not None:
                scores += weight * score_with_store(plan.flatten(grad), self._group_store[index])
            else:
                dots = self._training_group_dots(plan, [g.unsqueeze(0) for g in grad])
                scores += weight * dots[:, 0]
        return scores

    def _self_influence(self):
        out = np.zeros(self.n_groups_)
        # a kept store (exact or projected) holds every group gradient: no checkpoint
        # is reloaded
        stores = self._group_features if self._group_features is not None else self._group_store
        if stores is not None:
            for store, (_, weight) in zip(stores, self._checkpoints):
                out += weight * squared_norms(store)
            return out
        for plan, weight in self._checkpoint_plans(self._X_fit, self._checkpoints):
            for groups, grads in self._group_gradient_blocks(plan):
                flat = plan.flatten(grads).double()
                out[groups] += weight * (flat * flat).sum(1).cpu().numpy()
        return out

    def _attribute(self, X, y):
        out = None
        for index, (plan, weight) in enumerate(self._checkpoint_plans(X, self._checkpoints)):
            if self._group_features is not None:
                part = self._attribute_projected(plan, X, y, index)
            elif self._group_store is not None:
                part = attribute_with_store(
                    self._per_sample_property_plan(plan), plan, X, y, self._group_store[index],
                    batch_size=plan.batch_size(self.batch_size, plan.n_params),
                    progress=self._progress("test gradients"))
            elif self.n_groups_ * plan.n_params * 4 <= _MAX_GROUP_GRADIENT_BYTES:
                part = self._attribute_exact(plan, X, y)
            else:
                part = self._attribute_streaming(plan, X, y)
            # at group size 1 the matrix is n_test x n_train: no avoidable copies
            if weight != 1.0:
                part *= np.float32(weight)
            out = part if out is None else np.add(out, part, out=out)
        return out

    def _attribute_projected(self, plan, X, y, index):
        return attribute_with_store(
            self._per_sample_property_plan(plan), plan, X, y, self._group_features[index],
            batch_size=plan.batch_size(self.batch_size, self.n_components),
            progress=self._progress("test gradients"), project=self._projector(plan))

    def _attribute_exact(self, plan, X, y):
        """Exact group gradients ``(k, p)`` once, then one matmul per test batch."""
        groups = plan.flatten(
            _engine.group_gradients(
                plan, self._X_fit, self._y_fit, self.labels_, self.n_groups_,
                batch_size=plan.batch_size(self.batch_size),
                progress=self._progress("group gradients"),
            )
        )
        out = np.empty((len(X), self.n_groups_), dtype=np.float32)
        for index, grads in _engine.iter_per_sample_gradients(
            self._per_sample_property_plan(plan), X, y,
            batch_size=plan.batch_size(self.batch_size, plan.n_params),
            progress=self._progress("test gradients"),
        ):
            out[index] = (plan.flatten(grads).to(groups.dtype) @ groups.T).cpu().numpy()
        return out

    def _attribute_streaming(self, plan, X, y):
        """Too many groups to hold their gradients: stream training data per test block."""
        out = np.empty((len(X), self.n_groups_), dtype=np.float32)
        for index, grads in _engine.iter_per_sample_gradients(
            self._per_sample_property_plan(plan), X, y, batch_size=_TEST_BLOCK
        ):
            out[index] = self._training_group_dots(plan, grads).T
        return out
