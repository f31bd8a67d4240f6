"""TracInAttributor: the identities that make group attribution trustworthy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from torch.nn import functional as F

from skggda.utils import record_timings
from skggda import RandomGrouper, TracInAttributor

from conftest import make_problem, one_cycle_rates, tiny_net


def slow_tracin(net, X, y, X_test, y_test):
    """Independent per-point TracIn: one backward pass per training sample."""
    module = net.module_.eval()
    params = [p for p in module.parameters()]

    def grad(x, t, mean=False):
        out = module(torch.as_tensor(x))
        loss = F.cross_entropy(out, torch.as_tensor(t), reduction="mean" if mean else "sum")
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])

    test_grad = grad(X_test, y_test, mean=True)
    return np.array([float(grad(X[i:i + 1], y[i:i + 1]) @ test_grad) for i in range(len(y))])


@pytest.fixture(scope="module")
def frozen(fitted_net):
    return FrozenEstimator(fitted_net)


def test_group_size_one_equals_slow_per_point_reference(problem, fitted_net, frozen):
    X, y, X_test, y_test = problem
    scores = TracInAttributor(frozen).fit(X, y).score_groups(X_test, y_test)
    np.testing.assert_allclose(scores, slow_tracin(fitted_net, X, y, X_test, y_test),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n_components", [None, 16])
def test_group_scores_are_sums_of_member_scores(problem, frozen, n_components):
    X, y, X_test, y_test = problem
    points = TracInAttributor(frozen, n_components=n_components, random_state=0).fit(X, y)
    grouped = TracInAttributor(frozen, n_components=n_components, random_state=0,
                               grouper=RandomGrouper(group_size=7, random_state=0)).fit(X, y)
    expected = np.bincount(grouped.labels_, points.score_groups(X_test, y_test))
    np.testing.assert_allclose(grouped.score_groups(X_test, y_test), expected, rtol=1e-4, atol=1e-6)


def test_user_groups_sum_members_and_keep_their_labels(problem, frozen):
    X, y, X_test, y_test = problem
    names = np.array(["north", "south", "east"])[np.arange(len(y)) % 3]
    attr = TracInAttributor(frozen).fit(X, y, groups=names)
    points = TracInAttributor(frozen).fit(X, y).score_groups(X_test, y_test)
    assert attr.groups_.tolist() == ["east", "north", "south"]
    scores = attr.score_groups(X_test, y_test)
    for j, name in enumerate(attr.groups_):
        assert scores[j] == pytest.approx(points[names == name].sum(), rel=1e-4, abs=1e-6)


def test_unsortable_group_labels_keep_first_appearance_order(problem, frozen):
    X, y, _, _ = problem
    groups = [("a", 1) if i % 2 else None.__class__.__name__ for i in range(len(y))]
    groups = [g if i % 3 else 7 for i, g in enumerate(groups)]
    attr = TracInAttributor(frozen).fit(X, y, groups=groups)
    assert attr.n_groups_ == 3
    assert list(attr.groups_) == [7, ("a", 1), "NoneType"]


def test_projected_scores_approach_exact_as_n_components_grows(problem, frozen):
    X, y, X_test, y_test = problem
    exact = TracInAttributor(frozen).fit(X, y).score_groups(X_test, y_test)

    def mean_corr(r):
        return np.mean([
            np.corrcoef(TracInAttributor(frozen, n_components=r, random_state=seed)
                        .fit(X, y).score_groups(X_test, y_test), exact)[0, 1]
            for seed in range(5)
        ])

    assert mean_corr(64) > mean_corr(4) + 0.1


def test_projected_scores_equal_exact_scores_on_average(problem, frozen):
    # A projected score is an unbiased estimate of the exact one, so the
    # scores averaged over projection seeds approach the exact scores in
    # value, not only in ranking: a projection scaled wrongly keeps the
    # correlation. Measured over 200 seeds: slope 1.00, relative error 0.07.
    X, y, X_test, y_test = problem
    exact = TracInAttributor(frozen).fit(X, y).score_groups(X_test, y_test)
    mean = np.mean([TracInAttributor(frozen, n_components=64, random_state=seed)
                    .fit(X, y).score_groups(X_test, y_test) for seed in range(200)], axis=0)
    assert mean @ exact / (exact @ exact) == pytest.approx(1, abs=0.1)
    assert np.linalg.norm(mean - exact) / np.linalg.norm(exact) < 0.15


def test_projection_to_full_width_is_exact(problem, fitted_net, frozen):
    X, y, X_test, y_test = problem
    n_params = sum(p.numel() for p in fitted_net.module_.parameters())
    exact = TracInAttributor(frozen).fit(X, y).score_groups(X_test, y_test)
    full = TracInAttributor(frozen, n_components=n_params, random_state=0).fit(X, y)
    np.testing.assert_allclose(full.score_groups(X_test, y_test), exact, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n_components", [None, 16])
def test_attribute_rows_average_to_score_groups(problem, frozen, n_components):
    X, y, X_test, y_test = problem
    attr = TracInAttributor(frozen, n_components=n_components, random_state=0,
                            grouper=RandomGrouper(group_size=10, random_state=0)).fit(X, y)
    matrix = attr.attribute(X_test, y_test)
    assert matrix.shape == (len(y_test), attr.n_groups_)
    np.testing.assert_allclose(matrix.mean(0), attr.score_groups(X_test, y_test),
                               rtol=1e-4, atol=1e-6)


def test_attribute_streaming_path_matches_exact_path(problem, frozen, monkeypatch):
    X, y, X_test, y_test = problem
    grouper = RandomGrouper(group_size=5, random_state=0)
    stored = TracInAttributor(frozen, grouper=grouper).fit(X, y).attribute(X_test[:20], y_test[:20])
    monkeypatch.setattr("skggda.attribution._store.STORE_BYTES", 0)  # no group store
    attr = TracInAttributor(frozen, grouper=grouper).fit(X, y)
    exact = attr.attribute(X_test[:20], y_test[:20])
    np.testing.assert_allclose(exact, stored, rtol=1e-4, atol=1e-6)
    monkeypatch.setattr("skggda.attribution._tracin._MAX_GROUP_GRADIENT_BYTES", 0)
    np.testing.assert_allclose(attr.attribute(X_test[:20], y_test[:20]), exact,
                               rtol=1e-4, atol=1e-6)


def test_flipped_labels_score_lower_than_clean_ones():
    X, y_noisy, _, flipped = make_problem(n=400, noise=0.1, seed=3)
    X_test, y_test, _, _ = make_problem(n=200, seed=4)
    attr = TracInAttributor(tiny_net(hidden=(16,), epochs=30), random_state=0).fit(X, y_noisy)
    scores = attr.score_groups(X_test, y_test)
    assert flipped.sum() > 20
    assert scores[flipped].mean() < scores[~flipped].mean()
    assert scores[flipped].mean() < 0


def one_cycle_epoch_rates(net, n_samples):
    """Mean learning rate of each epoch's optimiser steps under torch's own OneCycleLR.

    Computed here, from the recipe alone (the net's ``lr``, ``max_epochs`` and
    ``batch_size``; OneCycleLR's defaults), not from what the net recorded.
    The schedule takes ``epochs * batches`` values, one per step.
    """
    steps = int(np.ceil(n_samples / net.batch_size))
    total = net.max_epochs * steps
    return one_cycle_rates(net.lr, total).reshape(net.max_epochs, steps).mean(1)


def test_checkpoint_weights_are_each_epochs_mean_one_cycle_rate(problem):
    # TracIn weights a checkpoint by the rate of the steps that left it; the
    # last epoch's rates end near zero, so its last rate is no substitute
    X, y, _, _ = problem
    net = tiny_net(epochs=3)
    attr = TracInAttributor(net, checkpoints="all", random_state=0).fit(X, y)
    recorder = dict(attr.estimator_.callbacks_)["skggda_checkpoints"]
    np.testing.assert_allclose(recorder.learning_rates_, one_cycle_epoch_rates(net, len(y)),
                               rtol=1e-6)


def test_checkpoints_all_is_learning_rate_weighted_sum_over_epochs(problem):
    X, y, X_test, y_test = problem
    recipe = tiny_net(epochs=3)
    attr = TracInAttributor(recipe, checkpoints="all", random_state=0).fit(X, y)
    recorder = dict(attr.estimator_.callbacks_)["skggda_checkpoints"]
    assert len(recorder.checkpoints_) == 3
    net = attr.estimator_
    final_state = {k: v.clone() for k, v in net.module_.state_dict().items()}
    # the last checkpoint is the trained net itself
    assert all(torch.equal(recorder.checkpoints_[-1][k], v) for k, v in final_state.items())
    expected = 0
    # weights from torch's schedule, not from the recorder under test
    for state, lr in zip(recorder.checkpoints_, one_cycle_epoch_rates(recipe, len(y))):
        net.module_.load_state_dict(state)
        expected = expected + lr * slow_tracin(net, X, y, X_test, y_test)
    net.module_.load_state_dict(final_state)
    np.testing.assert_allclose(attr.score_groups(X_test, y_test), expected, rtol=1e-4, atol=1e-8)
    # the fitted net is left at its final weights
    assert all(torch.equal(final_state[k], v) for k, v in attr.estimator_.module_.state_dict().items())


def test_checkpoints_all_rejects_frozen_net(problem, frozen):
    X, y, _, _ = problem
    with pytest.raises(ValueError, match="checkpoints='all' needs the training run"):
        TracInAttributor(frozen, checkpoints="all").fit(X, y)


def test_frozen_net_is_not_retrained(problem, fitted_net, frozen, monkeypatch):
    X, y, _, _ = problem
    before = {k: v.clone() for k, v in fitted_net.module_.state_dict().items()}
    epochs = len(fitted_net.history)
    steps = []  # every optimizer step of any net of this class goes through train_step
    train_step = type(fitted_net).train_step
    monkeypatch.setattr(type(fitted_net), "train_step",
                        lambda net, *args, **kwargs: steps.append(net) or train_step(
                            net, *args, **kwargs))
    attr = TracInAttributor(frozen).fit(X, y)
    assert attr.estimator_ is fitted_net
    assert steps == [] and len(fitted_net.history) == epochs
    assert all(torch.equal(before[k], v) for k, v in fitted_net.module_.state_dict().items())


def test_fit_is_repeatable_with_random_state(problem):
    X, y, X_test, y_test = problem
    a = TracInAttributor(tiny_net(seed=None), grouper=RandomGrouper(group_size=9),
                         random_state=3).fit(X, y)
    b = TracInAttributor(tiny_net(seed=None), grouper=RandomGrouper(group_size=9),
                         random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.score_groups(X_test, y_test), b.score_groups(X_test, y_test))


def test_score_groups_without_data_uses_training_set(problem, frozen):
    X, y, _, _ = problem
    attr = TracInAttributor(frozen).fit(X, y)
    np.testing.assert_allclose(attr.score_groups(), attr.score_groups(X, y))


def test_string_labels(problem):
    X, y, X_test, y_test = problem
    names = np.array(["bad", "good"])
    attr = TracInAttributor(tiny_net(), random_state=0).fit(X, names[y])
    assert attr.classes_.tolist() == ["bad", "good"]
    numeric = TracInAttributor(tiny_net(), random_state=0).fit(X, y)
    np.testing.assert_allclose(attr.score_groups(X_test, names[y_test]),
                               numeric.score_groups(X_test, y_test), rtol=1e-5)


def test_param_subset_last_layer(problem, fitted_net, frozen):
    X, y, X_test, y_test = problem
    attr = TracInAttributor(frozen, param_subset="last").fit(X, y)
    module = fitted_net.module_
    head = module.head
    test_out = module(torch.as_tensor(X_test))
    test_loss = F.cross_entropy(test_out, torch.as_tensor(y_test))
    g_test = torch.cat([g.reshape(-1) for g in torch.autograd.grad(test_loss, [head.weight, head.bias])])
    expected = []
    for i in range(len(y)):
        loss = F.cross_entropy(module(torch.as_tensor(X[i:i + 1])), torch.as_tensor(y[i:i + 1]))
        g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, [head.weight, head.bias])])
        expected.append(float(g @ g_test))
    np.testing.assert_allclose(attr.score_groups(X_test, y_test), expected, rtol=1e-4, atol=1e-7)


def test_timings_cover_every_stage(problem, frozen):
    X, y, X_test, y_test = problem
    with record_timings() as timings:
        attr = TracInAttributor(frozen, grouper=RandomGrouper(group_size=8)).fit(X, y)
        attr.score_groups(X_test, y_test)
        attr.attribute(X_test[:4], y_test[:4])
    assert set(attr.timings_) == {"training", "grouping", "gradients"}
    assert set(timings) == {"training", "grouping", "gradients", "scoring", "attribution"}
    assert all(t >= 0 for t in timings.values())


def test_frozen_net_on_labels_not_starting_at_zero_uses_label_as_logit_index(problem):
    # skorch fits integer labels as they are: label 2 is logit 2, whatever classes_ says.
    X, y, X_test, y_test = problem
    net = tiny_net().fit(X, y + 1)  # labels {1, 2}, three logits
    scores = TracInAttributor(FrozenEstimator(net)).fit(X, y + 1).score_groups(X_test, y_test + 1)
    np.testing.assert_allclose(scores, slow_tracin(net, X, y + 1, X_test, y_test + 1),
                               rtol=1e-4, atol=1e-6)


def test_refit_without_grouper_drops_the_old_grouper(problem, frozen):
    X, y, _, _ = problem
    attr = TracInAttributor(frozen, grouper=RandomGrouper(group_size=40)).fit(X, y)
    assert attr.grouper_.labels_.shape == (len(y),)
    attr.set_params(grouper=None).fit(X, y, groups=np.arange(len(y)) % 3)
    assert not hasattr(attr, "grouper_") and attr.n_groups_ == 3


# -- every method, every path, value by value (mutation testing: benchmarks/TESTING.md) ---


@pytest.mark.parametrize("n_components,store", [(None, True), (None, False), (16, False)])
def test_checkpoints_all_weights_every_method_by_the_learning_rate(problem, n_components, store,
                                                                   monkeypatch):
    # score_groups, attribute and self_influence with checkpoints="all" are the
    # learning-rate-weighted sums of the same attributor on each epoch's weights
    # (exact with and without the group store, and projected)
    import copy

    if not store:
        monkeypatch.setattr("skggda.attribution._store.STORE_BYTES", 0)
    X, y, X_test, y_test = problem
    recipe = tiny_net(epochs=3)
    groups = np.arange(len(y)) % 7
    attr = TracInAttributor(recipe, checkpoints="all", n_components=n_components,
                            random_state=0).fit(X, y, groups=groups)
    recorder = dict(attr.estimator_.callbacks_)["skggda_checkpoints"]
    expected = [0, 0, 0]
    for state, lr in zip(recorder.checkpoints_, one_cycle_epoch_rates(recipe, len(y))):
        net = copy.deepcopy(attr.estimator_)
        net.module_.load_state_dict(state)
        one = TracInAttributor(FrozenEstimator(net), n_components=n_components,
                               random_state=0).fit(X, y, groups=groups)
        for i, value in enumerate([one.score_groups(X_test, y_test),
                                   one.attribute(X_test[:5], y_test[:5]),
                                   one.self_influence()]):
            expected[i] = expected[i] + lr * value.astype(np.float64)
    got = [attr.score_groups(X_test, y_test), attr.attribute(X_test[:5], y_test[:5]),
           attr.self_influence()]
    for value, reference in zip(got, expected):
        np.testing.assert_allclose(value, reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())


@pytest.mark.parametrize("path", ["projected", "stored", "exact", "streaming"])
def test_attribute_is_float32_on_every_path(problem, frozen, path, monkeypatch):
    from skggda.attribution import _tracin

    X, y, X_test, y_test = problem
    if path in ("exact", "streaming"):  # no group store
        monkeypatch.setattr("skggda.attribution._store.STORE_BYTES", 0)
    if path == "streaming":  # too many groups to hold their gradients
        monkeypatch.setattr(_tracin, "_MAX_GROUP_GRADIENT_BYTES", 0)
    attr = TracInAttributor(frozen, n_components=16 if path == "projected" else None,
                            random_state=0).fit(X, y)
    assert attr.attribute(X_test[:3], y_test[:3]).dtype == np.float32


def test_verbose_names_each_pass_and_is_silent_by_default(problem, frozen, capsys):
    X, y, X_test, y_test = problem
    assert TracInAttributor(frozen).get_params()["verbose"] == 0
    for n_components in (None, 16):
        attr = TracInAttributor(frozen, n_components=n_components, random_state=0).fit(X, y)
        attr.score_groups(X_test, y_test)
        attr.attribute(X_test[:3], y_test[:3])
    assert capsys.readouterr().err == ""
    projected = TracInAttributor(frozen, n_components=16, verbose=1, random_state=0)
    projected.fit(X, y)
    assert "group gradients:" in capsys.readouterr().err
    projected.score_groups(X_test, y_test)
    assert "property:" in capsys.readouterr().err
    projected.attribute(X_test[:3], y_test[:3])
    assert "test gradients:" in capsys.readouterr().err
    stored = TracInAttributor(frozen, verbose=1).fit(X, y)
    stored.attribute(X_test[:3], y_test[:3])
    assert "test gradients:" in capsys.readouterr().err
    with pytest.MonkeyPatch.context() as patch:  # no group store: the exact path
        patch.setattr("skggda.attribution._store.STORE_BYTES", 0)
        exact = TracInAttributor(frozen, verbose=1).fit(X, y)
        exact.attribute(X_test[:3], y_test[:3])
    err = capsys.readouterr().err
    assert "group gradients:" in err and "test gradients:" in err


def test_projected_fit_passes_n_jobs_and_checks_its_state(problem, frozen, monkeypatch):
    from skggda.attribution import _tracin

    X, y, _, _ = problem
    assert TracInAttributor(frozen, n_jobs=2).get_params()["n_jobs"] == 2
    seen, real = [], _tracin.training_pass

    def spy(*args, **kwargs):  # the real pass, its features made non-finite
        seen.append(kwargs["n_jobs"])
        (features,) = real(*args, **kwargs)
        return (features * float("nan"),)

    monkeypatch.setattr(_tracin, "training_pass", spy)
    with pytest.raises(ValueError, match="The projected group gradients of the training data "
                                         "are not finite"):
        TracInAttributor(frozen, n_components=8, n_jobs=1, random_state=0).fit(X, y)
    assert seen == [1]


def test_checkpoints_all_rejects_frozen_net_saying_why(problem, frozen):
    X, y, _, _ = problem
    with pytest.raises(ValueError, match=r"^checkpoints='all' needs the training run, but the "
                                         r"estimator is a FrozenEstimator \(final weights only\); "
                                         r"use checkpoints='last'\.$"):
        TracInAttributor(frozen, checkpoints="all").fit(X, y)


@pytest.mark.parametrize("store", [True, False])
def test_self_influence_is_each_groups_squared_gradient_norm(problem, frozen, store, monkeypatch):
    # ||sum of the group's loss gradients||^2 at the final weights, one backward per group
    X, y, _, _ = problem
    if not store:
        monkeypatch.setattr("skggda.attribution._store.STORE_BYTES", 0)
    attr = TracInAttributor(frozen, grouper=RandomGrouper(group_size=7, random_state=0)).fit(X, y)
    assert (attr._group_store is not None) == store
    module = frozen.estimator.module_.eval()
    params = list(module.parameters())
    expected = []
    for j in range(attr.n_groups_):
        members = attr.labels_ == j
        loss = F.cross_entropy(module(torch.as_tensor(X[members])), torch.as_tensor(y[members]),
                               reduction="sum")
        grads = torch.autograd.grad(loss, params)
        expected.append(float(sum((g.double() ** 2).sum() for g in grads)))
    np.testing.assert_allclose(attr.self_influence(), expected, rtol=1e-4)
