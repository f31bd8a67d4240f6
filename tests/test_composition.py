"""scikit-learn composition: pipelines, searches, metadata routing, persistence, data types."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skggda import GradKMeansGrouper, InfluenceAttributor, RandomGrouper, TracInAttributor
from skggda.metrics import make_removal_scorer

from conftest import make_problem, tiny_net


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=200, seed=31)
    X_test, y_test, _, _ = make_problem(n=60, seed=32)
    return X, y, X_test, y_test


@pytest.fixture
def routing():
    sklearn.set_config(enable_metadata_routing=True)
    yield
    sklearn.set_config(enable_metadata_routing=False)


def n_groups_scorer(estimator, X, y):
    return float(estimator.n_groups_)


def test_grid_search_over_group_size_and_attributor_parameters(data):
    X, y, _, _ = data
    search = GridSearchCV(
        InfluenceAttributor(FrozenEstimator(tiny_net().fit(X, y)), grouper=RandomGrouper()),
        {"grouper__group_size": [10, 50], "n_components": [4, 8]},
        scoring=make_removal_scorer(0.25, most_important=False), cv=2, n_jobs=2,
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.n_groups_ in (4, 20)


def test_routing_off_sends_groups_to_the_splitter_only(data):
    """Pinned behaviour of scikit-learn: the docs' routing pitfall depends on it."""
    X, y, _, _ = data
    groups = np.arange(len(y)) % 5
    search = GridSearchCV(TracInAttributor(FrozenEstimator(tiny_net().fit(X, y))),
                          {"batch_size": [64]}, scoring=n_groups_scorer, cv=GroupKFold(5))
    search.fit(X, y, groups=groups)
    # the attributor never saw `groups`: it formed singletons on the 160 training rows
    assert search.cv_results_["mean_test_score"][0] == 160
    assert search.best_estimator_.n_groups_ == 200


def test_routing_on_reaches_the_attributor(data, routing):
    X, y, _, _ = data
    groups = np.arange(len(y)) % 5
    attributor = TracInAttributor(FrozenEstimator(tiny_net().fit(X, y))).set_fit_request(
        groups=True)
    search = GridSearchCV(attributor, {"batch_size": [64]}, scoring=n_groups_scorer,
                          cv=GroupKFold(5))
    search.fit(X, y, groups=groups)
    # GroupKFold held out one group per split; the attributor got the other four
    assert search.cv_results_["mean_test_score"][0] == 4
    assert search.best_estimator_.groups_.tolist() == [0, 1, 2, 3, 4]


def test_routing_alias_separates_split_groups_from_attribution_groups(data, routing):
    X, y, _, _ = data
    folds = np.arange(len(y)) % 4
    regions = np.arange(len(y)) % 10
    attributor = TracInAttributor(FrozenEstimator(tiny_net().fit(X, y))).set_fit_request(
        groups="regions")
    search = GridSearchCV(attributor, {"batch_size": [64]}, scoring=n_groups_scorer,
                          cv=GroupKFold(4))
    search.fit(X, y, groups=folds, regions=regions)
    assert search.cv_results_["mean_test_score"][0] == 10


def test_pipeline_with_scaler_and_routed_groups(data, routing):
    X, y, X_test, y_test = data
    groups = np.arange(len(y)) % 8
    pipe = Pipeline([("scale", StandardScaler()),
                     ("attr", TracInAttributor(tiny_net(), random_state=0)
                      .set_fit_request(groups=True))])
    pipe.fit(X * 10 + 3, y, groups=groups)
    attr = pipe.named_steps["attr"]
    assert attr.n_groups_ == 8
    scaled = pipe[:-1].transform(X_test * 10 + 3)
    assert attr.score_groups(scaled, y_test).shape == (8,)


def test_scorers_take_a_pipeline_and_transform_the_validation_fold(data):
    X, y, X_test, y_test = data
    X, X_test = X * 10 + 3, X_test * 10 + 3  # only right once scaled
    # three steps: the scorer must apply every step but the last, not just the first
    pipe = Pipeline([("negate", FunctionTransformer(np.negative)), ("scale", StandardScaler()),
                     ("attr", TracInAttributor(tiny_net(), grouper=RandomGrouper(group_size=25),
                                               random_state=0))]).fit(X, y)
    scorer = make_removal_scorer(0.25, most_important=False)
    direct = scorer(pipe[-1], pipe[:-1].transform(X_test), y_test)
    assert scorer(pipe, X_test, y_test) == direct
    search = GridSearchCV(pipe, {"attr__grouper__group_size": [25, 50]}, scoring=scorer,
                          cv=2, error_score="raise").fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_frozen_net_survives_clone_and_search(data):
    X, y, _, _ = data
    net = tiny_net().fit(X, y)
    attributor = TracInAttributor(FrozenEstimator(net), grouper=GradKMeansGrouper())
    assert clone(attributor).estimator.estimator is net
    search = GridSearchCV(attributor, {"grouper__group_size": [20, 40]},
                          scoring=n_groups_scorer, cv=2).fit(X, y)
    assert search.best_estimator_.estimator_ is net


def test_cross_validate_returns_fitted_attributors(data):
    X, y, _, _ = data
    result = cross_validate(TracInAttributor(tiny_net(), grouper=RandomGrouper(group_size=25),
                                             random_state=0),
                            X, y, cv=2, scoring=n_groups_scorer, return_estimator=True)
    assert [est.n_groups_ for est in result["estimator"]] == [4, 4]


@pytest.mark.parametrize("make", [
    lambda: TracInAttributor(tiny_net(), grouper=GradKMeansGrouper(group_size=20),
                             n_components=8, random_state=0),
    lambda: InfluenceAttributor(tiny_net(), n_components=8, random_state=0),
])
def test_pickled_attributor_scores_new_data_without_the_training_side(tmp_path, data, make):
    X, y, X_test, y_test = data
    attributor = make().fit(X, y)
    expected = attributor.score_groups(X_test, y_test)
    path = tmp_path / "attributor.joblib"
    joblib.dump(attributor, path)
    loaded = joblib.load(path)
    del loaded._X_fit  # scoring new data must not need a pass over the training side
    np.testing.assert_allclose(loaded.score_groups(X_test, y_test), expected, rtol=1e-5)
    assert loaded.timings_["gradients"] == attributor.timings_["gradients"]


def test_pickled_grouper_predicts_the_same(data):
    X, y, _, _ = data
    grouper = GradKMeansGrouper(group_size=20, estimator=tiny_net(), random_state=0).fit(X, y)
    loaded = pickle.loads(pickle.dumps(grouper))
    np.testing.assert_array_equal(loaded.predict(X, y), grouper.predict(X, y))


def test_dataframes_keep_feature_names(data):
    pd = pytest.importorskip("pandas")
    X, y, X_test, y_test = data
    columns = [f"f{i}" for i in range(X.shape[1])]
    attr = TracInAttributor(tiny_net(), random_state=0).fit(pd.DataFrame(X, columns=columns),
                                                           pd.Series(y))
    assert attr.feature_names_in_.tolist() == columns
    frame_scores = attr.score_groups(pd.DataFrame(X_test, columns=columns), y_test)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        array_scores = attr.score_groups(X_test, y_test)
    np.testing.assert_allclose(frame_scores, array_scores, rtol=1e-4, atol=1e-7)


def test_float64_and_string_labels(data):
    X, y, X_test, y_test = data
    labels = np.array(["no", "yes"])
    a = TracInAttributor(tiny_net(), random_state=0).fit(X.astype(np.float64), labels[y])
    b = TracInAttributor(tiny_net(), random_state=0).fit(X, y)
    np.testing.assert_allclose(a.score_groups(X_test.astype(np.float64), labels[y_test]),
                               b.score_groups(X_test, y_test), rtol=1e-5)


def test_image_arrays_flow_through(data):
    rng = np.random.RandomState(0)
    images = rng.normal(size=(80, 1, 4, 4)).astype(np.float32)
    y = (images[:, 0, 0, 0] > 0).astype(int)
    attr = TracInAttributor(tiny_net(), grouper=GradKMeansGrouper(group_size=10),
                            random_state=0).fit(images, y)
    assert attr.score_groups(images[:20], y[:20]).shape == (8,)
