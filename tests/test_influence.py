"""InfluenceAttributor: against dense solves written here, and its solvers against each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.base import clone
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


@pytest.mark.parametrize("solver", ["cg", "lissa", "exact"])
def test_n_components_only_with_fisher_and_kronecker_solvers(logistic, solver):
    frozen, X, y, _, _, _ = logistic
    with pytest.raises(ValueError, match="n_components applies to solver='fisher', 'kfac'"):
        InfluenceAttributor(frozen, solver=solver, n_components=8).fit(X, y)


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


# -- every solver's wiring, value by value (mutation testing: benchmarks/TESTING.md) -------


def _grouped(frozen, X, y, **params):
    grouper = RandomGrouper(group_size=10, random_state=0)
    return InfluenceAttributor(frozen, grouper=grouper, random_state=0, **params).fit(X, y)


def test_fisher_auto_is_batched_for_fisher_and_true_for_kfac(logistic):
    frozen, X, y, X_test, y_test, _ = logistic

    def scores(**params):
        return _grouped(frozen, X, y, **params).score_groups(X_test, y_test)

    np.testing.assert_array_equal(scores(), scores(fisher="batched"))
    assert not np.allclose(scores(), scores(fisher="empirical"), rtol=1e-3)
    # the true Fisher draws labels from a generator seeded by random_state
    np.testing.assert_array_equal(scores(solver="kfac"), scores(solver="kfac", fisher="true"))
    assert not np.allclose(scores(solver="kfac"), scores(solver="kfac", fisher="empirical"),
                           rtol=1e-3)
    assert not np.allclose(scores(solver="kfac"), scores(solver="ekfac"), rtol=1e-3)
    other_seed = InfluenceAttributor(frozen, grouper=RandomGrouper(group_size=10, random_state=0),
                                     solver="kfac", random_state=1).fit(X, y)
    assert not np.allclose(scores(solver="kfac"), other_seed.score_groups(X_test, y_test),
                           rtol=1e-6)


@pytest.mark.parametrize("solver", ["fisher", "exact", "cg", "kfac", "ekfac"])
def test_a_large_damping_turns_influence_into_tracin(logistic, solver):
    # (C + l I)^-1 -> I / l: the scores become TracIn's over n l, whatever the curvature
    from skggda import TracInAttributor

    frozen, X, y, X_test, y_test, _ = logistic
    damping = 1e6
    attr = InfluenceAttributor(frozen, solver=solver, damping=damping, random_state=0).fit(X, y)
    tracin = TracInAttributor(frozen).fit(X, y)
    expected = tracin.score_groups(X_test, y_test) / (len(y) * damping)
    np.testing.assert_allclose(attr.score_groups(X_test, y_test), expected, rtol=1e-3,
                               atol=1e-6 * np.abs(expected).max())
    expected = tracin.attribute(X_test[:4], y_test[:4]) / (len(y) * damping)
    got = attr.attribute(X_test[:4], y_test[:4])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("solver,fit_stages,score_stages", [
    ("fisher", set(), {"scoring.property", "scoring.solve"}),
    ("exact", set(), {"scoring.property", "scoring.dots"}),
    ("cg", set(), {"scoring.property", "scoring.solve", "scoring.dots"}),
    ("kfac", {"gradients.factors", "gradients.eigendecomposition"}, {"scoring.property"}),
    ("ekfac", {"gradients.factors", "gradients.eigendecomposition", "gradients.correction"},
     {"scoring.property"}),
])
def test_timings_name_every_stage_of_every_solver(logistic, solver, fit_stages, score_stages):
    frozen, X, y, X_test, y_test, _ = logistic
    attr = InfluenceAttributor(frozen, solver=solver, damping=1e-2).fit(X, y)
    assert {"gradients.curvature"} | fit_stages <= set(attr.timings_)
    assert ("gradients.correction" in attr.timings_) == (solver == "ekfac")
    assert all(f"``{stage}``" in InfluenceAttributor.__doc__ for stage in attr.timings_)
    with record_timings() as timings:
        attr.score_groups(X_test, y_test)
        attr.attribute(X_test[:3], y_test[:3])
        attr.self_influence()
    assert score_stages | {"self_influence.solve"} <= set(timings)
    if solver == "fisher":
        assert "attribution.solve" in timings


@pytest.mark.parametrize("params,stages", [
    ({"n_models": 2}, {"gradients.training", "gradients.members"}),
    ({"solver": "ekfac", "n_components": 4}, {"gradients.store", "gradients.correction"}),
])
def test_the_docstring_names_the_stages_of_ensembles_and_stores(logistic, params, stages):
    frozen, X, y, *_ = logistic
    net = frozen if "solver" in params else clone(frozen.estimator)  # an ensemble trains
    attr = InfluenceAttributor(net, damping=1e-2, random_state=0, **params).fit(X, y)
    assert stages <= set(attr.timings_)
    assert all(f"``{stage}``" in InfluenceAttributor.__doc__ for stage in attr.timings_)


@pytest.mark.parametrize("solver,labels", [
    ("fisher", ["group gradients", "property"]),
    ("exact", ["Hessian", "property", "test gradients"]),
    ("cg", ["property", "conjugate gradients"]),
    ("kfac", ["Kronecker factors", "property"]),
    ("lissa", ["property", "LiSSA"]),
])
def test_verbose_names_each_pass_of_every_solver(logistic, solver, labels, capsys):
    frozen, X, y, X_test, y_test, _ = logistic
    params = dict(solver=solver, damping=1e-2, lissa_depth=2, lissa_repeat=1, random_state=0)
    quiet = InfluenceAttributor(frozen, **params).fit(X, y)
    quiet.score_groups(X_test, y_test), quiet.attribute(X_test[:3], y_test[:3])
    assert capsys.readouterr().err == ""
    loud = InfluenceAttributor(frozen, verbose=1, **params).fit(X, y)
    loud.score_groups(X_test, y_test), loud.attribute(X_test[:3], y_test[:3])
    err = capsys.readouterr().err
    assert all(f"{label}:" in err for label in labels), err


def test_solver_settings_reach_the_solvers(logistic, monkeypatch):
    from skggda.attribution import _influence

    frozen, X, y, X_test, y_test, _ = logistic
    # n_jobs reaches the Fisher pass
    seen, real = [], _influence.fit_kernel_state
    monkeypatch.setattr(_influence, "fit_kernel_state",
                        lambda *a, **k: seen.append(k["n_jobs"]) or real(*a, **k))
    InfluenceAttributor(frozen, n_jobs=1).fit(X, y)
    assert seen == [1]
    # cg_max_iter bounds CG: one iteration does not converge
    with pytest.warns(ConvergenceWarning):
        InfluenceAttributor(frozen, solver="cg", damping=1e-3, cg_max_iter=1).fit(
            X, y).score_groups(X_test, y_test)
    # LiSSA's minibatches are seeded by random_state
    lissa = [InfluenceAttributor(frozen, solver="lissa", lissa_depth=20, lissa_repeat=1,
                                 lissa_batch_size=16, random_state=4).fit(X, y)
             for _ in range(2)]
    np.testing.assert_array_equal(*(a.score_groups(X_test, y_test) for a in lissa))


def test_non_finite_hessian_and_scores_are_refused(logistic, monkeypatch):
    from skggda import _engine

    frozen, X, y, X_test, y_test, _ = logistic
    attr = InfluenceAttributor(frozen, solver="exact").fit(X, y)
    monkeypatch.setattr(attr, "_score_groups", lambda X, y: np.full(attr.n_groups_, np.nan))
    with pytest.raises(ValueError, match="The scores are not finite"):
        attr.score_groups(X_test, y_test)
    real = _engine.dense_hessian
    monkeypatch.setattr(_engine, "dense_hessian", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(ValueError, match="^The Hessian entries of the training data are not "
                                         "finite"):
        InfluenceAttributor(frozen, solver="exact").fit(X, y)
