"""TRAKAttributor: against a slow reference, projection, groups and parallel jobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch.nn import functional as F

from skggda import RandomGrouper, TRAKAttributor

from conftest import make_problem, tiny_net


@pytest.fixture(scope="module")
def data():
    X, y, _, flipped = make_problem(n=160, n_features=4, noise=0.1, seed=11)
    X_test, y_test, _, _ = make_problem(n=50, n_features=4, seed=12)
    return X, y, X_test, y_test, flipped


def trak(**params):
    params.setdefault("random_state", 0)
    return TRAKAttributor(tiny_net(hidden=(6,), epochs=5), n_models=3, **params)


def margin(out, y):
    correct = out.gather(1, y[:, None]).squeeze(1)
    return correct - torch.logsumexp(out.scatter(1, y[:, None], float("-inf")), 1)


def slow_member_scores(net, X, y, X_test, y_test, damping):
    """One member by hand: margin gradients, their mean kernel, loss gradients, a solve."""
    module = net.module_.eval()
    params = list(module.parameters())

    def grad(value):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, params)]).double()

    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y)
    phi = torch.stack([grad(margin(module(X_t[i:i + 1]), y_t[i:i + 1]).sum())
                       for i in range(len(y))])
    loss_grads = torch.stack([grad(F.cross_entropy(module(X_t[i:i + 1]), y_t[i:i + 1]))
                              for i in range(len(y))])
    v = grad(F.cross_entropy(module(torch.as_tensor(X_test)), torch.as_tensor(y_test)))
    K = phi.T @ phi / len(y) + damping * torch.eye(phi.shape[1], dtype=phi.dtype)
    return (loss_grads @ torch.linalg.solve(K, v) / len(y)).numpy()


def test_unprojected_trak_equals_slow_reference(data):
    X, y, X_test, y_test, _ = data
    attr = trak(damping=1e-2).fit(X, y)
    expected = np.mean([slow_member_scores(net, X, y, X_test, y_test, 1e-2)
                        for net in attr.estimators_], axis=0)
    np.testing.assert_allclose(attr.score_groups(X_test, y_test), expected, rtol=2e-3, atol=1e-6)


def test_members_train_on_random_halves(data):
    X, y, _, _, _ = data
    attr = trak().fit(X, y)
    assert len(attr.estimators_) == 3
    assert all(len(subset) == 80 for subset in attr.subsets_)
    assert not np.array_equal(attr.subsets_[0], attr.subsets_[1])


def test_each_member_equals_its_recipe_refitted_on_its_half(data):
    # recorded subsets prove nothing about what a member was trained on:
    # refit its recipe (same parameters, same seed) on its half alone and
    # compare the weights by value. Members with their own seeds (the recipe
    # leaves random_state unset) also show that the halves differ.
    X, y, _, _, _ = data
    attr = TRAKAttributor(tiny_net(hidden=(6,), epochs=5, seed=None), n_models=2,
                          random_state=0).fit(X, y)
    for member, subset in zip(attr.estimators_, attr.subsets_):
        refit = clone(member).fit(X[subset], y[subset])
        weights, expected = member.module_.state_dict(), refit.module_.state_dict()
        assert weights.keys() == expected.keys()
        for name in weights:
            torch.testing.assert_close(weights[name], expected[name], rtol=1e-6, atol=1e-7,
                                       msg=lambda m, name=name: f"{name}: {m}")


def test_projection_approaches_unprojected_ranking(data):
    from scipy.stats import spearmanr

    X, y, X_test, y_test, _ = data
    exact = trak().fit(X, y).score_groups(X_test, y_test)  # 44 parameters, no projection

    def rank_agreement(r):  # the same random_state: the same ensemble, projected to r dims
        return spearmanr(trak(n_components=r).fit(X, y).score_groups(X_test, y_test),
                         exact).statistic

    low, high = rank_agreement(4), rank_agreement(40)
    assert high > low
    assert high > 0.9


def test_group_scores_are_sums_of_member_scores(data):
    X, y, X_test, y_test, _ = data
    points = trak(n_components=16).fit(X, y).score_groups(X_test, y_test)
    grouped = trak(n_components=16, grouper=RandomGrouper(group_size=8, random_state=0)).fit(X, y)
    np.testing.assert_allclose(grouped.score_groups(X_test, y_test),
                               np.bincount(grouped.labels_, points), rtol=1e-3, atol=1e-7)


def test_parallel_jobs_give_the_same_ensemble(data):
    X, y, X_test, y_test, _ = data
    sequential = trak(n_components=8).fit(X, y).score_groups(X_test, y_test)
    parallel = trak(n_components=8, n_jobs=2).fit(X, y).score_groups(X_test, y_test)
    np.testing.assert_allclose(parallel, sequential, rtol=1e-5, atol=1e-9)


def test_attribute_rows_average_to_score_groups(data):
    X, y, X_test, y_test, _ = data
    attr = trak(n_components=8, grouper=RandomGrouper(group_size=10, random_state=0)).fit(X, y)
    np.testing.assert_allclose(attr.attribute(X_test, y_test).mean(0),
                               attr.score_groups(X_test, y_test), rtol=1e-4, atol=1e-7)


def test_warm_start_reuses_the_ensemble_for_a_new_grouping(data):
    X, y, X_test, y_test, _ = data
    attr = trak(n_components=16, warm_start=True).fit(X, y)
    nets = list(attr.estimators_)
    trained = attr.training_seconds_
    assert trained == pytest.approx(attr.timings_["gradients.training"], abs=0.05)
    assert all(f"``{stage}``" in TRAKAttributor.__doc__ for stage in attr.timings_)
    points = attr.score_groups(X_test, y_test)
    attr.set_params(grouper=RandomGrouper(group_size=8, random_state=0)).fit(X, y)
    assert all(a is b for a, b in zip(attr.estimators_, nets))
    np.testing.assert_allclose(attr.score_groups(X_test, y_test),
                               np.bincount(attr.labels_, points), rtol=1e-3, atol=1e-7)
    assert attr.training_seconds_ == trained > 0  # the ensemble's cost stays on record
    assert "gradients.training" not in attr.timings_ and "gradients.kernels" in attr.timings_


@pytest.mark.parametrize("change", ["labels", "features", "recipe"])
def test_warm_start_retrains_when_data_or_recipe_change(data, change):
    X, y, _, _, _ = data
    attr = trak(n_components=16, warm_start=True).fit(X, y)
    nets = list(attr.estimators_)
    if change == "labels":
        y = 1 - y
    elif change == "features":
        X = X + 1
    else:
        attr.set_params(estimator=tiny_net(hidden=(7,), epochs=5))
    attr.fit(X, y)
    assert not any(a is b for a, b in zip(attr.estimators_, nets))


def test_warm_start_with_a_frozen_trained_net_as_recipe(data):
    # The experiment grid's use: a fitted net (its callbacks hold a live scheduler and
    # optimizer) is the members' recipe; the ensemble is reused for a new grouping.
    from sklearn.frozen import FrozenEstimator

    X, y, X_test, y_test, _ = data
    net = tiny_net(hidden=(6,), epochs=5).fit(X, y)
    attr = TRAKAttributor(FrozenEstimator(net), n_models=2, n_components=8, warm_start=True,
                          random_state=0).fit(X, y)
    nets = list(attr.estimators_)
    attr.set_params(grouper=RandomGrouper(group_size=8, random_state=0)).fit(X, y)
    assert all(a is b for a, b in zip(attr.estimators_, nets))
    assert attr.score_groups(X_test, y_test).shape == (attr.n_groups_,)


def test_members_trained_on_a_half_without_a_class_keep_every_output():
    # one sample of class 2: most random halves lack it
    X, y, _, _ = make_problem(n=20, n_features=3, n_classes=3, seed=5)
    y = np.where(np.arange(20) == 0, 2, np.arange(20) % 2)
    attr = TRAKAttributor(tiny_net(hidden=(4,), epochs=1), n_models=4, property="margin",
                          random_state=0).fit(X, y)
    assert any(2 not in y[subset] for subset in attr.subsets_)
    assert all(net.module_.head.out_features == 3 for net in attr.estimators_)
    assert np.isfinite(attr.score_groups(X, y)).all()
