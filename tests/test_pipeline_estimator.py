"""A Pipeline as the attributed estimator: its first steps preprocess, its last is attributed."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skggda import GradKMeansGrouper, InfluenceAttributor, TracInAttributor, TRAKAttributor
from skggda.metrics import make_removal_scorer
from skggda.models import ConvertedModel

from conftest import make_problem, tiny_net


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=160, seed=11)
    X_test, y_test, _, _ = make_problem(n=50, seed=12)
    return X * 10 + 3, y, X_test * 10 + 3, y_test  # float32, far from standardised


@pytest.mark.parametrize("make_model, kwargs", [
    (lambda: LogisticRegression(C=0.5), dict(solver="exact")),
    (lambda: tiny_net(), dict(n_components=8, random_state=0)),
], ids=["logreg", "skorch"])
def test_pipeline_equals_attributing_its_last_step_on_transformed_data(data, make_model, kwargs):
    X, y, X_test, y_test = data
    pipe = InfluenceAttributor(make_pipeline(StandardScaler(), make_model()), **kwargs)
    pipe.fit(X, y)
    scaler = StandardScaler().fit(X)
    direct = InfluenceAttributor(make_model(), **kwargs).fit(scaler.transform(X), y)
    np.testing.assert_allclose(pipe.score_groups(X_test, y_test),
                               direct.score_groups(scaler.transform(X_test), y_test),
                               rtol=1e-5, atol=1e-9)
    assert pipe.n_features_in_ == X.shape[1]


def test_fitted_pipeline_is_used_as_is(data):
    X, y, X_test, y_test = data
    pipe = make_pipeline(StandardScaler(), Ridge(alpha=2.0)).fit(X, y.astype(float))
    mean, coef = pipe[0].mean_.copy(), pipe[-1].coef_.copy()
    attr = TracInAttributor(pipe).fit(X[:80], y[:80].astype(float))  # other data: no refit
    assert attr.estimator_.estimator_ is pipe[-1]
    np.testing.assert_array_equal(pipe[0].mean_, mean)
    np.testing.assert_array_equal(pipe[-1].coef_, coef)
    assert attr.score_groups(X_test, y_test.astype(float)).shape == (80,)


def test_raw_dataframe_with_strings_and_missing_values():
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    frame = pd.DataFrame({"age": rng.normal(40, 10, 150), "income": rng.normal(5, 2, 150),
                          "city": rng.choice(["Lyon", "Oslo", "Kyiv"], 150)})
    frame.loc[::13, "income"] = np.nan
    y = ((frame.age - 40) / 10 + (frame.city == "Oslo") > 0.3).map({True: "yes", False: "no"})
    preprocess = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
        (OneHotEncoder(), ["city"]))
    attr = TracInAttributor(make_pipeline(preprocess, LogisticRegression()),
                            grouper=GradKMeansGrouper(group_size=15), random_state=0)
    attr.fit(frame, y)
    assert attr.feature_names_in_.tolist() == ["age", "income", "city"]
    assert attr._X_fit.shape == (150, 5)  # two scaled numbers and three one-hot columns
    scores = attr.score_groups(frame[:40], y[:40])
    assert scores.shape == (attr.n_groups_,) and np.isfinite(scores).all()
    assert 0 <= make_removal_scorer(0.2, most_important=False)(attr, frame[:40], y[:40]) <= 1
    grouper = GradKMeansGrouper(group_size=15, estimator=make_pipeline(preprocess, Ridge()),
                                random_state=0).fit(frame, frame.age)
    assert grouper.transform(frame[:4], frame.age[:4]).shape == (4, grouper.n_groups_)


def test_metrics_and_trak_refit_the_last_step(data):
    X, y, X_test, y_test = data
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    attr = TRAKAttributor(pipe, n_models=2, random_state=0).fit(X, y)
    assert all(isinstance(member, ConvertedModel) for member in attr.estimators_)
    assert np.isfinite(make_removal_scorer(0.1, most_important=True)(attr, X_test, y_test))
