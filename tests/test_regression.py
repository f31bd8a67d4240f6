"""Regression: skorch regressors through every attributor, grouper and property.

Linear regressors (``make_regressor(())``) have closed forms: per-sample
gradients ``2 (f - y) [x, 1]``, the Hessian of the mean squared error
``(2 / n) X1^T X1`` with ``X1 = [X, 1]``, and an output gradient ``[x, 1]``;
the tests compare the attributors with those written in numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from skggda import (
    GradKMeansGrouper,
    InfluenceAttributor,
    RandomGrouper,
    ReprKMeansGrouper,
    TracInAttributor,
    TRAKAttributor,
)
from skggda._engine import _features
from skggda.models import SeededNeuralNetRegressor, make_regressor
from skggda.models._loss import PerSampleLoss
from skggda.properties import ClassLoss, MeanPrediction, make_property


def make_targets(n=160, n_features=4, noise=0.1, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    w = np.random.RandomState(99).normal(size=n_features)
    return X, (X @ w + 0.5 + noise * rng.normal(size=n)).astype(np.float64)


@pytest.fixture(scope="module")
def data():
    X, y = make_targets()
    X_test, y_test = make_targets(n=40, seed=1)
    return X, y, X_test, y_test


def tiny_regressor(hidden=(8,), epochs=5, seed=0, **kwargs):
    return make_regressor(hidden, max_epochs=epochs, lr=1e-2, batch_size=32,
                          random_state=seed, **kwargs)


@pytest.fixture(scope="module")
def linear(data):
    """A frozen linear regressor and its closed-form pieces (float64)."""
    X, y, X_test, y_test = data
    net = tiny_regressor(hidden=(), epochs=10).fit(X, y)
    head = net.module_.head
    w = np.r_[head.weight.detach().double().numpy()[0], head.bias.detach().double().numpy()]
    ones = lambda A: np.c_[A.astype(np.float64), np.ones(len(A))]  # noqa: E731
    X1, X1_test = ones(X), ones(X_test)
    residual = X1 @ w - y
    per_sample = 2 * residual[:, None] * X1  # gradients of (f - y)^2
    v = (2 * (X1_test @ w - y_test)[:, None] * X1_test).mean(0)  # mean test loss
    return FrozenEstimator(net), X1, X1_test, per_sample, v


# -- the model -----------------------------------------------------------------------


def test_make_regressor_is_repeatable_and_predicts_1d(data):
    X, y, _, _ = data
    first = tiny_regressor().fit(X, y)
    second = tiny_regressor().fit(X, y)
    assert isinstance(first, SeededNeuralNetRegressor)
    assert first.predict(X).shape == (len(X),)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    assert not np.allclose(first.predict(X), tiny_regressor(seed=1).fit(X, y).predict(X))


def test_make_regressor_takes_2d_targets_and_any_torch_loss(data):
    X, y, _, _ = data
    Y = np.c_[y, -y]
    net = tiny_regressor(criterion=torch.nn.HuberLoss).fit(X, Y)
    assert net.module_.head.out_features == 2
    assert net.predict(X).shape == (len(X), 2)


def test_regression_targets_must_be_numeric(data):
    X, _, _, _ = data
    with pytest.raises(ValueError, match="numeric targets"):
        TracInAttributor(tiny_regressor()).fit(X, np.array(["a", "b"] * 80))


# -- attributors against closed forms ------------------------------------------------


def test_tracin_equals_closed_form(data, linear):
    X, y, X_test, y_test = data
    frozen, _, _, per_sample, v = linear
    attr = TracInAttributor(frozen).fit(X, y)
    np.testing.assert_allclose(attr.score_groups(X_test, y_test), per_sample @ v,
                               rtol=1e-4, atol=1e-5)


def test_group_scores_are_sums_of_member_scores(data, linear):
    X, y, X_test, y_test = data
    frozen = linear[0]
    per_point = TracInAttributor(frozen).fit(X, y).score_groups(X_test, y_test)
    attr = TracInAttributor(frozen, grouper=RandomGrouper(group_size=10, random_state=0)).fit(X, y)
    np.testing.assert_allclose(attr.score_groups(X_test, y_test),
                               np.bincount(attr.labels_, weights=per_point), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_influence_equals_closed_form(data, linear, solver):
    X, y, X_test, y_test = data
    frozen, X1, _, per_sample, v = linear
    damping = 1e-3
    H = 2 * X1.T @ X1 / len(X1)
    expected = per_sample @ np.linalg.solve(H + damping * np.eye(len(H)), v) / len(X1)
    attr = InfluenceAttributor(frozen, solver=solver, damping=damping).fit(X, y)
    np.testing.assert_allclose(attr.score_groups(X_test, y_test), expected, rtol=1e-3, atol=1e-6)


def test_trak_uses_the_prediction_and_loss_slopes(data):
    X, y, X_test, y_test = data
    attr = TRAKAttributor(tiny_regressor(hidden=(), epochs=10), n_models=1, train_fraction=1.0,
                          damping=1e-3, random_state=0).fit(X, y)
    head = attr.estimators_[0].module_.head
    w = np.r_[head.weight.detach().double().numpy()[0], head.bias.detach().double().numpy()]
    X1 = np.c_[X.astype(np.float64), np.ones(len(X))]
    X1_test = np.c_[X_test.astype(np.float64), np.ones(len(X_test))]
    kernel = X1.T @ X1 / len(X1)  # output gradients [x, 1]
    groups = 2 * (X1 @ w - y)[:, None] * X1  # slope 2 (f - y) times [x, 1]
    v = (2 * (X1_test @ w - y_test)[:, None] * X1_test).mean(0)
    expected = groups @ np.linalg.solve(kernel + 1e-3 * np.eye(len(kernel)), v) / len(X1)
    np.testing.assert_allclose(attr.score_groups(X_test, y_test), expected, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda net: TracInAttributor(net, n_components=8, random_state=0),
    lambda net: InfluenceAttributor(net, n_components=8, random_state=0),
    lambda net: InfluenceAttributor(net, solver="lissa", lissa_depth=5, lissa_repeat=2,
                                    random_state=0),
    lambda net: TRAKAttributor(net, n_models=2, n_components=8, random_state=0),
], ids=["tracin", "fisher", "lissa", "trak"])
def test_every_attributor_trains_a_regressor_and_attributes(data, make):
    X, y, X_test, y_test = data
    attr = make(tiny_regressor()).fit(X, y)
    assert not hasattr(attr, "classes_")
    scores = attr.score_groups(X_test, y_test)
    rows = attr.attribute(X_test, y_test)
    assert scores.shape == (len(X),) and rows.shape == (len(X_test), len(X))
    assert np.isfinite(scores).all() and np.isfinite(rows).all()


# -- properties ----------------------------------------------------------------------


def test_mean_prediction_property_equals_closed_form(data, linear):
    X, y, X_test, _ = data
    frozen, _, X1_test, per_sample, _ = linear
    attr = TracInAttributor(frozen, property="prediction").fit(X, y)
    # badness is minus the mean prediction, whose gradient is -mean([x, 1])
    expected = per_sample @ -X1_test.mean(0)
    np.testing.assert_allclose(attr.score_groups(X_test, np.zeros(len(X_test))), expected,
                               rtol=1e-4, atol=1e-5)
    low = TracInAttributor(frozen, property=MeanPrediction(greater_is_better=False)).fit(X, y)
    np.testing.assert_allclose(low.score_groups(X_test, np.zeros(len(X_test))), -expected,
                               rtol=1e-4, atol=1e-5)


def test_callable_property_sees_the_float_targets(data, linear):
    X, y, X_test, y_test = data
    mean_squared_error = make_property(lambda module, X_, y_: ((module(X_)[:, 0] - y_) ** 2).mean())
    by_callable = TracInAttributor(linear[0], property=mean_squared_error).fit(X, y)
    by_name = TracInAttributor(linear[0], property="loss").fit(X, y)
    np.testing.assert_allclose(by_callable.score_groups(X_test, y_test),
                               by_name.score_groups(X_test, y_test), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("prop", ["margin", "accuracy", ClassLoss(1)])
def test_classification_properties_are_refused_for_regressors(data, linear, prop):
    X, y, _, _ = data
    with pytest.raises(ValueError, match="defined for classification only.*a regressor"):
        TracInAttributor(linear[0], property=prop).fit(X, y)


def test_prediction_property_is_refused_for_classifiers():
    from conftest import make_problem, tiny_net

    X, y, _, _ = make_problem(n=40)
    with pytest.raises(ValueError, match="defined for regression only.*a classifier"):
        TracInAttributor(tiny_net(), property="prediction").fit(X, y)


# -- groupers ------------------------------------------------------------------------


def test_grad_kmeans_closed_form_equals_autograd_for_squared_error(data):
    X, y, _, _ = data
    net = tiny_regressor().fit(X, y)
    loss = PerSampleLoss(net.criterion_)
    assert loss.squared_error_scale == 1.0
    targets = y.astype(np.float32)
    closed = _features.preactivation_gradients(net.module_, loss, X, targets,
                                               softmax_cross_entropy=False,
                                               squared_error_scale=1.0)
    autograd = _features.preactivation_gradients(net.module_, loss, X, targets,
                                                 softmax_cross_entropy=False)
    torch.testing.assert_close(closed, autograd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grouper_class", [GradKMeansGrouper, ReprKMeansGrouper])
def test_model_groupers_take_regressors(data, grouper_class):
    X, y, _, _ = data
    grouper = grouper_class(group_size=20, estimator=tiny_regressor(), random_state=0).fit(X, y)
    assert grouper.n_groups_ == 8 and not hasattr(grouper, "classes_")
    np.testing.assert_array_equal(grouper.predict(X, y), grouper.labels_)
    assert grouper.transform(X[:5]).shape == (5, 8)


def test_attributor_shares_its_regressor_with_the_grouper(data):
    X, y, X_test, y_test = data
    attr = TracInAttributor(tiny_regressor(), grouper=GradKMeansGrouper(group_size=16),
                            random_state=0).fit(X, y)
    assert attr.grouper_.estimator_ is attr.estimator_
    assert attr.score_groups(X_test, y_test).shape == (attr.n_groups_,)


def test_frozen_regressor_is_not_retrained(data):
    X, y, X_test, y_test = data
    net = tiny_regressor().fit(X, y)
    before = net.predict(X_test)
    attr = InfluenceAttributor(FrozenEstimator(net), n_components=8, random_state=0).fit(X, y)
    assert attr.estimator_ is net
    attr.score_groups(X_test, y_test)
    np.testing.assert_array_equal(net.predict(X_test), before)
