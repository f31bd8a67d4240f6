"""InfluenceAttributor: against dense solves written here, and its solvers against each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from torch.nn import functional as F

from skggda.utils import record_timings
from skggda import InfluenceAttributor, RandomGrouper

from conftest import make_problem, tiny_net


@pytest.fixture(scope="module")
def logistic():
    """A small multinomial logistic regression (convex: a positive definite Hessian)."""
    X, y, _, flipped = make_problem(n=200, n_features=5, n_classes=3, noise=0.1, seed=7)
    X_test, y_test, _, _ = make_problem(n=60, n_features=5, n_classes=3, seed=8)
    net = tiny_net(hidden=(), epochs=20).fit(X, y)
    return FrozenEstimator(net), X, y, X_test, y_test, flipped


def flat_grad(module, X, y, reduction):
    loss = F.cross_entropy(module(torch.as_tensor(X)), torch.as_tensor(y), reduction=reduction)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(module.parameters()))])


def reference(frozen, X, y, X_test, y_test, curvature, damping):
    """Per-point influence, one backward per sample, a dense solve: (1/n) v^T (C + l I)^-1 g_i."""
    module = frozen.estimator.module_.eval()
    per_sample = torch.stack([flat_grad(module, X[i:i + 1], y[i:i + 1], "sum")
                              for i in range(len(y))]).double()
    v = flat_grad(module, X_test, y_test, "mean").double()
    C = curvature(module, per_sample)
    solved = torch.linalg.solve(C + damping * torch.eye(len(v), dtype=C.dtype), v)
    return (per_sample @ solved / len(y)).numpy(), per_sample


def empirical_fisher(module, per_sample):
    return per_sample.T @ per_sample / len(per_sample)


def hessian_of(X, y):
    def curvature(module, per_sample):
        params = dict(module.named_parameters())
        names = list(params)
        flat = torch.cat([p.detach().reshape(-1) for p in params.values()])

        def mean_loss(theta):
            pieces, start = {}, 0
            for name in names:
                size = params[name].numel()
                pieces[name] = theta[start:start + size].reshape(params[name].shape)
                start += size
            out = torch.func.functional_call(module, pieces, (torch.as_tensor(X),))
            return F.cross_entropy(out, torch.as_tensor(y))

        return torch.autograd.functional.hessian(mean_loss, flat).double()

    return curvature


def test_fisher_without_projection_equals_dense_solve(logistic):
    frozen, X, y, X_test, y_test, _ = logistic
    expected, _ = reference(frozen, X, y, X_test, y_test, empirical_fisher, 1e-2)
    attr = InfluenceAttributor(frozen, fisher="empirical", damping=1e-2).fit(X, y)
    np.testing.assert_allclose(attr.score_groups(X_test, y_test), expected, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_hessian_solvers_equal_classical_influence(logistic, solver):
    frozen, X, y, X_test, y_test, _ = logistic
    expected, _ = reference(frozen, X, y, X_test, y_test, hessian_of(X, y), 1e-2)
    attr = InfluenceAttributor(frozen, solver=solver, damping=1e-2).fit(X, y)
    np.testing.assert_allclose(attr.score_groups(X_test, y_test), expected, rtol=2e-3, atol=1e-6)


def test_batched_fisher_is_built_from_group_gradients(logistic):
    frozen, X, y, X_test, y_test, _ = logistic
    grouper = RandomGrouper(group_size=10, random_state=0)
    attr = InfluenceAttributor(frozen, grouper=grouper, fisher="batched", damping=1e-2).fit(X, y)
    labels = attr.labels_

    def batched(module, per_sample):
        groups = torch.zeros(attr.n_groups_, per_sample.shape[1], dtype=per_sample.dtype)
        groups.index_add_(0, torch.as_tensor(labels).long(), per_sample)
        return groups.T @ groups / len(per_sample)

    per_point, _ = reference(frozen, X, y, X_test, y_test, batched, 1e-2)
    np.testing.assert_allclose(attr.score_groups(X_test, y_test),
                               np.bincount(labels, per_point), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("params", [
    dict(fisher="empirical"), dict(fisher="empirical", n_components=12),
    dict(solver="exact"), dict(solver="cg"),
])
def test_group_scores_are_sums_of_member_scores(logistic, params):
    frozen, X, y, X_test, y_test, _ = logistic
    points = InfluenceAttributor(frozen, damping=1e-2, random_state=0, **params).fit(X, y)
    grouped = InfluenceAttributor(frozen, damping=1e-2, random_state=0,
                                  grouper=RandomGrouper(group_size=8, random_state=0),
                                  **params).fit(X, y)
    np.testing.assert_allclose(grouped.score_groups(X_test, y_test),
                               np.bincount(grouped.labels_, points.score_groups(X_test, y_test)),
                               rtol=1e-3, atol=1e-7)


def test_lissa_converges_to_the_exact_solution(logistic):
    frozen, X, y, X_test, y_test, _ = logistic
    exact = InfluenceAttributor(frozen, solver="exact", damping=1e-3 * 5).fit(X, y)
    lissa = InfluenceAttributor(frozen, solver="lissa", damping=1e-3, lissa_scale=5.0,
                                lissa_depth=300, lissa_repeat=4, lissa_batch_size=100,
                                random_state=0).fit(X, y)
    rho = spearmanr(lissa.score_groups(X_test, y_test), exact.score_groups(X_test, y_test))[0]
    assert rho >= 0.95


def test_lissa_warns_when_the_recursion_diverges(logistic):
    frozen, X, y, X_test, y_test, _ = logistic
    attr = InfluenceAttributor(frozen, solver="lissa", lissa_scale=1e-3, lissa_depth=50,
                               lissa_repeat=1, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="LiSSA diverged"):
        scores = attr.score_groups(X_test, y_test)
    assert np.isnan(scores).all()


@pytest.mark.parametrize("params", [dict(n_components=16), dict(solver="exact")])
def test_attribute_rows_average_to_score_groups(logistic, params):
    frozen, X, y, X_test, y_test, _ = logistic
    attr = InfluenceAttributor(frozen, grouper=RandomGrouper(group_size=16, random_state=0),
                               damping=1e-2, random_state=0, **params).fit(X, y)
    np.testing.assert_allclose(attr.attribute(X_test, y_test).mean(0),
                               attr.score_groups(X_test, y_test), rtol=1e-3, atol=1e-6)


def test_flipped_labels_get_low_influence():
    X, y, _, flipped = make_problem(n=400, noise=0.1, seed=3)
    X_test, y_test, _, _ = make_problem(n=200, seed=4)
    attr = InfluenceAttributor(tiny_net(hidden=(16,), epochs=30), n_components=64,
                               random_state=0).fit(X, y)
    scores = attr.score_groups(X_test, y_test)
    assert scores[flipped].mean() < scores[~flipped].mean()


def test_n_components_only_with_fisher(logistic):
    frozen, X, y, _, _, _ = logistic
    with pytest.raises(ValueError, match="n_components applies to solver='fisher' only"):
        InfluenceAttributor(frozen, solver="cg", n_components=8).fit(X, y)


def test_dense_kernel_refused_for_large_models(monkeypatch, logistic):
    frozen, X, y, _, _, _ = logistic
    monkeypatch.setattr("skggda._engine.MAX_DENSE_PARAMS", 5)
    with pytest.raises(ValueError, match="set n_components"):
        InfluenceAttributor(frozen).fit(X, y)


def test_timings_break_down_the_stages(logistic):
    frozen, X, y, X_test, y_test, _ = logistic
    attr = InfluenceAttributor(frozen, solver="cg", damping=1e-2).fit(X, y)
    with record_timings() as timings:
        attr.score_groups(X_test, y_test)
    assert {"scoring.property", "scoring.solve", "scoring.dots"} <= set(timings)


@pytest.mark.parametrize("n_components", [None, 8])
def test_scoring_a_float64_net_twice_gives_the_same_scores(n_components):
    # the fitted kernel must not absorb the damping of a solve (a float64 kernel
    # shares memory with the fitted state on the CPU)
    X, y, _, _ = make_problem(n=80, n_features=4, seed=3)
    net = tiny_net(hidden=(4,), epochs=2).fit(X, y)
    net.module_.double()
    attr = InfluenceAttributor(FrozenEstimator(net), fisher="empirical", damping=1e-2,
                               n_components=n_components, random_state=0).fit(X, y)
    kernel = attr._state.kernel.copy()
    first = attr.score_groups(X[:20], y[:20])
    np.testing.assert_array_equal(attr.score_groups(X[:20], y[:20]), first)
    np.testing.assert_array_equal(attr._state.kernel, kernel)
