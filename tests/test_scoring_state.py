"""Scoring leaves a fitted estimator unchanged (scikit-learn's check_dict_unchanged).

``score_groups``, ``attribute`` and ``self_influence`` may run concurrently on
one fitted attributor; they must not write to it. Their stage times go to
:func:`skggda.utils.record_timings` instead.
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from skggda import (
    GradKMeansGrouper,
    InfluenceAttributor,
    RandomGrouper,
    TracInAttributor,
    TRAKAttributor,
)
from skggda.utils import record_timings

from conftest import tiny_net


def snapshot(estimator):
    """A deep copy of the estimator's state, the net's weights included."""
    state = copy.deepcopy(vars(estimator))
    net = estimator.estimator_
    state["__weights__"] = {k: v.clone() for k, v in net.module_.state_dict().items()}
    return state


def assert_same(before, after):
    assert before.keys() == after.keys()
    for key in before:
        a, b = before[key], after[key]
        if key == "__weights__":
            assert all(torch.equal(a[k], b[k]) for k in a)
        elif isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        elif isinstance(a, (dict, list, tuple, str, int, float, type(None))):
            assert repr(a) == repr(b), key


def attributors(net):
    frozen = FrozenEstimator(net)
    return [
        TracInAttributor(frozen, grouper=RandomGrouper(group_size=8), random_state=0),
        TracInAttributor(tiny_net(), checkpoints="all", n_components=8, random_state=0),
        InfluenceAttributor(frozen, grouper=GradKMeansGrouper(group_size=8), n_components=8,
                            random_state=0),
        InfluenceAttributor(frozen, solver="cg", damping=0.1, random_state=0),
        InfluenceAttributor(frozen, solver="ekfac", random_state=0),
        TRAKAttributor(tiny_net(epochs=2), n_models=2, n_components=8, random_state=0),
    ]


@pytest.mark.parametrize("index", range(6))
def test_scoring_methods_leave_the_estimator_unchanged(problem, fitted_net, index):
    X, y, X_test, y_test = problem
    attr = attributors(fitted_net)[index].fit(X, y)
    before = snapshot(attr)
    with record_timings() as timings:
        attr.score_groups(X_test, y_test)
        attr.score_groups()
        attr.attribute(X_test[:5], y_test[:5])
        attr.self_influence()
    assert_same(before, snapshot(attr))
    assert {"scoring", "attribution", "self_influence"} <= set(timings)


def test_concurrent_scoring_gives_the_sequential_scores(problem, fitted_net):
    X, y, X_test, y_test = problem
    attr = attributors(fitted_net)[2].fit(X, y)
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
