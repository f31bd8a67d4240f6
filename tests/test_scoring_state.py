"""Scoring leaves a fitted estimator unchanged (scikit-learn's check_dict_unchanged).

``score_groups``, ``attribute`` and ``self_influence`` may run concurrently on
one fitted attributor; they must not write to it. Their stage times go to
:func:`skggda.utils.record_timings` instead. "Unchanged" is checked with
:func:`conftest.deep_state`: everything reachable from the estimator by value
-- nested estimators and nets (weights, buffers, modes), kernel states,
K-FAC eigenbases and eigenvalues, the grouper, checkpoints.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator

from skggda import (GradKMeansGrouper, InfluenceAttributor, KMeansGrouper, RandomGrouper,
                    ReprKMeansGrouper, TracInAttributor, TRAKAttributor)
from skggda.utils import record_timings

from conftest import deep_state, tiny_net


def first_difference(before, after, path="estimator", attributes=False):
    """Where two :func:`deep_state` pictures first differ (``None`` when equal).

    A path such as ``estimator._kfac.blocks[0].eigenvalues`` says what changed,
    where a failed ``==`` on the whole picture would print two huge tuples.
    """
    if before == after:
        return None
    if not (isinstance(before, tuple) and isinstance(after, tuple)
            and len(before) == len(after) and before[:1] == after[:1]):
        return path
    kind, items = before[0], before[1] if len(before) == 2 else None
    if kind == "dict" and [k for k, _ in items] == [k for k, _ in after[1]]:
        for (key, a), (_, b) in zip(items, after[1]):
            name = f".{key.strip(chr(39))}" if attributes else f"[{key}]"
            found = first_difference(a, b, path + name)
            if found:
                return found
    elif kind in ("list", "tuple", "set", "frozenset") and len(items) == len(after[1]):
        for i, (a, b) in enumerate(zip(items, after[1])):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(items, tuple):  # an object: the picture of its __dict__
        return first_difference(items, after[1], path, attributes=True)
    return path


def assert_unchanged(estimator, before, call):
    difference = first_difference(before, deep_state(estimator))
    assert difference is None, f"{call} changed {difference}"


#: Every attributor and solver kind, as small as it gets (ids name them).
ATTRIBUTORS = {
    "tracin-last": lambda frozen: TracInAttributor(
        frozen, grouper=RandomGrouper(group_size=8), random_state=0),
    "tracin-last-projected": lambda frozen: TracInAttributor(
        frozen, grouper=GradKMeansGrouper(group_size=8), n_components=8, random_state=0),
    "tracin-all": lambda frozen: TracInAttributor(
        tiny_net(), checkpoints="all", random_state=0),
    "tracin-all-projected": lambda frozen: TracInAttributor(
        tiny_net(), checkpoints="all", n_components=8, random_state=0),
    "fisher-batched-projected": lambda frozen: InfluenceAttributor(
        frozen, grouper=GradKMeansGrouper(group_size=8), n_components=8, random_state=0),
    "fisher-empirical": lambda frozen: InfluenceAttributor(
        frozen, fisher="empirical", random_state=0),
    "lissa": lambda frozen: InfluenceAttributor(
        frozen, solver="lissa", lissa_depth=5, lissa_repeat=2, random_state=0),
    "cg": lambda frozen: InfluenceAttributor(frozen, solver="cg", damping=1.0, random_state=0),
    "exact": lambda frozen: InfluenceAttributor(frozen, solver="exact", random_state=0),
    "kfac": lambda frozen: InfluenceAttributor(
        frozen, solver="kfac", grouper=ReprKMeansGrouper(group_size=8), random_state=0),
    "ekfac": lambda frozen: InfluenceAttributor(frozen, solver="ekfac", random_state=0),
    "trak-projected": lambda frozen: TRAKAttributor(
        tiny_net(epochs=2), n_models=2, n_components=8, random_state=0),
    "trak": lambda frozen: TRAKAttributor(
        tiny_net(epochs=2), grouper=KMeansGrouper(group_size=8), n_models=2, random_state=0),
}


@pytest.mark.parametrize("name", sorted(ATTRIBUTORS))
def test_scoring_methods_leave_the_attributor_unchanged(problem, fitted_net, name):
    X, y, X_test, y_test = problem
    attr = ATTRIBUTORS[name](FrozenEstimator(fitted_net)).fit(X, y)
    before = deep_state(attr)
    calls = {
        "score_groups(X, y)": lambda: attr.score_groups(X_test, y_test),
        "score_groups()": attr.score_groups,
        "attribute(X, y)": lambda: attr.attribute(X_test[:5], y_test[:5]),
        "self_influence()": attr.self_influence,
    }
    with record_timings() as timings:
        for call, method in calls.items():
            method()
            assert_unchanged(attr, before, call)
    assert {"scoring", "attribution", "self_influence"} <= set(timings)


@pytest.mark.parametrize("make", [
    lambda: KMeansGrouper(group_size=8, random_state=0),
    lambda: KMeansGrouper(n_groups=260, random_state=0),  # above 256: the center index
    lambda: ReprKMeansGrouper(group_size=8, estimator=tiny_net(), random_state=0),
    lambda: GradKMeansGrouper(group_size=8, estimator=tiny_net(), random_state=0),
], ids=["kmeans", "kmeans-indexed", "repr", "grad"])
def test_grouper_predict_and_transform_leave_it_unchanged(problem, make):
    X, y, X_test, y_test = problem
    grouper = make().fit(np.r_[X, X_test], np.r_[y, y_test])  # 320 rows
    before = deep_state(grouper)
    calls = {
        "transform(X)": lambda: grouper.transform(X_test),
        "transform(X, y)": lambda: grouper.transform(X_test, y_test),
        "predict(X)": lambda: grouper.predict(X_test),
        "predict(X, y)": lambda: grouper.predict(X_test, y_test),
        "get_feature_names_out()": grouper.get_feature_names_out,
    }
    for call, method in calls.items():
        method()
        assert_unchanged(grouper, before, call)


def test_concurrent_scoring_gives_the_sequential_scores(problem, fitted_net):
    X, y, X_test, y_test = problem
    attr = ATTRIBUTORS["fisher-batched-projected"](FrozenEstimator(fitted_net)).fit(X, y)
    expected = attr.score_groups(X_test, y_test)
    results = [None] * 4

    def work(i):
        results[i] = attr.score_groups(X_test, y_test)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_allclose(result, expected, rtol=1e-6)
