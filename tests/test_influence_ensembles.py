"""Influence ensembles (issue 22): ``n_models`` nets with independent seeds and
``checkpoints="all"``, against single attributors written out here."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from skggda import InfluenceAttributor
from skggda.io import load, save
from skggda.models._callbacks import CheckpointRecorder
from skggda.utils._seeding import derive_seeds

from conftest import make_problem, tiny_net

#: Every solver with a fixed curvature, with settings that keep it tiny.
FIXED = {
    "exact": {},
    "kfac": {},
    "ekfac": {},
    "cg": {"cg_max_iter": 5, "damping": 1.0},
    "fisher": {"fisher": "empirical"},
}


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=48, n_features=3, seed=3)
    X_test, y_test, _, _ = make_problem(n=10, n_features=3, seed=4)
    groups = np.arange(len(y)) % 8
    return X, y, X_test, y_test, groups


def net():
    return tiny_net(hidden=(3,), epochs=3, batch_size=16)


def scores_of(attr, X_test, y_test):
    return (attr.score_groups(X_test, y_test), attr.attribute(X_test, y_test),
            attr.self_influence())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", list(FIXED))
@pytest.mark.parametrize("kind", [dict(n_models=2), dict(checkpoints="all")])
def test_group_scores_are_the_sum_of_their_members(data, solver, kind):
    X, y, X_test, y_test, groups = data
    params = dict(solver=solver, random_state=0, **FIXED[solver], **kind)
    grouped = InfluenceAttributor(net(), **params).fit(X, y, groups=groups)
    points = InfluenceAttributor(net(), **params).fit(X, y)
    assert len(grouped._members) == (2 if "n_models" in kind else 3)
    summed = np.zeros(grouped.n_groups_)
    np.add.at(summed, groups, points.score_groups(X_test, y_test))
    np.testing.assert_allclose(grouped.score_groups(X_test, y_test), summed,
                               rtol=1e-5, atol=1e-7)
    per_test = np.zeros((len(y_test), grouped.n_groups_))
    np.add.at(per_test.T, groups, points.attribute(X_test, y_test).T)
    np.testing.assert_allclose(grouped.attribute(X_test, y_test), per_test, rtol=1e-4, atol=1e-6)


def test_one_model_is_the_single_attributor(data):
    X, y, X_test, y_test, groups = data
    single = InfluenceAttributor(net(), solver="ekfac", random_state=0).fit(X, y, groups=groups)
    one = InfluenceAttributor(net(), solver="ekfac", n_models=1, random_state=0).fit(
        X, y, groups=groups)
    assert getattr(one, "_members", None) is None and not hasattr(one, "estimators_")
    for a, b in zip(scores_of(one, X_test, y_test), scores_of(single, X_test, y_test)):
        np.testing.assert_array_equal(a, b)


def test_two_models_are_the_mean_of_two_single_attributors(data):
    """Member 0 is the attributor's own net and seed; member 1 the single attributor with
    random_state derive_seeds(a, 1)[0] (a: the attribution seed), whose net is trained
    from its own derived seed. The true Fisher's labels check the solver's seeds too."""
    X, y, X_test, y_test, groups = data
    rs = 5
    ensemble = InfluenceAttributor(net(), solver="ekfac", n_models=2, random_state=rs).fit(
        X, y, groups=groups)
    r1 = int(derive_seeds(int(derive_seeds(rs, 3)[2]), 1)[0])
    net1 = clone(net()).set_params(random_state=int(derive_seeds(r1, 3)[0]))
    singles = [InfluenceAttributor(net(), solver="ekfac", random_state=rs),
               InfluenceAttributor(net1, solver="ekfac", random_state=r1)]
    singles = [s.fit(X, y, groups=groups) for s in singles]
    assert len(ensemble.estimators_) == 2
    expected = [np.mean(parts, axis=0) for parts in
                zip(*(scores_of(s, X_test, y_test) for s in singles))]
    for got, want in zip(scores_of(ensemble, X_test, y_test), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # the members differ: independent seeds, not one net twice
    assert not np.allclose(singles[0].score_groups(X_test, y_test),
                           singles[1].score_groups(X_test, y_test))
    top = ensemble.top_groups(X_test, y_test, n=2)
    np.testing.assert_array_equal(top.helpful_indices, np.argsort(-expected[1], 1)[:, :2])


def test_all_checkpoints_are_the_learning_rate_weighted_sum(data):
    X, y, X_test, y_test, groups = data
    recorder = CheckpointRecorder()
    recipe = net()
    trained = recipe.set_params(callbacks=[*recipe.callbacks, ("ckpt", recorder)]).fit(X, y)
    expected = None
    for state, rate in zip(recorder.checkpoints_, recorder.learning_rates_):
        at = copy.deepcopy(trained)
        at.module_.load_state_dict(state)
        single = InfluenceAttributor(FrozenEstimator(at), solver="kfac", random_state=0)
        parts = [rate * part for part in scores_of(single.fit(X, y, groups=groups),
                                                  X_test, y_test)]
        expected = parts if expected is None else [a + b for a, b in zip(expected, parts)]
    assert len(recorder.checkpoints_) == 3
    attr = InfluenceAttributor(net(), solver="kfac", checkpoints="all", random_state=0).fit(
        X, y, groups=groups)
    for got, want in zip(scores_of(attr, X_test, y_test), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


def test_damping_set_after_fit_reaches_every_member(data):
    X, y, X_test, y_test, groups = data
    attr = InfluenceAttributor(net(), solver="ekfac", n_models=2, random_state=0).fit(
        X, y, groups=groups)
    before = attr.score_groups(X_test, y_test)
    refit = clone(attr).set_params(damping=0.5).fit(X, y, groups=groups)
    attr.set_params(damping=0.5)
    np.testing.assert_allclose(attr.score_groups(X_test, y_test),
                               refit.score_groups(X_test, y_test), rtol=1e-6)
    assert not np.allclose(before, refit.score_groups(X_test, y_test))


def test_frozen_nets_cannot_make_ensembles_or_checkpoints(data):
    X, y, *_ = data
    frozen = FrozenEstimator(net().fit(X, y))
    with pytest.raises(ValueError, match="n_models=2 .*FrozenEstimator"):
        InfluenceAttributor(frozen, n_models=2).fit(X, y)
    with pytest.raises(ValueError, match="checkpoints='all' .*FrozenEstimator"):
        InfluenceAttributor(frozen, checkpoints="all").fit(X, y)


def test_an_ensemble_round_trips_through_skggda_io(data, tmp_path):
    X, y, X_test, y_test, groups = data
    attr = InfluenceAttributor(net(), solver="ekfac", n_models=2, checkpoints="all",
                               random_state=0).fit(X, y, groups=groups)
    save(attr, tmp_path / "ensemble.skggda")
    loaded = load(tmp_path / "ensemble.skggda")
    for a, b in zip(scores_of(loaded, X_test, y_test), scores_of(attr, X_test, y_test)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
def test_auto_damping_is_the_mean_eigenvalue_of_the_whole_curvature(data, solver):
    X, y, X_test, y_test, groups = data
    attr = InfluenceAttributor(net(), solver=solver, random_state=0).fit(X, y, groups=groups)
    values = np.concatenate([block.eigenvalues.double().numpy().ravel()
                             for block in attr._kfac.blocks])
    assert len(values) == sum(p.numel() for p in attr.estimator_.module_.parameters())
    fixed = attr.set_params(damping=float(values.mean())).score_groups(X_test, y_test)
    auto = attr.set_params(damping="auto").score_groups(X_test, y_test)
    np.testing.assert_allclose(auto, fixed, rtol=1e-6)
    with pytest.raises(ValueError, match="damping='auto' applies to solver='kfac'"):
        InfluenceAttributor(net(), solver="cg", damping="auto").fit(X, y)
