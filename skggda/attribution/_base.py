"""Base class of the attributors: the public verbs, implemented once.

``fit`` validates the data, trains a clone of the net (or takes a frozen
one), forms the groups and hands over to the subclass's
``_fit_attribution``; ``score_groups`` and ``attribute`` validate the
property data and call ``_score_groups`` / ``_attribute``. A failed ``fit``
leaves the estimator exactly as it was.
"""

from __future__ import annotations

import copy
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from .. import _engine
from ..models._loss import PerSampleLoss
from ..models._resolve import fit_or_freeze, unwrap_frozen
from ..properties import EvaluationData, Property, check_property_task, resolve_property
from ..utils._distributed import training_pass
from ..utils._groups import canonicalize_groups, check_partition, compact_labels
from ..utils._inputs import check_fit_data, check_test_data
from ..utils._pipeline import model_input, preprocessing_pipeline
from ..utils._seeding import derive_seeds, seeded_clone
from ..utils._targets import (
    check_fit_targets,
    decoded_targets,
    encode_targets,
    is_regression,
)
from ..utils._state import restored_on_error
from ..utils._timings import stage_clock, substage
from ..utils._finite import check_finite_scores
from ._numerics import OVERFLOW, check_property_gradient
from . import _store

#: Exact group gradients for self-influence are formed this many bytes at a time.
_GROUP_BLOCK_BYTES = 1 << 28


class BaseAttributor(BaseEstimator):
    """Shared machinery of :class:`TracInAttributor` and the other attributors.

    Subclasses implement ``_fit_attribution(X, y, seed)`` (the training-side
    state), ``_score_groups(X, y)``, ``_attribute(X, y)`` and
    ``_self_influence()``; they may add callbacks to the net before training
    with ``_training_callbacks()``.
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "grouper": [HasMethods(["fit"]), None],
        "property": [StrOptions({"loss", "margin", "accuracy", "prediction"}), Property, callable],
        "param_subset": [StrOptions({"all", "last"}), list],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        return tags

    # -- fit ------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None):
        """Train the net (unless frozen), form the groups, cache the training side.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Training inputs (2-D features, or N-D arrays such as images; for
            a Pipeline estimator, whatever its first step takes, e.g. a
            DataFrame).
        y : array-like of shape (n_samples,)
            Class labels (any type scikit-learn accepts), or numeric targets
            for a regressor.
        groups : array-like of shape (n_samples,), default=None
            A fixed grouping: one hashable label per sample. Mutually
            exclusive with the ``grouper`` parameter. With neither, every
            sample is its own group (classical per-point attribution).

        Returns
        -------
        self : object
            Fitted attributor.
        """
        with restored_on_error(self):
            self._fit(X, y, groups)
        return self

    def _fit(self, X, y, groups):
        if self.grouper is not None and groups is not None:
            raise ValueError(
                "Pass either the grouper parameter or the groups argument of fit, not both."
            )
        preprocessed = preprocessing_pipeline(self.estimator) is not None
        X, y = check_fit_data(self, X, y, preprocessed=preprocessed)
        y = check_fit_targets(y, self.estimator)
        check_property_task(self.property, regression=is_regression(self.estimator))
        n = _engine.n_samples(X)
        given = None if groups is None else canonicalize_groups(groups, n)
        net_seed, grouper_seed, attribution_seed = map(int, derive_seeds(self.random_state, 3))
        self._check_params(unwrap_frozen(self.estimator)[1])
        with stage_clock("training") as training:
            resolved = fit_or_freeze(self.estimator, X, y, net_seed, self._training_callbacks())
        self.estimator_ = resolved.net
        self._adopt_targets(resolved.classes)
        self._preprocessor = resolved.preprocessor
        X, y_encoded = resolved.X, resolved.y_encoded
        if resolved.classes is not None:
            y_encoded = compact_labels(y_encoded, len(resolved.classes))

        with stage_clock("grouping") as grouping:
            self.labels_, self.groups_ = self._form_groups(X, y_encoded, given, grouper_seed)
            self.n_groups_ = len(self.groups_)

        self._X_fit, self._y_fit = X, y_encoded
        with stage_clock("gradients") as gradients:
            self._fit_attribution(X, y_encoded, attribution_seed)
        self.timings_ = {**training, **grouping, **gradients}

    def _adopt_targets(self, classes):
        """Keep the label encoding (a regressor has no ``classes_``)."""
        self.__dict__.pop("classes_", None)
        if classes is not None:
            self.classes_ = classes

    def _form_groups(self, X, y, given, seed):
        """``(labels, originals)`` from the grouper, the ``groups`` argument, or singletons."""
        self.__dict__.pop("grouper_", None)  # only a fit that used a grouper has one
        if given is not None:
            return given
        n = _engine.n_samples(X)
        if self.grouper is None:
            labels = compact_labels(np.arange(n), n)
            return labels, np.arange(n)
        self.grouper_ = self._fit_grouper(X, y, seed)
        labels = check_partition(self.grouper_.labels_, n)
        return labels, np.arange(int(labels.max()) + 1)

    def _fit_grouper(self, X, y, seed):
        # model-based groupers reuse the attributor's net instead of training one;
        # a grouper without its own n_jobs splits its passes like the attributor
        grouper = seeded_clone(self.grouper, seed, estimator=FrozenEstimator(self.estimator_),
                               n_jobs=getattr(self, "n_jobs", None))
        # the labels as given: a frozen model's own classes encode them again
        return grouper.fit(X, decoded_targets(y, getattr(self, "classes_", None)))

    def _check_params(self, frozen):
        """Subclass hook: reject parameter combinations before any work."""

    def _training_callbacks(self):
        """Subclass hook: ``(name, callback)`` pairs added to the net before training."""
        return []

    # -- property data ----------------------------------------------------------

    def _property_data(self, X, y, allow_default):
        if X is None and y is None and allow_default:
            return self._X_fit, self._y_fit
        labelled_dataset = isinstance(X, torch.utils.data.Dataset)
        if X is None or (y is None and not labelled_dataset):
            raise ValueError(
                "Pass both X and y: the property is evaluated on labelled data."
                + (" Pass neither to use the training data." if allow_default else "")
            )
        X, y = check_test_data(self, X, y, preprocessed=self._preprocessor is not None)
        return model_input(self._preprocessor, X), encode_targets(y, getattr(self, "classes_", None))

    def _model_input(self, X):
        """``X`` validated against ``fit``, then through a Pipeline's preprocessing.

        The scorers of :mod:`skggda.metrics` call it for their validation fold.
        """
        X, _ = check_test_data(self, X, preprocessed=self._preprocessor is not None)
        return model_input(self._preprocessor, X)

    def _timed(self, stage, compute, *args):
        """Run a scoring method; its stage times go to :func:`~skggda.utils.record_timings`."""
        with stage_clock(stage):
            return self._checked_scores(compute(*args))

    def _checked_scores(self, scores):
        """Subclass hook: refuse non-finite scores (overflowing gradients)."""
        return check_finite_scores(scores, OVERFLOW)

    def score_groups(self, X=None, y=None):
        """Attribute the property evaluated on ``(X, y)`` to every group.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), default=None
            Evaluation inputs of the property (e.g. a test set). ``None`` (with
            ``y=None``) evaluates the property on the training data.
        y : array-like of shape (n_samples,), default=None
            Labels (or regression targets) of ``X``.

        Returns
        -------
        scores : ndarray of shape (n_groups,)
            Higher means the group helps: removing it is predicted to make the
            property worse (test loss goes up). Entry ``j`` belongs to
            ``groups_[j]``.
        """
        check_is_fitted(self)
        X, y = self._property_data(X, y, allow_default=True)
        return self._timed("scoring", self._score_groups, X, y)

    def attribute(self, X, y):
        """Per-test-point attributions: one row per sample of ``(X, y)``.

        Row ``i`` attributes the loss of sample ``i`` to every group, with the
        same sign convention as :meth:`score_groups`; the mean of the rows
        equals ``score_groups(X, y)`` for the default mean-loss property.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Evaluation inputs, one row of attributions each.
        y : array-like of shape (n_samples,)
            Labels (or regression targets) of ``X``.

        Returns
        -------
        attributions : ndarray of shape (n_samples, n_groups), float32
            float32 because at group size 1 the matrix has one entry per
            pair of evaluation and training samples.
        """
        check_is_fitted(self)
        X, y = self._property_data(X, y, allow_default=False)
        return self._timed("attribution", self._attribute, X, y)

    def top_groups(self, X, y=None, *, n=10):
        """The ``n`` groups that most help and most harm each prediction: why this prediction?

        Named and shaped as scikit-learn's ``kneighbors``: one row per query.
        The scores are those of :meth:`attribute`, computed for blocks of
        queries and reduced to their extremes, so memory stays at one block
        of rows whatever the number of queries. With a group store (see the
        user guide's "Explaining predictions") a block costs its queries'
        gradients and one matrix product.

        Parameters
        ----------
        X : array-like of shape (n_queries, ...)
            The inputs whose predictions are explained.
        y : array-like of shape (n_queries,), default=None
            Their labels. ``None`` explains each prediction as the model made
            it: the loss at the class it predicts (for a classifier; a
            regressor's loss at its own prediction is zero, so pass ``y``).
        n : int, default=10
            Groups returned per query and side; at most ``n_groups_``.

        Returns
        -------
        top : Bunch
            ``helpful_indices`` and ``helpful_scores``, ``harmful_indices`` and
            ``harmful_scores``, each of shape ``(n_queries, n)``: group
            indices (``groups_[j]`` is group ``j``'s label) and their scores,
            the most helpful (highest score) and the most harmful (lowest)
            first.
        """
        check_is_fitted(self)
        if isinstance(n, bool) or not isinstance(n, Integral) or not 1 <= n <= self.n_groups_:
            raise ValueError(f"n must be an integer in [1, n_groups_={self.n_groups_}], got {n!r}.")
        if y is None:
            y = self._predicted_labels(X)
        X, y = self._property_data(X, y, allow_default=False)
        rows = max(1, _store.QUERY_BLOCK_BYTES // (4 * self.n_groups_))
        parts = [_store.extremes(self._timed("attribution", self._attribute, X[start:start + rows],
                                      y[start:start + rows]), n)
                 for start in range(0, len(y), rows)]
        return Bunch(**{key: np.concatenate([part[key] for part in parts])
                        for key in parts[0]})

    def _predicted_labels(self, X):
        """The model's own predictions for ``X``, as labels of ``classes_``."""
        X_model = self._model_input(X)
        classes = getattr(self, "classes_", None)
        if classes is None:  # a regressor: its predictions
            return np.asarray(self.estimator_.predict(X_model)).reshape(-1)
        return np.asarray(classes)[np.asarray(self.estimator_.predict_proba(X_model)).argmax(1)]

    def self_influence(self):
        """Each group's influence on its own training loss: one value per group.

        The score of group ``j`` for the property "the summed training loss
        of group ``j``", with the attributor's own curvature and scale:

        * :class:`TracInAttributor`: ``sum_t eta_t ||G_j(theta_t)||^2``, the
          squared norm of the group's gradient sum ``G_j`` (``"last"``) or
          its learning-rate-weighted sum over the recorded checkpoints
          (``"all"``; Pruthi et al., 2020); on projected gradients when
          ``n_components`` is set;
        * :class:`InfluenceAttributor`: ``(1/n) G_j^T (C + lambda I)^{-1}
          G_j`` with the solver's curvature ``C`` and damping (projected for
          ``solver="fisher"`` with ``n_components``);
        * :class:`TRAKAttributor`: its ensemble analogue, the mean over
          members of ``(1/n) G_j^T (K_m + lambda I)^{-1} G_j`` with member
          ``m``'s projected loss gradients and margin kernel ``K_m``.

        **Sign.** Every group helps its own loss, so the values are
        non-negative (up to rounding, and for positive semi-definite
        curvatures: ``"cg"`` / ``"exact"`` on a Hessian with negative
        eigenvalues can give negative ones). A *large* value marks a group
        whose loss only it explains -- atypical or mislabeled data that the
        net memorised -- the opposite reading of :meth:`score_groups`, where
        harmful groups score low. To inspect suspicious groups first with
        :func:`~skggda.metrics.noisy_label_auc` (which inspects increasing
        scores), pass ``-self_influence()``.

        **Cost.** Exact group gradients, formed a block of groups at a time
        (one pass over the training data per checkpoint), then one solve per
        group for the Hessian solvers; nothing but a product with the stored
        projected group gradients for ``n_components`` / Fisher / TRAK.
        Like :meth:`score_groups`, it changes no fitted state; its stage
        times (``"self_influence"`` and its sub-stages) go to
        :func:`~skggda.utils.record_timings`.

        Returns
        -------
        self_influence : ndarray of shape (n_groups,)
            Entry ``j`` belongs to ``groups_[j]``.
        """
        check_is_fitted(self)
        return self._timed("self_influence", self._self_influence)

    # -- engine plumbing for subclasses -----------------------------------------

    def _make_plan(self, net, X_probe, module=None):
        """The engine's plan for ``net`` (or a working copy ``module`` of its module)."""
        return net_plan(net, X_probe, self.param_subset, module)

    def _checkpoint_plans(self, X_probe, checkpoints):
        """Yield ``(plan, weight)`` per checkpoint ``(state_dict or None, weight)``.

        The plan is built once; checkpoints are loaded into one working copy of
        the module so the fitted net is never modified.
        """
        module = self.estimator_.module_
        if any(state is not None for state, _ in checkpoints):
            module = copy.deepcopy(module)
        plan = self._make_plan(self.estimator_, X_probe, module)
        for state, weight in checkpoints:
            if state is not None:
                module.load_state_dict(state)
            yield plan, weight

    def _stage(self, name):
        """Time a sub-stage of the current fit or scoring call (a context manager)."""
        return substage(name)

    def _progress(self, label):
        return label if self.verbose else False

    # -- the property ------------------------------------------------------------

    def _property_gradient(self, plan, X, y, progress=False):
        """Gradient of the property's badness on ``(X, y)``, in block layout."""
        prop = resolve_property(self.property)
        if prop.whole_data:
            gradient = _engine.function_gradient(
                plan, lambda module, X_, y_: prop.sign * prop.value(module, X_, y_), X, y)
            return check_property_gradient(gradient, prop)
        losses = None
        if prop.needs_losses:
            losses = _engine.sample_values(plan, X, y, batch_size=plan.batch_size(self.batch_size))
            losses = losses.cpu().numpy()
        weights = prop.weights(EvaluationData(X, y, getattr(self, "classes_", None), losses))
        gradient = _engine.loss_gradient(
            plan.with_loss(_BadnessTerms(prop, plan.loss_fn)), X, y,
            sample_weight=weights, batch_size=plan.batch_size(self.batch_size), progress=progress,
        )
        return check_property_gradient(gradient, prop)

    def _per_sample_property_plan(self, plan):
        """A plan whose per-sample function is each evaluation sample's badness term."""
        prop = resolve_property(self.property)
        if not getattr(prop, "per_sample", False):
            raise ValueError(
                f"property={prop!r} is not a sum of per-sample terms, so a row per "
                "evaluation sample is undefined; use score_groups instead of attribute."
            )
        return plan.with_loss(_BadnessTerms(prop, plan.loss_fn))

    def _group_gradient_blocks(self, plan):
        """Yield ``(groups, gradients)``: exact loss-gradient sums of consecutive
        blocks of groups, block layout ``(len(groups), ...)``.

        Blocks are at most :data:`_GROUP_BLOCK_BYTES`; each reads only its
        groups' training rows (lazily, batch by batch), so all blocks
        together make one pass.
        """
        n_groups = self.n_groups_
        itemsize = _engine.module_dtype(plan.module).itemsize
        size = max(1, _GROUP_BLOCK_BYTES // max(1, plan.n_params * itemsize))
        progress = self._progress("group gradients")
        if size >= n_groups:
            yield np.arange(n_groups), _engine.group_gradients(
                plan, self._X_fit, self._y_fit, self.labels_, n_groups,
                batch_size=plan.batch_size(self.batch_size), progress=progress)
            return
        order = np.argsort(self.labels_, kind="stable")
        firsts = np.arange(0, n_groups, size)
        edges = np.searchsorted(self.labels_[order], np.append(firsts, n_groups))
        for first, start, stop in zip(firsts, edges[:-1], edges[1:]):
            rows = order[start:stop]
            groups = np.arange(first, min(first + size, n_groups))
            yield groups, _engine.group_gradients(
                plan, _engine.IndexedRows(self._X_fit, rows), self._y_fit[rows],
                self.labels_[rows] - first, len(groups),
                batch_size=plan.batch_size(self.batch_size), progress=progress)

    def _training_group_dots(self, plan, directions, progress_label="training gradients"):
        """``(n_groups, m)`` numpy: group gradient sums of the training data dotted with directions."""
        (dots,) = training_pass(
            "dots", plan, self._X_fit, self._y_fit, self.labels_, self.n_groups_,
            directions=directions, n_jobs=getattr(self, "n_jobs", None),
            batch_size=plan.batch_size(self.batch_size), progress=self._progress(progress_label),
        )
        return dots.cpu().numpy()

    # -- for the metrics ----------------------------------------------------------

    def _training_data(self):
        """``(X, y)`` of the last fit, ``y`` as indices into ``classes_``.

        The one way for code outside the estimator (the scorers of
        :mod:`skggda.metrics`, which retrain on the training fold) to reach
        the fitted training data; how the estimator stores it may change.
        """
        check_is_fitted(self)
        return self._X_fit, self._y_fit


def net_plan(net, X_probe, param_subset, module=None):
    """The engine's plan for a skorch ``net``, probing its module on a few rows of ``X_probe``."""
    module = net.module_ if module is None else module
    device, dtype = _engine.module_device(module), _engine.module_dtype(module)
    probe = _engine.to_device(_engine.probe_batch(X_probe), device, dtype)
    return _engine.make_plan(module, PerSampleLoss(net.criterion_), probe, param_subset)


class _BadnessTerms:
    """Per-sample badness ``sign * h(output, y)`` of a property, as an engine loss."""

    def __init__(self, prop, loss_fn):
        self.prop, self.loss_fn = prop, loss_fn

    def __call__(self, output, y):
        return self.prop.sign * self.prop.terms(output, y, self.loss_fn)
