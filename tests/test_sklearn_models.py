"""scikit-learn's own models: converted to torch, attributed as they are, against refits.

The conversion is checked three ways: predictions equal scikit-learn's; the
converted objective (mean loss plus the L2 penalty as skggda scales it) is
stationary at scikit-learn's solution (linear models) or equals
scikit-learn's own final loss (MLPs); and influence predicts what refitting
with scikit-learn without a group does.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.metrics import log_loss
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.svm import LinearSVC

from skggda import (
    GradKMeansGrouper,
    InfluenceAttributor,
    ReprKMeansGrouper,
    TracInAttributor,
    TRAKAttributor,
)
from skggda._engine import Projector, make_plan
from skggda.metrics import removal_score
from skggda.models import ConvertedModel
from skggda.models._sklearn import SklearnLoss, to_torch
from skggda.models._loss import PerSampleLoss

N = 150


def problem(kind, n=N, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 4))
    w = np.random.RandomState(42).normal(size=(4, 3))
    if kind == "regression":
        return X, X @ w[:, 0] + 0.3 * rng.normal(size=n) + 1.0
    scores = X @ w + rng.normal(size=(n, 3))
    y = scores.argmax(1) if kind == "multiclass" else (scores[:, 0] > 0).astype(int)
    return X, np.array(["no", "yes", "maybe"])[y]


def mlp(cls, **kwargs):
    return cls(**{"hidden_layer_sizes": (5,), "random_state": 0, "max_iter": 300, **kwargs})


#: (model, task) for every supported model and its variants.
MODELS = {
    "logreg-binary": (LogisticRegression(C=0.3), "binary"),
    "logreg-multinomial": (LogisticRegression(C=0.3), "multiclass"),
    "logreg-liblinear": (LogisticRegression(C=0.3, solver="liblinear"), "binary"),
    "logreg-unpenalised": (LogisticRegression(C=np.inf), "multiclass"),
    "logreg-no-intercept": (LogisticRegression(fit_intercept=False), "binary"),
    "sgd-log": (SGDClassifier(loss="log_loss", random_state=0), "binary"),
    "sgd-modified-huber": (SGDClassifier(loss="modified_huber", random_state=0), "multiclass"),
    "sgd-squared-hinge": (SGDClassifier(loss="squared_hinge", random_state=0), "binary"),
    "sgd-classifier-squared": (SGDClassifier(loss="squared_error", random_state=0), "binary"),
    "sgd-regressor": (SGDRegressor(random_state=0), "regression"),
    "sgd-huber": (SGDRegressor(loss="huber", random_state=0), "regression"),
    "sgd-sq-eps": (SGDRegressor(loss="squared_epsilon_insensitive", random_state=0),
                   "regression"),
    "linear": (LinearRegression(), "regression"),
    "ridge": (Ridge(alpha=3.0), "regression"),
    "mlp-binary": (mlp(MLPClassifier), "binary"),
    "mlp-multiclass-tanh": (mlp(MLPClassifier, activation="tanh"), "multiclass"),
    "mlp-logistic-lbfgs": (mlp(MLPClassifier, activation="logistic", solver="lbfgs"),
                           "multiclass"),
    "mlp-regressor": (mlp(MLPRegressor), "regression"),
    "mlp-regressor-identity": (mlp(MLPRegressor, activation="identity"), "regression"),
}


def fitted(name):
    model, task = MODELS[name]
    X, y = problem(task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clone(model).fit(X, y), X, y


def module_output(conversion, X):
    with torch.no_grad():
        return conversion.module(torch.as_tensor(X)).numpy()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_converted_module_predicts_as_scikit_learn(name):
    model, X, y = fitted(name)
    output = module_output(to_torch(model, len(X)), X)
    if isinstance(model, (LogisticRegression, MLPClassifier)):
        got, expected = torch.softmax(torch.as_tensor(output), 1).numpy(), model.predict_proba(X)
    elif isinstance(model, SGDClassifier):
        expected = model.decision_function(X)
        got = output[:, 1] if expected.ndim == 1 else output
    else:
        got, expected = output[:, 0], model.predict(X)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def objective(conversion, X, y_encoded):
    """Mean training loss plus the converted L2 penalty, differentiable."""
    loss = PerSampleLoss(conversion.criterion)
    value = loss(conversion.module(torch.as_tensor(X)), torch.as_tensor(y_encoded)).mean()
    for name, param in conversion.module.named_parameters():
        value = value + conversion.penalty.get(name, 0.0) / 2 * (param ** 2).sum()
    return value


def encoded(model, y):
    return np.searchsorted(model.classes_, y) if hasattr(model, "classes_") else y


@pytest.mark.parametrize("model, task", [
    (LogisticRegression(C=0.3, tol=1e-10), "binary"),
    (LogisticRegression(C=0.3, tol=1e-10), "multiclass"),
    (LogisticRegression(C=0.3, solver="liblinear", tol=1e-10), "binary"),
    (LogisticRegression(C=0.3, fit_intercept=False, tol=1e-10), "binary"),
    (Ridge(alpha=3.0), "regression"),
    (LinearRegression(), "regression"),
], ids=["binary", "multinomial", "liblinear", "no-intercept", "ridge", "linear"])
def test_converted_objective_is_stationary_at_the_fit(model, task):
    """A wrong penalty scale (C, alpha, n) would leave a gradient of the penalty's size."""
    X, y = problem(task)
    model = model.fit(X, y)
    conversion = to_torch(model, len(X))
    params = [p for p in conversion.module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(objective(conversion, X, encoded(model, y)), params)
    assert max(float(g.abs().max()) for g in grads) < 1e-7
    assert any(conversion.penalty.values()) == (not isinstance(model, LinearRegression))


@pytest.mark.parametrize("cls, task", [(MLPClassifier, "multiclass"), (MLPRegressor, "regression")])
def test_converted_mlp_objective_equals_scikit_learns_loss(cls, task):
    X, y = problem(task)
    model = cls(hidden_layer_sizes=(5,), solver="lbfgs", alpha=0.3, random_state=0,
                max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    value = objective(to_torch(model, len(X)), X, encoded(model, y))
    np.testing.assert_allclose(value.item(), model.loss_, rtol=1e-10)


def test_mlp_penalty_is_divided_by_the_batch():
    X, y = problem("multiclass")
    sgd = mlp(MLPClassifier, batch_size=32, alpha=0.5, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        penalty = to_torch(sgd.fit(X, y), len(X)).penalty
        early = mlp(MLPClassifier, solver="lbfgs", alpha=0.5, early_stopping=True).fit(X, y)
    assert set(penalty.values()) == {0.5 / 32}
    # lbfgs divides by the whole training set; early stopping's validation share is not in it
    assert set(to_torch(early, len(X)).penalty.values()) == {0.5 / (N - 15)}


@pytest.mark.parametrize("kind, sgd_loss, args", [
    ("modified_huber", "ModifiedHuber", ()), ("squared_hinge", "SquaredHinge", (1.0,)),
    ("squared_epsilon_insensitive", "SquaredEpsilonInsensitive", (0.1,))])
def test_sgd_losses_equal_scikit_learns(kind, sgd_loss, args):
    from sklearn.linear_model import _sgd_fast

    reference = getattr(_sgd_fast, sgd_loss)(*args)
    scores = np.linspace(-3, 3, 25)
    loss = SklearnLoss(kind, "regression", reduction="none")
    for target in (-1.0, 1.0):
        got = loss(torch.as_tensor(scores)[:, None], torch.full((25,), target, dtype=torch.float64))
        expected = [reference.py_loss(p, target) for p in scores]
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("model, error, match", [
    (SGDClassifier(loss="hinge"), ValueError, "loss='hinge' has no gradient"),
    (SGDRegressor(loss="epsilon_insensitive"), ValueError, "no gradient"),
    (SGDClassifier(loss="log_loss", penalty="l1"), ValueError, "L1 part"),
    (LogisticRegression(l1_ratio=1.0, solver="saga"), ValueError, "L1 part"),
    (LogisticRegression(class_weight="balanced"), ValueError, "class_weight='balanced'"),
    (Ridge(positive=True), ValueError, "positive=True"),
    (LinearSVC(), TypeError, "LinearSVC cannot be attributed"),
])
def test_unsupported_settings_are_refused_clearly(model, error, match):
    X, y = problem("regression" if isinstance(model, (SGDRegressor, Ridge)) else "binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=match):
            TracInAttributor(model).fit(X, y)


def test_checkpoints_all_is_refused_for_scikit_learn_models():
    X, y = problem("binary")
    with pytest.raises(ValueError, match="checkpoints='all' needs a skorch net"):
        TracInAttributor(LogisticRegression(), checkpoints="all").fit(X, y)


def test_frozen_unfitted_model_is_refused():
    X, y = problem("binary")
    with pytest.raises(NotFittedError):
        TracInAttributor(FrozenEstimator(LogisticRegression())).fit(X, y)


# -- as they are ---------------------------------------------------------------------------


def test_fitted_model_is_used_as_is_and_unfitted_one_is_fitted_by_scikit_learn():
    X, y = problem("multiclass")
    model = LogisticRegression(C=0.3).fit(X, y)
    coef = model.coef_.copy()
    attr = InfluenceAttributor(model, solver="exact").fit(X, y)
    assert attr.estimator_.estimator_ is model
    np.testing.assert_array_equal(model.coef_, coef)
    np.testing.assert_array_equal(attr.classes_, model.classes_)

    unfitted = LogisticRegression(C=0.3)
    attr = InfluenceAttributor(unfitted, solver="exact").fit(X, y)
    assert not hasattr(unfitted, "coef_")
    # fitted by scikit-learn on the attributor's float32 copy of X, in float64
    np.testing.assert_allclose(attr.estimator_.estimator_.coef_, coef, rtol=1e-5)
    frozen = InfluenceAttributor(FrozenEstimator(model), solver="exact").fit(X, y)
    assert frozen.estimator_.estimator_ is model


def test_retraining_metrics_refit_a_clone_with_scikit_learn():
    X, y = problem("binary")
    X_test, y_test = problem("binary", n=60, seed=1)
    attr = TracInAttributor(LogisticRegression(C=0.3)).fit(X, y)
    assert isinstance(clone(attr.estimator_), ConvertedModel)
    result = removal_score(attr.estimator_, X, y, X_test, y_test,
                           attr.score_groups(X_test, y_test), attr.labels_, most_important=True,
                           fractions=[0.1], n_seeds=1, random_state=0)
    expected = LogisticRegression(C=0.3).fit(X, y).score(X_test, y_test)
    assert result.full_accuracy == expected


# -- influence against refits ---------------------------------------------------------------


def random_groups(n, sizes=(1, 16), seed=0):
    """A partition of ``range(n)`` into groups of 1 to 16 points."""
    rng = np.random.RandomState(seed)
    labels, start, group = np.empty(n, dtype=int), 0, 0
    order = rng.permutation(n)
    while start < n:
        size = rng.randint(sizes[0], sizes[1] + 1)
        labels[order[start:start + size]] = group
        start, group = start + size, group + 1
    return labels


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_logistic_influence_predicts_leave_group_out_refits(task):
    X, y = problem(task, n=300)
    X_val, y_val = problem(task, n=200, seed=1)
    model = LogisticRegression(C=1.0, tol=1e-10).fit(X, y)
    labels = random_groups(len(y))
    attr = InfluenceAttributor(model, solver="exact", damping=0.0).fit(X, y, groups=labels)
    scores = attr.score_groups(X_val, y_val)
    full = log_loss(y_val, model.predict_proba(X_val), labels=model.classes_)
    actual = np.array([
        log_loss(y_val, clone(model).fit(X[labels != j], y[labels != j]).predict_proba(X_val),
                 labels=model.classes_) - full
        for j in attr.groups_
    ])
    assert pearsonr(scores, actual)[0] >= 0.95


@pytest.fixture(scope="module")
def ridge_problem():
    X, y = problem("regression", n=200)
    X_val, y_val = problem("regression", n=80, seed=1)
    model = Ridge(alpha=5.0).fit(X, y)
    # the data as the attributor holds it: float32 values
    X1 = np.c_[X.astype(np.float32), np.ones(len(X))].astype(np.float64)
    X1_val = np.c_[X_val.astype(np.float32), np.ones(len(X_val))].astype(np.float64)
    theta = np.r_[model.coef_, model.intercept_]
    # sum_i (y_i - x_i theta)^2 + alpha ||w||^2: its Hessian, the intercept unpenalised
    H = 2 * X1.T @ X1 + 2 * model.alpha * np.diag([1.0] * X.shape[1] + [0.0])
    per_sample = 2 * (X1 @ theta - y)[:, None] * X1  # gradients of (y_i - x_i theta)^2
    v = (2 * (X1_val @ theta - y_val)[:, None] * X1_val).mean(0)  # mean validation loss
    return model, X, y, X_val, y_val, X1, X1_val, theta, H, per_sample, v


def test_ridge_group_influence_equals_the_first_order_closed_form(ridge_problem):
    """Removing group G: (H - H_G)(theta_G - theta) = sum_G grad l_i exactly (a quadratic);
    to first order theta_G - theta = H^-1 sum_G grad l_i, so the validation loss rises by
    v^T H^-1 sum_G grad l_i."""
    model, X, y, X_val, y_val, X1, X1_val, theta, H, per_sample, v = ridge_problem
    labels = random_groups(len(y))
    attr = InfluenceAttributor(model, solver="exact", damping=0.0).fit(X, y, groups=labels)
    group_gradients = np.array([per_sample[labels == j].sum(0) for j in attr.groups_])
    expected = group_gradients @ np.linalg.solve(H, v)
    np.testing.assert_allclose(attr.score_groups(X_val, y_val), expected, rtol=1e-6,
                               atol=1e-10)


def test_ridge_closed_form_is_the_first_order_of_the_refit(ridge_problem):
    """The closed form above is exact, so scikit-learn's refit must match it; its first
    order (what influence uses) is off by the group's leverage, second order."""
    model, X, y, X_val, y_val, X1, X1_val, theta, H, per_sample, v = ridge_problem
    for size in (1, 4, 16):
        group = np.arange(size)
        keep = np.setdiff1d(np.arange(len(y)), group)
        H_group = 2 * X1[group].T @ X1[group]
        exact = np.linalg.solve(H - H_group, per_sample[group].sum(0))
        refit = clone(model).fit(X1[keep, :-1], y[keep])
        np.testing.assert_allclose(theta + exact, np.r_[refit.coef_, refit.intercept_],
                                   rtol=1e-6)
        first_order = np.linalg.solve(H, per_sample[group].sum(0))
        leverage = np.linalg.eigvalsh(np.linalg.solve(H, H_group)).max()
        error = np.linalg.norm(first_order - exact) / np.linalg.norm(exact)
        assert error <= leverage / (1 - leverage) + 1e-9


# -- the penalty in every curvature -----------------------------------------------------------


def test_projected_penalty_equals_projecting_every_basis_vector():
    model, X, y = fitted("mlp-multiclass-tanh")
    conversion = to_torch(model, len(X))
    plan = make_plan(conversion.module, PerSampleLoss(conversion.criterion),
                     torch.as_tensor(X[:5]))
    projector = Projector(plan, 12, seed=0)
    diagonal = plan.from_param_grads({n: torch.full_like(p.detach(), 0.7 if "weight" in n else 0.2)
                                      for n, p in plan.params.items()})
    flat = plan.flatten(diagonal)
    basis = torch.eye(plan.n_params, dtype=flat.dtype)
    projected = projector.dense(plan.unflatten(basis))  # (p, r): P e_k per coordinate
    expected = projected.T @ (flat[:, None] * projected)
    torch.testing.assert_close(projector.diagonal_gram(diagonal), expected, rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("solver, kwargs, rtol", [
    ("cg", dict(cg_max_iter=200), 1e-5),
    ("fisher", dict(fisher="empirical"), None),
    ("lissa", dict(lissa_depth=400, lissa_repeat=2, lissa_scale=20.0), 0.05),
])
def test_solvers_see_the_penalty(solver, kwargs, rtol):
    X, y = problem("binary", n=200)
    X_val, y_val = problem("binary", n=60, seed=1)
    model = LogisticRegression(C=0.05).fit(X, y)  # a strong penalty
    exact = InfluenceAttributor(model, solver="exact", damping=0.0).fit(X, y)
    other = InfluenceAttributor(model, solver=solver, damping=0.0, random_state=0,
                                **kwargs).fit(X, y)
    expected, got = exact.score_groups(X_val, y_val), other.score_groups(X_val, y_val)
    if rtol is None:  # the empirical Fisher is another curvature: close, not equal
        assert pearsonr(expected, got)[0] > 0.9
    else:
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    unpenalised = InfluenceAttributor(FrozenEstimator(_without_penalty(model, len(X))),
                                      solver="exact", damping=0.0).fit(X, y)
    assert not np.allclose(unpenalised.score_groups(X_val, y_val), expected, rtol=0.05)
    # and the solver itself changes its answer without the penalty
    unpenalised = InfluenceAttributor(FrozenEstimator(_without_penalty(model, len(X))),
                                      solver=solver, damping=0.0, random_state=0,
                                      **kwargs).fit(X, y)
    assert not np.allclose(unpenalised.score_groups(X_val, y_val), got, rtol=0.05)


def _without_penalty(model, n):
    converted = ConvertedModel.from_fitted(model, n)
    converted.penalty_ = {}
    return converted


# -- every attributor and grouper -------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd-modified-huber", "sgd-huber", "mlp-binary", "ridge"])
@pytest.mark.parametrize("make", [
    lambda m: TracInAttributor(m, grouper=GradKMeansGrouper(group_size=15), random_state=0),
    lambda m: InfluenceAttributor(m, n_components=4, grouper=ReprKMeansGrouper(group_size=15),
                                  random_state=0),
    lambda m: TRAKAttributor(m, n_models=2, n_components=4, random_state=0),
], ids=["tracin-grad", "fisher-repr", "trak"])
def test_every_attributor_and_grouper_take_scikit_learn_models(name, make):
    model, X, y = fitted(name)
    attr = make(model).fit(X, y)
    assert attr.estimator_.estimator_ is model
    scores = attr.score_groups(X[:30], y[:30])
    assert scores.shape == (attr.n_groups_,) and np.isfinite(scores).all()
    if isinstance(attr, TRAKAttributor):
        assert all(isinstance(m, ConvertedModel) for m in attr.estimators_)
