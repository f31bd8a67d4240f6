"""Bad input gets scikit-learn's error types, messages that name the problem,
and leaves the estimator as it was."""

from __future__ import annotations


import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator

from skggda import KMeansGrouper, RandomGrouper, TracInAttributor

from conftest import deep_state as state, tiny_net
from test_scoring_state import first_difference


def assert_same_state(estimator, before):
    """Nothing reachable from ``estimator`` changed, compared by value (nets included)."""
    difference = first_difference(before, state(estimator))
    assert difference is None, f"the failed call changed {difference}"


@pytest.fixture
def fitted(problem, fitted_net):
    X, y, _, _ = problem
    return TracInAttributor(FrozenEstimator(fitted_net)).fit(X, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_X_is_rejected(problem, fitted, bad):
    X, y, _, _ = problem
    X = X.copy()
    X[3, 2] = bad
    before = state(fitted)
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        fitted.fit(X, y)
    assert_same_state(fitted, before)
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        fitted.score_groups(X, y)


def test_groups_of_wrong_length(problem, fitted):
    X, y, _, _ = problem
    before = state(fitted)
    with pytest.raises(ValueError, match="groups has 5 elements but X has 240 samples"):
        fitted.fit(X, y, groups=np.arange(5))
    assert_same_state(fitted, before)


def test_groups_not_1d(problem, fitted):
    X, y, _, _ = problem
    with pytest.raises(ValueError, match=r"groups must be a 1-D array .* shape \(240, 2\)"):
        fitted.fit(X, y, groups=np.zeros((240, 2)))


def test_groups_with_missing_labels(problem, fitted):
    X, y, _, _ = problem
    groups = np.arange(240, dtype=float)
    groups[7] = np.nan
    with pytest.raises(ValueError, match="groups contains NaN"):
        fitted.fit(X, y, groups=groups)


def test_grouper_and_groups_together(problem, fitted_net):
    X, y, _, _ = problem
    attr = TracInAttributor(FrozenEstimator(fitted_net), grouper=RandomGrouper())
    with pytest.raises(ValueError, match="either the grouper parameter or the groups argument"):
        attr.fit(X, y, groups=np.arange(240))
    assert not hasattr(attr, "labels_")


@pytest.mark.parametrize("method,args", [("score_groups", ()), ("attribute", "data")])
def test_calls_before_fit(problem, method, args):
    X, y, _, _ = problem
    attr = TracInAttributor(tiny_net())
    with pytest.raises(NotFittedError, match="TracInAttributor instance is not fitted"):
        getattr(attr, method)(*((X, y) if args == "data" else ()))


def test_frozen_net_with_wrong_input_size(problem, fitted_net):
    X, y, _, _ = problem
    attr = TracInAttributor(FrozenEstimator(fitted_net))
    with pytest.raises(ValueError, match="X has 4 features, but the frozen estimator's module "
                                         "expects 6 features"):
        attr.fit(X[:, :4], y)
    assert not hasattr(attr, "estimator_")
    assert not hasattr(attr, "n_features_in_")


def test_failed_refit_keeps_the_previous_fit(problem, fitted):
    X, y, _, _ = problem
    before = state(fitted)
    labels = fitted.labels_.copy()
    with pytest.raises(ValueError):
        fitted.fit(X[:, :4], y)
    assert_same_state(fitted, before)
    np.testing.assert_array_equal(fitted.labels_, labels)


def test_unfitted_frozen_net(problem):
    X, y, _, _ = problem
    with pytest.raises(NotFittedError, match="FrozenEstimator is not fitted"):
        TracInAttributor(FrozenEstimator(tiny_net())).fit(X, y)


def test_scoring_data_with_other_width(problem, fitted):
    _, _, X_test, y_test = problem
    with pytest.raises(ValueError, match="X has 3 features, but TracInAttributor is expecting 6"):
        fitted.score_groups(X_test[:, :3], y_test)


def test_scoring_data_with_unseen_labels(problem, fitted):
    _, _, X_test, y_test = problem
    with pytest.raises(ValueError, match=r"y contains labels not seen in fit: \[7\]"):
        fitted.score_groups(X_test, np.full(len(y_test), 7))


def test_scoring_needs_both_X_and_y(problem, fitted):
    _, _, X_test, _ = problem
    with pytest.raises(ValueError, match="Pass both X and y"):
        fitted.score_groups(X_test)


def test_frozen_net_with_fewer_outputs_than_classes(problem, fitted_net):
    X, y, _, _ = problem
    with pytest.raises(ValueError, match="y has 3 classes, but the frozen estimator's module "
                                         "outputs 2 logits"):
        TracInAttributor(FrozenEstimator(fitted_net)).fit(X, np.arange(len(y)) % 3 + 5)


def test_n_components_above_parameter_count(problem, fitted_net):
    X, y, _, _ = problem
    with pytest.raises(ValueError, match="n_components=10000 exceeds the number of attributed"):
        TracInAttributor(FrozenEstimator(fitted_net), n_components=10_000).fit(X, y)


def test_invalid_parameter_types():
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'checkpoints' parameter"):
        TracInAttributor(checkpoints="first").fit(np.zeros((4, 2)), [0, 1, 0, 1])


def _failing_refits():
    from skggda import (GradKMeansGrouper, InfluenceAttributor, KMeansGrouper,
                        TRAKAttributor)

    def narrow_and_too_many_groups(estimator, X, y):
        estimator.set_params(n_groups=10).fit(X[:5, :3], y[:5])

    def groups_of_wrong_length(estimator, X, y):
        estimator.fit(X[:, :3], y, groups=np.arange(5))

    return [
        (lambda: InfluenceAttributor(tiny_net(), n_components=4, random_state=0),
         groups_of_wrong_length),
        (lambda: TRAKAttributor(tiny_net(), n_models=2, n_components=4, random_state=0),
         groups_of_wrong_length),
        (lambda: RandomGrouper(group_size=40, random_state=0), narrow_and_too_many_groups),
        (lambda: KMeansGrouper(group_size=40, random_state=0), narrow_and_too_many_groups),
        (lambda: GradKMeansGrouper(group_size=40, estimator=tiny_net(), random_state=0),
         narrow_and_too_many_groups),
    ]


@pytest.mark.parametrize("make, refit", _failing_refits())
def test_every_estimator_keeps_its_fit_when_a_refit_fails(problem, make, refit):
    X, y, _, _ = problem
    estimator = make().fit(X, y)
    before = state(estimator)
    params = estimator.get_params(deep=False)
    with pytest.raises(ValueError):
        refit(estimator, X, y)
    estimator.set_params(**params)  # the refit may have changed a parameter on purpose
    assert_same_state(estimator, before)
    assert estimator.n_features_in_ == X.shape[1]


def test_groups_of_mixed_types_keep_their_labels(problem, fitted_net):
    # np.asarray would read them as the strings "1", "1" and "a": two groups, not three
    X, y, _, _ = problem
    groups = [1, "1", "a"] * 80
    attr = TracInAttributor(FrozenEstimator(fitted_net)).fit(X, y, groups=groups)
    assert attr.n_groups_ == 3
    assert [attr.groups_[label] for label in attr.labels_[:3]] == [1, "1", "a"]


def test_groups_with_nan_in_an_object_array(problem, fitted_net):
    X, y, _, _ = problem
    groups = np.array(["a", 1, np.nan] * 80, dtype=object)
    with pytest.raises(ValueError, match="groups contains NaN"):
        TracInAttributor(FrozenEstimator(fitted_net)).fit(X, y, groups=groups)


def test_unhashable_group_labels(problem, fitted_net):
    X, y, _, _ = problem
    groups = np.empty(240, dtype=object)
    groups[:] = [{"a": 1}, "b"] * 120
    with pytest.raises(TypeError, match="Group labels must be hashable"):
        TracInAttributor(FrozenEstimator(fitted_net)).fit(X, y, groups=groups)


def test_scoring_labels_that_do_not_compare_with_the_classes(problem, fitted):
    X, _, _, _ = problem
    y = np.array([None, 1] * 120, dtype=object)
    before = state(fitted)
    with pytest.raises(ValueError, match=r"y contains labels not seen in fit, of other types"):
        fitted.score_groups(X, y)
    assert_same_state(fitted, before)


def test_predicting_groups_leaves_the_net_in_its_mode(problem):
    from skggda import ReprKMeansGrouper

    X, y, _, _ = problem
    grouper = ReprKMeansGrouper(n_groups=3, estimator=tiny_net(epochs=1), random_state=0)
    grouper.fit(X, y)
    modes = grouper.estimator_.module_.training, grouper.estimator_.criterion_.training
    grouper.predict(X)
    assert (grouper.estimator_.module_.training, grouper.estimator_.criterion_.training) == modes


@pytest.mark.parametrize("make", [
    lambda: TracInAttributor(tiny_net(epochs=1)),
    lambda: RandomGrouper(n_groups=2),
    lambda: KMeansGrouper(n_groups=2),
])
def test_samples_without_features_are_refused(make):
    # scikit-learn checks the number of features of 2-D input only
    X = np.zeros((6, 0, 1), dtype=np.float32)
    with pytest.raises(ValueError, match=r"Found array with 0 feature\(s\) \(shape=\(6, 0, 1\)\)"):
        make().fit(X, np.arange(6) % 2)
