"""Influence functions for groups (paper section 4, appendices A.1 and A.3)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from .. import _engine
from ..utils._convergence import warn_unconverged
from ._base import BaseAttributor
from ._checkpoints import TrainingCheckpoints
from ._docs import fill_attributor_doc
from ._influence_ensemble import EnsembleMembers
from ._influence_store import KRONECKER_SOLVERS, StoredGradients, mean_eigenvalue
from ._numerics import check_finite_state
from ._kernel import (fit_kernel_state, kernel_scores, kernel_self_scores, penalty_diagonal,
                      property_vector, row_floats, sample_vectors)
from . import _store
from ._store import attribute_with_store, build_store, keeps_store, score_with_store

_TEST_BLOCK = 64
#: Solvers with a fixed curvature: their preconditioned group gradients are stored at fit.
_STORED = ("exact", "kfac", "ekfac")
#: Damping of the solvers other than K-FAC / EK-FAC when ``damping=None``.
DEFAULT_DAMPING = 1e-3
#: The Fisher matrices each Fisher-based solver accepts; the first is its default.
_FISHERS = {"fisher": ("batched", "empirical"), "kfac": ("true", "empirical"),
            "ekfac": ("true", "empirical")}


@fill_attributor_doc
class InfluenceAttributor(TrainingCheckpoints, EnsembleMembers, StoredGradients,
                          BaseAttributor):
    """Group influence functions: inverse-curvature-weighted gradient products.

    The score of group ``z_j`` for the property's badness ``b`` (by default
    the mean loss on the evaluation data) is

    .. math:: \\tau_j = \\frac{1}{n} \\nabla b^\\top (C + \\lambda I)^{-1}
              \\sum_{x \\in z_j} \\nabla \\ell(x)

    -- the first-order change of ``b`` when the group is removed from the
    training set (Koh & Liang, 2017, applied to groups). ``C`` approximates
    the Hessian of the mean training loss; ``solver`` chooses how:

    * ``"fisher"`` (default): the empirical Fisher, on gradients projected to
      ``n_components`` dimensions (or the full parameters when ``None``).
      ``fisher="batched"`` builds it from the ``n_groups`` group gradients as
      in the paper's GGDA variant, ``"empirical"`` from per-sample gradients;
      both come out of the same single pass as the group gradients.
    * ``"lissa"``: a stochastic Neumann series of Hessian-vector products on
      minibatches (Koh & Liang's recursion with ``damping``, ``lissa_scale``,
      ``lissa_depth``, ``lissa_repeat``; its fixed point solves
      ``(H + damping * lissa_scale * I) x = v``). Its cost is its
      Hessian-vector products, independent of the number of groups.
    * ``"cg"``: conjugate gradients with full-data Hessian-vector products.
    * ``"exact"``: the explicit Hessian (small models), eigendecomposed once
      in ``fit`` (float64, on the net's device). A damped Hessian that is
      singular (``damping=0`` with dead ReLU units, say) is solved by its
      pseudo-inverse: eigenvalues of ``H + damping I`` at most ``p`` times
      the machine epsilon of the net's dtype (at least float32) times the
      largest one in magnitude count as zero, and their directions get no
      weight.
    * ``"ekfac"``: eigenvalue-corrected K-FAC (George et al., 2018; Grosse et
      al., 2023), as in kronfluence. Per ``nn.Linear`` and ``nn.Conv2d``, the
      Fisher is approximated by the Kronecker product of the input-activation
      covariance (with a ones column for the bias) and the output-gradient
      covariance, both read from layer hooks in one pass and
      eigendecomposed in float64 (a convolution's output positions are its
      rows: the first factor averages over them, the second sums, as in
      Grosse & Martens, 2016); a second pass replaces the eigenvalues by the
      second moments of the per-sample gradients in that eigenbasis (never
      storing a gradient).
    * ``"kfac"``: the same Kronecker factors without the correction (one pass).

    With ``"kfac"`` and ``"ekfac"`` the parameters of other layers (norm
    layers, and everything differentiated with ``torch.func``) get the
    diagonal Fisher (the mean squared per-sample gradient) instead: an
    explicit fallback, no Kronecker structure. The true Fisher reads the
    net's predictive distribution as the softmax of its logits (the log of
    its probabilities for skorch's ``NLLLoss`` nets): use
    ``fisher="empirical"`` for other criteria. Scoring preconditions the
    property gradient once and makes one TracIn-style pass over the training
    data, so the cost does not grow with the number of groups; ``fit`` costs
    one pass (K-FAC) or two (EK-FAC) plus the eigendecompositions.

    **Sign and scale.** As for every skggda attributor: a higher score means
    the group helps (removing it is predicted to raise the test loss), and
    group size 1 is the classical per-point influence. With a fixed curvature
    (``"fisher"`` with ``fisher="empirical"``, ``"exact"``, ``"cg"``,
    ``"kfac"``, ``"ekfac"``) a group's score is exactly the sum of its
    members' scores.

    Parameters
    ----------
    estimator : skorch net, scikit-learn model, Pipeline or FrozenEstimator, default=None
        %(estimator)s
        A converted scikit-learn model's L2 penalty (``C``, ``alpha``) is
        part of the curvature of every solver: added to the explicit
        Hessian and the Fisher kernel (projected with the gradients), and
        to the damping of CG and LiSSA. Group gradients are data terms
        only: removing a group leaves the penalty.
    grouper : estimator, default=None
        %(grouper)s
    property : {"loss", "margin", "accuracy", "prediction"}, Property or callable, default="loss"
        %(property)s
    solver : {"fisher", "lissa", "cg", "exact", "kfac", "ekfac"}, default="fisher"
        How the curvature ``C`` is approximated and inverted (see above).
    fisher : {"auto", "batched", "empirical", "true"}, default="auto"
        Which Fisher matrix the Fisher-based solvers use. For
        ``solver="fisher"``: ``"batched"`` (the paper's, from group
        gradients) or ``"empirical"`` (from per-sample gradients at the
        given labels). For ``"kfac"`` / ``"ekfac"``: ``"true"`` (each
        sample's loss at a label drawn from the model's predictive
        distribution, seeded by ``random_state``; its expectation is the
        Gauss-Newton matrix) or ``"empirical"`` (at the given labels).
        ``"auto"`` is ``"batched"`` for ``"fisher"`` and ``"true"`` for
        ``"kfac"`` / ``"ekfac"``; the Hessian solvers ignore it.
    damping : float, "auto" or None, default=None
        Tikhonov damping ``lambda`` added to the curvature (for LiSSA, in
        Koh & Liang's convention). ``None`` is 1e-3 for ``"fisher"``,
        ``"lissa"``, ``"cg"`` and ``"exact"``, and for ``"kfac"`` /
        ``"ekfac"`` 0.1 times the mean eigenvalue of each layer's
        curvature (kronfluence's convention), so each layer is damped in
        proportion to its own scale. A float applies to every layer.
        ``"auto"`` (``"kfac"`` / ``"ekfac"`` only) is one value for every
        layer: the mean eigenvalue of the whole fitted curvature,
        ``trace(C) / p`` (of each member's, in an ensemble). On the
        project's LDS benchmarks it beat the default: HELOC's MLP 0.724
        against 0.655 (EK-FAC, 500 test points), MNIST-10's MLP 0.508
        against 0.428 (first 100 test points), as good as the best fixed
        value of the grid there (``benchmarks/FIDELITY.md``).
    n_components : int, default=None
        Projection dimension for ``solver="fisher"``, ``"kfac"`` and
        ``"ekfac"``; ``None`` works with all ``p`` parameters (for
        ``"fisher"`` a ``p x p`` matrix: small models only). With
        ``"kfac"`` / ``"ekfac"`` the projected group gradients are stored
        at ``fit`` (see ``memory``), so ``attribute`` costs the queries'
        projected gradients and one product: see ``projection``.
    projection : {"eigen", "random"}, default="eigen"
        How ``"kfac"`` / ``"ekfac"`` project to ``n_components``.
        ``"eigen"`` keeps each layer's coordinates with the largest
        eigenvalues of the fitted (full-width) curvature, in its Kronecker
        eigenbasis: the exact solver restricted to the directions where the
        curvature lives (deterministic; at full width it equals the
        unprojected solver). ``"random"`` is LoGra's (Choe et al., 2024):
        seeded Gaussian Kronecker projections of each layer's activations
        and output gradients (``random_state`` seeds them, drawn on the
        CPU), with the factors and EK-FAC's correction fitted in the
        projected space; it never forms a full-width factor, for layers too
        wide to eigendecompose. On dattri's MNIST-10 MLP, at ``r = 1024``,
        ``"eigen"`` kept EK-FAC's LDS and ``"random"`` lost a third of it
        (``benchmarks/FIDELITY.md``).
    n_models : int, default=1
        Influence ensemble: ``fit`` trains ``n_models`` nets with
        independent seeds on all the training data, fits the solver on each
        (the same groups, formed once on the first net) and every scoring
        method returns the mean of their scores. The first net is the one a
        single attributor trains (``estimator_``); net ``m >= 1`` is the one
        the single attributor with ``random_state`` ``r_m`` trains, its
        seed replacing the net's own ``random_state`` so that the nets
        differ (``r_m`` is drawn from this attributor's ``random_state``),
        and its solver is seeded like that attributor's. With a fixed
        curvature a group's score stays the sum of its members' scores.
        **Cost:** ``n_models`` trainings (the extra ones as ``n_jobs``
        joblib jobs) and ``n_models`` solver fits; every scoring call costs
        ``n_models`` times a single attributor's. ``1`` is the single
        attributor, unchanged. Needs an unfitted net or model: a
        ``FrozenEstimator`` raises ``ValueError`` (nothing to retrain).
        :meth:`top_groups` without ``y`` explains the first net's
        predictions. On HELOC's MLP, EK-FAC's LDS rose from 0.730 (one
        model) to 0.793 (five; ``benchmarks/FIDELITY.md``).
    checkpoints : {"last", "all"}, default="last"
        ``"last"`` fits the solver at the final weights. ``"all"`` fits it
        at the checkpoint recorded after every training epoch and sums the
        epochs' scores, each weighted by that epoch's mean learning rate, as
        :class:`TracInAttributor` does (needs training: not available with
        a frozen net or a converted scikit-learn model). **Cost:** one
        training, ``n_epochs`` solver fits and ``n_epochs`` times a single
        attributor's scoring; with ``n_models``, ``n_models`` trainings and
        ``n_models * n_epochs`` fits (the sum over checkpoints is averaged
        over the models).
    lissa_depth : int, default=200
        Steps of LiSSA's recursion per estimate: its Neumann series is
        truncated after this many Hessian-vector products.
    lissa_repeat : int, default=20
        Independent LiSSA estimates averaged (each on its own minibatches).
    lissa_scale : float, default=50
        LiSSA divides the Hessian by this scale so that the recursion
        converges: it should exceed the Hessian's largest eigenvalue.
    lissa_batch_size : int, default=128
        Minibatch size of LiSSA's Hessian-vector products. A product is
        vectorised over the vectors solved at once (a block of test points
        or of groups), each holding the minibatch's activations: the
        vectors are taken in chunks so that rows times vectors stays within
        the rows of one ``batch_size`` batch (at least one vector at a time).
    cg_max_iter : int, default=100
        Maximum conjugate-gradient iterations per solve (``solver="cg"``);
        a solve that stops unconverged warns. Its Hessian-vector products
        bound rows times vectors solved at once by the rows of one
        ``batch_size`` batch: batches shrink, then the vectors are chunked.
    param_subset : "all", "last" or list of str, default="all"
        %(param_subset)s
    batch_size : int or "auto", default="auto"
        %(batch_size)s
    memory : str, joblib.Memory or None, default=None
        %(memory)s
    n_jobs : int, default=None
        The ``n_models - 1`` extra trainings of an ensemble run as this many
        joblib jobs (``None`` is 1; each training is seeded by its member's
        seed, whichever process runs it).
        %(n_jobs)s
        With ``"fisher"`` the Fisher pass is split, with the other solvers
        the scoring pass.
    verbose : int, default=0
        Progress bars over the gradient passes when positive.
    random_state : int, RandomState instance or None, default=None
        Seeds the net's training (when the net's own ``random_state`` is
        ``None``) and the grouper (likewise).
        It also seeds the projection, LiSSA's minibatches and the true
        Fisher's labels.

    Attributes
    ----------
    estimator_ : skorch net or ConvertedModel
        The trained (or frozen) model that is attributed (a Pipeline's last
        step).
    estimators_ : list of skorch net or ConvertedModel
        The ``n_models`` trained nets of an ensemble, ``estimator_`` first
        (only with ``n_models > 1`` or ``checkpoints="all"``).
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
        Influence's sub-stages: ``gradients.curvature`` (every solver);
        ``gradients.factors`` and ``gradients.eigendecomposition`` (K-FAC
        and EK-FAC), ``gradients.correction`` (EK-FAC),
        ``gradients.store`` (a projected store); ``gradients.training``
        and ``gradients.members`` (an ensemble of nets or checkpoints).
        For ``"kfac"`` / ``"ekfac"`` the ``gradients`` stage breaks down
        into ``"gradients.factors"``, ``"gradients.eigendecomposition"``
        and ``"gradients.correction"``; the scoring sub-stages (e.g.
        ``"scoring.solve"``) go to :func:`~skggda.utils.record_timings`.

    See Also
    --------
    TracInAttributor : The identity-curvature special case.
    TRAKAttributor : An ensemble of Fisher influences of the model output.

    Examples
    --------
    Fisher influence of random groups, then EK-FAC on the same (frozen) net:

    >>> from sklearn.datasets import make_classification
    >>> from skggda import InfluenceAttributor, RandomGrouper
    >>> from skggda.models import make_classifier
    >>> X, y = make_classification(200, 4, random_state=0)
    >>> attr = InfluenceAttributor(make_classifier((8,), max_epochs=5, random_state=0),
    ...                            grouper=RandomGrouper(group_size=20),
    ...                            n_components=32, random_state=0).fit(X, y)
    >>> attr.score_groups(X[:50], y[:50]).shape
    (10,)
    >>> from sklearn.frozen import FrozenEstimator
    >>> ekfac = InfluenceAttributor(FrozenEstimator(attr.estimator_), solver="ekfac",
    ...                             grouper=RandomGrouper(group_size=20),
    ...                             random_state=0).fit(X, y)
    >>> ekfac.score_groups(X[:50], y[:50]).shape
    (10,)
    >>> ekfac.self_influence().shape  # large for groups only they explain
    (10,)
    """

    _parameter_constraints: dict = {
        **BaseAttributor._parameter_constraints,
        "solver": [StrOptions({"fisher", "lissa", "cg", "exact", "kfac", "ekfac"})],
        "fisher": [StrOptions({"auto", "batched", "empirical", "true"})],
        "damping": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"}), None],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "lissa_depth": [Interval(Integral, 1, None, closed="left")],
        "lissa_repeat": [Interval(Integral, 1, None, closed="left")],
        "lissa_scale": [Interval(Real, 0, None, closed="neither")],
        "lissa_batch_size": [Interval(Integral, 1, None, closed="left")],
        "cg_max_iter": [Interval(Integral, 1, None, closed="left")],
        "projection": [StrOptions({"eigen", "random"})],
        "n_models": [Interval(Integral, 1, None, closed="left")],
        "checkpoints": [StrOptions({"last", "all"})],
        "memory": [None, str, HasMethods(["cache"])],
        "n_jobs": [Integral, None],
    }

    def __init__(self, estimator=None, *, grouper=None, property="loss", solver="fisher",
                 fisher="auto", damping=None, n_components=None, projection="eigen",
                 n_models=1, checkpoints="last", lissa_depth=200,
                 lissa_repeat=20, lissa_scale=50.0, lissa_batch_size=128, cg_max_iter=100,
                 param_subset="all", batch_size="auto", memory=None, n_jobs=None, verbose=0,
                 random_state=None):
        self.estimator = estimator
        self.grouper = grouper
        self.property = property
        self.solver = solver
        self.fisher = fisher
        self.damping = damping
        self.n_components = n_components
        self.projection = projection
        self.n_models = n_models
        self.checkpoints = checkpoints
        self.lissa_depth = lissa_depth
        self.lissa_repeat = lissa_repeat
        self.lissa_scale = lissa_scale
        self.lissa_batch_size = lissa_batch_size
        self.cg_max_iter = cg_max_iter
        self.param_subset = param_subset
        self.batch_size = batch_size
        self.memory = memory
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    def _check_params(self, frozen):
        if frozen and self.n_models > 1:
            raise ValueError(
                f"n_models={self.n_models} trains an ensemble of nets with independent "
                "seeds, but the estimator is a FrozenEstimator (one fitted net, nothing to "
                "retrain); pass the unfitted net, or use n_models=1."
            )
        super()._check_params(frozen)  # checkpoints="all" with a frozen net
        if self.n_components is not None and self.solver not in ("fisher", *KRONECKER_SOLVERS):
            raise ValueError(
                f"n_components applies to solver='fisher', 'kfac' and 'ekfac' only; "
                f"solver={self.solver!r} works in the full parameter space (use "
                "param_subset to shrink it)."
            )
        if self.damping == "auto" and self.solver not in KRONECKER_SOLVERS:
            raise ValueError(
                f"damping='auto' applies to solver='kfac' and 'ekfac' (the mean eigenvalue "
                f"of their curvature); give solver={self.solver!r} a number or None."
            )
        allowed = _FISHERS.get(self.solver)
        if allowed is not None and self.fisher not in ("auto", *allowed):
            raise ValueError(
                f"fisher={self.fisher!r} does not apply to solver={self.solver!r}; "
                f"use one of {['auto', *allowed]}."
            )

    def _fisher_kind(self):
        """The Fisher matrix in use: ``fisher`` with ``"auto"`` resolved for the solver."""
        return _FISHERS[self.solver][0] if self.fisher == "auto" else self.fisher

    def _damping(self):
        """``damping`` with ``None`` resolved; ``None`` stays for K-FAC's per-layer default,
        ``"auto"`` is the mean eigenvalue of the fitted K-FAC / EK-FAC curvature."""
        if self.damping is None and self.solver not in KRONECKER_SOLVERS:
            return DEFAULT_DAMPING
        if self.damping == "auto":
            return mean_eigenvalue(self._kfac)
        return self.damping

    # -- training side ------------------------------------------------------------

    def _fit_attribution(self, X, y, seed):
        self._members = None
        self.__dict__.pop("estimators_", None)
        if self.n_models == 1 and self.checkpoints == "last":
            self._fit_single(X, y, seed)
        else:
            self._fit_ensemble(X, y, seed)

    def _fit_single(self, X, y, seed):
        self._seed = seed
        plan = self._make_plan(self.estimator_, X)
        penalty = penalty_diagonal(plan, self.estimator_)
        self._state = self._kfac = None
        self._hessian_eigenvalues = self._hessian_eigenvectors = None
        with self._stage("curvature"):
            if self.solver == "fisher":
                self._state = fit_kernel_state(
                    plan, X, y, self.labels_, self.n_groups_, self._projector(plan),
                    batched=self._fisher_kind() == "batched", penalty=penalty,
                    batch_size=plan.batch_size(self.batch_size, row_floats(plan, self.n_components)),
                    progress=self._progress("group gradients"), n_jobs=self.n_jobs,
                )
            elif self.solver == "exact":
                hessian = _engine.dense_hessian(
                    plan, X, y, batch_size=plan.batch_size(self.batch_size, plan.n_params),
                    progress=self._progress("Hessian"))
                if penalty is not None:
                    hessian = hessian + torch.diag(plan.flatten(penalty))
                # factored once, on the net's device, for every later solve
                self._hessian_eigenvalues, self._hessian_eigenvectors = _engine.factor_dense(
                    check_finite_state(hessian, "Hessian entries"))
            elif self.solver in KRONECKER_SOLVERS:
                self._kfac = _engine.fit_kfac(
                    plan, X, y, corrected=self.solver == "ekfac", fisher=self._fisher_kind(),
                    seed=seed, batch_size=plan.batch_size(self.batch_size),
                    progress=self._progress("Kronecker factors"), stage=self._stage,
                    # LoGra's random projections are fitted in; the eigen-coordinates
                    # are chosen from the full-width fit
                    projector=(self._projector(plan) if self.projection == "random"
                               else None),
                    correction_columns=self._correction_columns(plan),
                )
        self._group_store = None
        if self._projected_kronecker():
            self._group_store = self._projected_store(plan, X, y)
            return
        itemsize = _engine.module_dtype(plan.module).itemsize
        if self.solver in _STORED and keeps_store(self, X, plan.n_params, itemsize):
            # G_k for every group, once: attribute is then a product with the
            # preconditioned queries (P is symmetric: q^T P G_k = (P q)^T G_k)
            self._group_store = build_store(self, plan)

    def _checked_scores(self, scores):
        # LiSSA reports a diverged recursion by NaN scores and a ConvergenceWarning
        return scores if self.solver == "lissa" else super()._checked_scores(scores)

    # -- scoring ----------------------------------------------------------------------

    def _score_groups(self, X, y):
        if self._ensemble() is not None:
            return sum(weight * member._score_groups(X, y)
                       for member, weight in self._ensemble())
        plan = self._make_plan(self.estimator_, X)
        with self._stage("property"):
            gradient = self._property_gradient(plan, X, y, progress=self._progress("property"))
        if self.solver == "fisher":
            vector = property_vector(plan, gradient, self._projector(plan))
            with self._stage("solve"):
                return kernel_scores(self._state, vector[None], self._damping())[0]
        if self._group_store is not None:
            projector = self._projector(plan) if self._projected_kronecker() else None
            vector = plan.flatten(gradient) if projector is None else projector.dense(gradient)
            vector = self._precondition(plan, vector[None], projector)[0]
            with self._stage("dots"):
                return score_with_store(vector, self._group_store) / len(self._y_fit)
        directions = self._inverse_hvp(plan, plan.flatten(gradient)[None])
        return self._training_dots(plan, directions)[:, 0]

    def _attribute(self, X, y):
        if self._ensemble() is not None:
            out = None
            for member, weight in self._ensemble():
                part = member._attribute(X, y)
                part *= np.float32(weight)
                out = part if out is None else np.add(out, part, out=out)
            return out
        plan = self._make_plan(self.estimator_, X)
        rows_plan = self._per_sample_property_plan(plan)
        if self.solver == "fisher":
            vectors = sample_vectors(rows_plan, X, y, self._projector(plan),
                                     batch_size=plan.batch_size(self.batch_size,
                                                                row_floats(plan, self.n_components)))
            with self._stage("solve"):
                return kernel_scores(self._state, vectors, self._damping()).astype(np.float32)
        if self._group_store is not None:
            projector = self._projector(plan) if self._projected_kronecker() else None
            width = plan.n_params if projector is None else projector.n_components
            store = self._group_store
            transform = lambda V: self._precondition(plan, V, projector)  # noqa: E731
            itemsize = _engine.module_dtype(plan.module).itemsize
            if projector is None and len(X) >= self.n_groups_ and \
                    self.n_groups_ * plan.n_params * itemsize <= _store.STORE_BYTES:
                # more queries than groups: precondition the groups once instead
                store, transform = self._preconditioned_store(plan), None
            out = attribute_with_store(rows_plan, plan, X, y, store,
                                       batch_size=plan.batch_size(self.batch_size, width),
                                       progress=self._progress("test gradients"),
                                       project=projector, transform=transform)
            out /= np.float32(len(self._y_fit))
            return out
        out = np.empty((len(X), self.n_groups_), dtype=np.float32)
        for index, grads in _engine.iter_per_sample_gradients(rows_plan, X, y,
                                                              batch_size=_TEST_BLOCK):
            directions = self._inverse_hvp(plan, plan.flatten(grads))
            out[index] = self._training_dots(plan, directions).T
        return out

    def _self_influence(self):
        if self._ensemble() is not None:
            return sum(weight * member._self_influence() for member, weight in self._ensemble())
        if self.solver == "fisher":
            with self._stage("solve"):
                return kernel_self_scores(self._state, self._damping())
        plan = self._make_plan(self.estimator_, self._X_fit)
        projector = self._projector(plan) if self._projected_kronecker() else None
        out = np.empty(self.n_groups_)
        for groups, flat in self._stored_or_streamed_gradients(plan):  # G_k^T P G_k
            solved = self._precondition(plan, flat, projector)
            out[groups] = (solved.double() * flat.double()).sum(1).cpu().numpy()
        return out / len(self._y_fit)

    def _inverse_hvp(self, plan, V):
        """``(m, p)``: ``(H + damping)^{-1}`` applied to the rows of ``V`` by the chosen solver.

        ``H`` holds the L2 penalty of a converted scikit-learn model: the
        exact Hessian has it added; CG and LiSSA take it as a per-parameter
        damping (for LiSSA divided by its scale, whose fixed point
        multiplies the damping by it); K-FAC / EK-FAC leave it out.
        """
        damping = self._damping()
        penalty = penalty_diagonal(plan, self.estimator_)
        penalty = 0.0 if penalty is None else plan.flatten(penalty).to(V.dtype)
        with self._stage("solve"):
            if self.solver in KRONECKER_SOLVERS:
                return plan.flatten(self._kfac.precondition(plan.unflatten(V), damping))
            if self.solver == "exact":
                return _engine.solve_dense(self._hessian_eigenvalues,
                                           self._hessian_eigenvectors, V, damping)
            # a product vectorised over the m rows of V holds m copies of the batch's
            # activations: batch rows x rows of V stay within one pass's batch
            pairs = plan.batch_size(self.batch_size)
            if self.solver == "cg":
                return warn_unconverged(_engine.conjugate_gradient(
                    plan, self._X_fit, self._y_fit, V, damping=damping + penalty,
                    max_iter=self.cg_max_iter, batch_size=pairs, max_pairs=pairs,
                    progress=self._progress("conjugate gradients"),
                ))
            generator = torch.Generator().manual_seed(self._seed)
            damping = damping + penalty / self.lissa_scale
            return warn_unconverged(_engine.lissa(
                plan, self._X_fit, self._y_fit, V, damping=damping,
                scale=self.lissa_scale, depth=self.lissa_depth, repeat=self.lissa_repeat,
                batch_size=self.lissa_batch_size, generator=generator, max_pairs=pairs,
                progress=self._progress("LiSSA"),
            ))

    def _training_dots(self, plan, directions):
        """``(n_groups, m)``: group gradient sums dotted with ``m`` directions, over ``n``."""
        with self._stage("dots"):
            return self._training_group_dots(plan, plan.unflatten(directions)) / len(self._y_fit)
