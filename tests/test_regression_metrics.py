"""Evaluation of attributions for regressors: RMSE / R^2 retraining, noisy targets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import r2_score

from skggda import RandomGrouper, TracInAttributor
from skggda.metrics import (
    corrupt_targets,
    group_leave_one_out,
    make_removal_scorer,
    noisy_label_auc,
    removal_baselines,
    removal_score,
)
from skggda.metrics._retraining import retraining_clone
from skggda.models import make_regressor


def linear_data(n=120, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)


def regressor(epochs=8, seed=0):
    return make_regressor((), max_epochs=epochs, lr=5e-2, batch_size=32, random_state=seed)


@pytest.fixture(scope="module")
def data():
    X, y = linear_data()
    X_test, y_test = linear_data(n=40, seed=1)
    return X, y, X_test, y_test


# -- corrupted targets ---------------------------------------------------------------


def test_corrupt_targets_shifts_the_chosen_fraction_by_scale_deviations():
    y = np.random.RandomState(0).normal(size=200)
    noisy, is_corrupted = corrupt_targets(y, 0.1, scale=2.0, random_state=0)
    assert is_corrupted.sum() == 20
    np.testing.assert_allclose(np.abs(noisy - y)[is_corrupted], 2.0 * y.std())
    np.testing.assert_array_equal(noisy[~is_corrupted], y[~is_corrupted])
    again, same = corrupt_targets(y, 0.1, scale=2.0, random_state=0)
    np.testing.assert_array_equal(again, noisy)
    np.testing.assert_array_equal(same, is_corrupted)


def test_corrupt_targets_one_way():
    y = np.arange(20.0)
    noisy, is_corrupted = corrupt_targets(y, 0.5, scale=1.0, direction="down", random_state=0)
    np.testing.assert_allclose((noisy - y)[is_corrupted], -y.std())


@pytest.mark.parametrize("kwargs, message", [
    (dict(fraction=1.5), "fraction must be in"), (dict(scale=0.0), "scale must be positive"),
    (dict(direction="sideways"), "direction='sideways' is not one of")])
def test_corrupt_targets_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        corrupt_targets(np.arange(5.0), **kwargs)


def test_corrupted_targets_score_lowest():
    def draw(n, seed):
        rng = np.random.RandomState(seed)
        X = rng.normal(size=(n, 20)).astype(np.float32)
        return X, X @ np.random.RandomState(5).normal(size=20) + 0.1 * rng.normal(size=n)

    (X, y), (X_test, y_test) = draw(300, 0), draw(200, 1)
    noisy, is_corrupted = corrupt_targets(y, 0.1, random_state=0)
    net = make_regressor((16,), max_epochs=20, lr=2e-2, batch_size=32, random_state=0)
    attr = TracInAttributor(net).fit(X, noisy)
    # the clean test loss: corrupted targets pull the fit away from it (0.80
    # measured; shifts up and down partly cancel, so single points stay ambiguous)
    scores = attr.score_groups(X_test, y_test)
    assert noisy_label_auc(scores, attr.labels_, is_corrupted) > 0.7


# -- retraining --------------------------------------------------------------------------


def expected_value(net, X, y, X_test, y_test, keep, seed, metric):
    fitted = retraining_clone(net, seed, None).fit(X[keep], y[keep])
    prediction = fitted.predict(X_test)
    if metric == "rmse":
        return np.sqrt(np.mean((prediction - y_test) ** 2))
    return r2_score(y_test, prediction)


@pytest.mark.parametrize("metric", [None, "rmse", "r2"])
def test_removal_score_measures_rmse_or_r2(data, metric):
    X, y, X_test, y_test = data
    scores = np.arange(len(y), dtype=float)  # the last points are "most important"
    result = removal_score(regressor(), X, y, X_test, y_test, scores, np.arange(len(y)),
                           most_important=True, fractions=[0.25], n_seeds=1, random_state=0,
                           metric=metric)
    assert result.metric == (metric or "rmse")
    assert result.kept_class_share.shape == (1, 0) and result.classes is None
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))
    keep = np.arange(90)
    expected = expected_value(regressor(), X, y, X_test, y_test, keep, seed, result.metric)
    np.testing.assert_allclose(result.accuracy[0], expected, rtol=1e-5)
    full = expected_value(regressor(), X, y, X_test, y_test, np.arange(len(y)), seed,
                          result.metric)
    np.testing.assert_allclose(result.full_accuracy, full, rtol=1e-5)
    assert np.isfinite(result.random_accuracy).all()
    assert result.metric in result.as_table()


@pytest.mark.parametrize("estimator, metric, message", [
    (regressor(), "accuracy", "metric='accuracy' is for classification"),
    (regressor(), "mae", "metric='mae' is not one of"),
])
def test_metric_must_fit_the_task(data, estimator, metric, message):
    X, y, X_test, y_test = data
    with pytest.raises(ValueError, match=message):
        removal_score(estimator, X, y, X_test, y_test, np.zeros(len(y)), np.arange(len(y)),
                      most_important=True, fractions=[0.1], n_seeds=1, metric=metric)


def test_stratify_is_refused_for_a_regressor(data):
    X, y, X_test, y_test = data
    with pytest.raises(ValueError, match="no classes"):
        removal_score(regressor(), X, y, X_test, y_test, np.zeros(len(y)), np.arange(len(y)),
                      most_important=True, fractions=[0.1], n_seeds=1, stratify=True)


def test_baselines_of_another_metric_are_refused(data):
    X, y, X_test, y_test = data
    shared = removal_baselines(regressor(epochs=1), X, y, X_test, y_test, fractions=[0.1], n_seeds=1,
                               random_state=0, metric="r2")
    assert shared.metric == "r2"
    with pytest.raises(ValueError, match="metric"):
        removal_score(regressor(epochs=1), X, y, X_test, y_test, np.zeros(len(y)),
                      np.arange(len(y)), most_important=True, fractions=[0.1], n_seeds=1,
                      random_state=0, baselines=shared)


def test_scorers_orient_regression_metrics_greater_is_better(data):
    X, y, X_test, y_test = data
    attr = TracInAttributor(regressor(), grouper=RandomGrouper(group_size=10),
                            random_state=0).fit(X, y)
    pruned = make_removal_scorer(0.25, most_important=False)(attr, X_test, y_test)
    assert pruned < 0  # a negated RMSE
    r2 = make_removal_scorer(0.25, most_important=False, metric="r2")(attr, X_test, y_test)
    assert 0 < r2 <= 1
    assert np.isfinite(make_removal_scorer(0.25, most_important=True)(attr, X_test, y_test))


def test_group_leave_one_out_with_a_regressor(data):
    X, y, X_test, y_test = data
    net = regressor(epochs=2)
    loo = group_leave_one_out(net, X, y, X_test, y_test, np.arange(len(y)) % 3, random_state=0)
    assert loo.effect.shape == (3,) and np.isfinite(loo.effect).all()


def test_frozen_regressor_recipe_is_retrained_by_the_metrics(data):
    X, y, X_test, y_test = data
    net = regressor().fit(X, y)
    attr = TracInAttributor(FrozenEstimator(net)).fit(X, y)
    result = removal_score(attr.estimator_, X, y, X_test, y_test,
                           attr.score_groups(X_test, y_test), attr.labels_, most_important=True,
                           fractions=[0.1], n_seeds=1, random_state=0)
    assert result.metric == "rmse" and np.isfinite(result.accuracy).all()
