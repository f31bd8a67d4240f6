"""TRAK as an ensemble of Fisher influences of the model output (paper appendix A.4)."""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from numbers import Integral, Real

import joblib
import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.utils._param_validation import Interval

from .. import _engine
from ..models._resolve import prepare_net, train, training_recipe
from ..properties import _error_probability, _logits, _margin, _prediction
from ..utils._distributed import cluster_for
from ..utils._inputs import subset_rows, training_inputs
from ..utils._seeding import derive_seeds
from ..utils._targets import fit_targets_for
from ._base import BaseAttributor, net_plan
from ._docs import fill_attributor_doc
from ._kernel import (fit_kernel_state, kernel_scores, kernel_self_scores, penalty_diagonal,
                      property_vector, row_floats, sample_vectors)


@fill_attributor_doc
class TRAKAttributor(BaseAttributor):
    """TRAK for groups: Fisher influence of the model output, averaged over an ensemble.

    ``n_models`` nets are trained on random subsets (``train_fraction`` of
    the training data, 0.5 as in Park et al., 2023). For each, one pass over
    all training data gives the gradients ``phi_i`` of the margin
    ``f = log p_y - log(1 - p_y)`` (projected to ``n_components``), the
    kernel ``(1/n) sum_i phi_i phi_i^T``, and per group the sum of
    ``-(1 - p_i) phi_i`` -- which is the group's loss gradient, since for
    softmax cross-entropy ``grad loss = -(1 - p) grad f``. A group's score
    is

    .. math:: \\tau_j = \\frac{1}{M} \\sum_m \\frac{1}{n} \\nabla b_m^\\top
              (\\bar K_m + \\lambda I)^{-1} \\sum_{i \\in z_j} \\nabla \\ell_m(x_i)

    with ``b`` the property's badness (the mean test loss by default): the
    sign and scale convention of every skggda attributor (higher = the group
    helps), and linear in the training gradients, so group scores are sums of
    member scores. Without groups this is TRAK's estimator (without its
    sparsification step) applied to the property.

    For a regressor the model output is the prediction ``f(x)`` itself
    (single-target models): ``phi_i`` is its gradient and a group's sum
    weights each ``phi_i`` by the derivative of the sample's loss with
    respect to the prediction (``2 (f - y)`` for the squared error), which
    again makes it the group's loss gradient.

    The ``n_models`` trainings are independent joblib jobs (``n_jobs``), so
    any joblib backend, Dask included, can spread them; on Dask, each
    member's kernel pass is split over the workers too.

    Parameters
    ----------
    estimator : skorch net, scikit-learn model, Pipeline or FrozenEstimator, default=None
        The recipe: every ensemble member is an unfitted clone of it (a
        frozen net's architecture and training parameters are reused; a
        scikit-learn model is refitted by scikit-learn; a Pipeline's first
        steps are fitted once, on all the data). The model trained on all
        the data (``estimator_``) serves the groupers. The kinds of model
        accepted are those of :class:`TracInAttributor`.
    grouper : estimator, default=None
        %(grouper)s
    property : {"loss", "margin", "accuracy", "prediction"}, Property or callable, default="loss"
        %(property)s
    n_models : int, default=10
        Ensemble members, each trained on its own random subset.
    train_fraction : float, default=0.5
        Share of the training data every member is trained on.
    n_components : int, default=None
        Projection dimension; ``None`` uses all parameters (small models).
    damping : float, default=1e-3
        Added to the mean kernel before inversion.
    param_subset : "all", "last" or list of str, default="all"
        %(param_subset)s
    batch_size : int or "auto", default="auto"
        %(batch_size)s
    n_jobs : int, default=None
        Parallel trainings (joblib semantics: ``None`` is 1, ``-1`` all cores).
        With a Dask joblib backend active
        (``joblib.parallel_config(backend="dask")``) and ``n_jobs`` set
        (other than 1), each member's training-set pass is also split over
        the workers (members one after the other), with the same result as
        in this process; a Dask array ``X`` is always split by its row
        chunks. A grouper whose own ``n_jobs`` is ``None`` inherits it.
    warm_start : bool, default=False
        Refit with the ensemble already trained and only recompute the
        kernels, when the data, the net's parameters, ``n_models``,
        ``train_fraction`` and ``random_state`` are unchanged (checked with
        a hash of them; otherwise the ensemble is retrained): changing the
        grouper then costs one pass per member instead of ``n_models``
        trainings.
    verbose : int, default=0
        Progress bars over the gradient passes when positive.
    random_state : int, RandomState instance or None, default=None
        Seeds the members' subsets and trainings, the grouper (when its own
        ``random_state`` is ``None``) and the projection.

    Attributes
    ----------
    estimator_ : skorch net or ConvertedModel
        The model trained on all the training data (or the frozen one): the
        groupers read it; the scores come from the ensemble.
    estimators_ : list of skorch nets or ConvertedModel
        The ensemble members.
    subsets_ : list of ndarray
        Training indices of every member.
    training_seconds_ : float
        Wall-clock seconds spent training the members (``timings_``'s
        ``"gradients.training"`` of the fit that trained them; kept across
        warm starts: part of TRAK's cost whichever grouping uses the
        ensemble).
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
        TRAK's sub-stages: ``gradients.training`` (the ensemble's other
        nets) and ``gradients.kernels``.

    Examples
    --------
    An ensemble of three nets, scoring every training point:

    >>> import numpy as np
    >>> from skggda import TRAKAttributor
    >>> from skggda.models import make_classifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(120, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> attr = TRAKAttributor(make_classifier((8,), max_epochs=3), n_models=2,
    ...                       n_components=16, random_state=0).fit(X, y)
    >>> attr.score_groups(X[:30], y[:30]).shape
    (120,)
    """

    _parameter_constraints: dict = {
        **BaseAttributor._parameter_constraints,
        "n_models": [Interval(Integral, 1, None, closed="left")],
        "train_fraction": [Interval(Real, 0, 1, closed="right")],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "damping": [Interval(Real, 0, None, closed="left")],
        "n_jobs": [Integral, None],
        "warm_start": ["boolean"],
    }

    def __init__(self, estimator=None, *, grouper=None, property="loss", n_models=10,
                 train_fraction=0.5, n_components=None, damping=1e-3, param_subset="all",
                 batch_size="auto", n_jobs=None, warm_start=False, verbose=0,
                 random_state=None):
        self.estimator = estimator
        self.grouper = grouper
        self.property = property
        self.n_models = n_models
        self.train_fraction = train_fraction
        self.n_components = n_components
        self.damping = damping
        self.param_subset = param_subset
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.warm_start = warm_start
        self.verbose = verbose
        self.random_state = random_state

    def _fit_attribution(self, X, y, seed):
        rng = np.random.RandomState(seed)
        n = len(y)
        size = max(1, int(round(self.train_fraction * n)))
        subsets = [np.sort(rng.choice(n, size, replace=False)) for _ in range(self.n_models)]
        seeds = derive_seeds(rng, self.n_models)
        self._projection_seed = derive_seeds(rng)
        setup = _MemberSetup(self.labels_, self.n_groups_, self.param_subset, self.batch_size,
                             self.n_components, self._projection_seed,
                             regression=not hasattr(self, "classes_"))
        # a frozen net's recipe; a scikit-learn model's is refitted by scikit-learn
        template = training_recipe(self.estimator_ if self.estimator is None else self.estimator)
        fingerprint = joblib.hash((X, y, _describe(template.get_params(deep=False)),
                                   subsets, seeds))
        n_classes = len(self.classes_) if hasattr(self, "classes_") else None  # None: regression
        if not self._can_reuse_members(fingerprint):
            # Training and the kernel pass are separate stages so that the
            # training's wall-clock time is known whatever n_jobs is.
            start = perf_counter()
            with self._stage("training"):
                self.estimators_ = Parallel(n_jobs=self.n_jobs)(
                    delayed(_fit_member)(template, X, y, subset, int(member_seed),
                                         n_classes)
                    for subset, member_seed in zip(subsets, seeds)
                )
            self.training_seconds_ = perf_counter() - start
            self.subsets_ = subsets
            self._members_fingerprint = fingerprint
        # a warm start lands here directly: same ensemble, new groups
        with self._stage("kernels"):
            if cluster_for(X, self.n_jobs) is not None:
                # each member's pass is split over the cluster's workers
                self._states = [_member_state(setup, net, X, y, self.n_jobs)
                                for net in self.estimators_]
            else:
                self._states = Parallel(n_jobs=self.n_jobs)(
                    delayed(_member_state)(setup, net, X, y) for net in self.estimators_
                )

    def _can_reuse_members(self, fingerprint):
        # Reuse only what was trained on the very same data, recipe and subsets.
        return self.warm_start and getattr(self, "_members_fingerprint", None) == fingerprint

    def _projector(self, plan):
        return _projector(plan, self.n_components, self._projection_seed)

    def _score_groups(self, X, y):
        scores = np.zeros(self.n_groups_)
        for net, state in zip(self.estimators_, self._states):
            plan = self._make_plan(net, X)
            with self._stage("property"):
                gradient = self._property_gradient(plan, X, y)
            with self._stage("solve"):
                vector = property_vector(plan, gradient, self._projector(plan))
                scores += kernel_scores(state, vector[None], self.damping)[0]
        return scores / self.n_models

    def _self_influence(self):
        with self._stage("solve"):
            return np.mean([kernel_self_scores(state, self.damping) for state in self._states],
                           axis=0)

    def _attribute(self, X, y):
        out = np.zeros((len(X), self.n_groups_), dtype=np.float32)
        for net, state in zip(self.estimators_, self._states):
            plan = self._make_plan(net, X)
            vectors = sample_vectors(self._per_sample_property_plan(plan), X, y,
                                     self._projector(plan),
                                     batch_size=plan.batch_size(
                                         self.batch_size, row_floats(plan, self.n_components)))
            out += kernel_scores(state, vectors, self.damping).astype(np.float32)
        return out / self.n_models


def _describe(value):
    """A hashable description of a training recipe (net parameters, recursively).

    A fitted net's parameters hold live objects (a callback's scheduler and
    its optimizer, whose state is keyed by tensors) that neither pickle
    stably nor hash; what defines the recipe is their types and their own
    parameters.
    """
    if value is None or isinstance(value, (str, bytes, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return sorted((str(k), _describe(v)) for k, v in value.items())
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, torch.nn.Module):
        return repr(value)  # the architecture
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return joblib.hash(np.asarray(value.detach().cpu() if torch.is_tensor(value) else value))
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if hasattr(value, "get_params"):
        return kind, _describe(value.get_params(deep=False))
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', kind)}"
    return kind


class _OfLogits:
    """``fn(logits, y)`` on the net's class logits (picklable, for joblib jobs)."""

    def __init__(self, fn, loss_fn):
        self.fn, self.loss_fn = fn, loss_fn

    def __call__(self, output, y):
        return self.fn(_logits(output, self.loss_fn), y)


@dataclass
class _MemberSetup:
    """What an ensemble job needs besides the data (small, so jobs pickle cheaply)."""

    labels: np.ndarray
    n_groups: int
    param_subset: object
    batch_size: int | str
    n_components: int | None
    projection_seed: int
    regression: bool = False


def _projector(plan, n_components, seed):
    return None if n_components is None else _engine.Projector(plan, n_components, seed)


def _fit_member(template, X, y, subset, seed, n_classes):
    """Train one ensemble member on ``subset`` (a joblib job).

    A classifier keeps an output for each of the ``n_classes`` classes even
    when its subset lacks some: the margin reads the logit of every label.
    """
    net = prepare_net(template, seed, n_classes=n_classes)
    return train(net, *training_inputs(subset_rows(X, subset), fit_targets_for(net, y[subset])))


def _member_state(setup, net, X, y, n_jobs=None):
    """One pass over all training data: the member's output kernel and group gradients.

    ``n_jobs`` splits the pass over Dask workers (see :func:`training_pass`).
    """
    plan = net_plan(net, X, setup.param_subset)
    if setup.regression:
        output_plan = plan.with_loss(_prediction)
        weights = _LossSlope(plan.loss_fn)
    else:
        output_plan = plan.with_loss(_OfLogits(_margin, plan.loss_fn))
        # grad loss_i = -(1 - p_i) grad margin_i for softmax cross-entropy: the
        # weights come from the same forward pass as the margin gradients
        weights = _OfLogits(_negative_error_probability, plan.loss_fn)
    return fit_kernel_state(
        output_plan, X, y, setup.labels, setup.n_groups,
        _projector(output_plan, setup.n_components, setup.projection_seed),
        batched=False, group_weights=weights, penalty=penalty_diagonal(plan, net),
        batch_size=plan.batch_size(setup.batch_size, row_floats(plan, setup.n_components)),
        n_jobs=n_jobs,
    )


class _LossSlope:
    """``d loss / d prediction`` per sample: grad loss_i = slope_i grad f_i (picklable)."""

    def __init__(self, loss_fn):
        self.loss_fn = loss_fn

    def __call__(self, output, y):
        with torch.enable_grad():  # also called inside no-grad passes
            output = output.detach().requires_grad_(True)
            (slope,) = torch.autograd.grad(self.loss_fn(output, y).sum(), output)
        return slope.reshape(slope.shape[0], -1).sum(1)


def _negative_error_probability(logits, y):
    """``-(1 - p_y)``: a sample's loss gradient over its margin gradient."""
    return -_error_probability(logits, y)
