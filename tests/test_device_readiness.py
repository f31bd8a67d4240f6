"""GPU readiness checked on the CPU (issue 23, findings 1-4): memory bounds of the
Hessian-vector products, the exact solver on a singular Hessian, device-independent
random draws, and a net whose module is not on its own device."""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from torch.nn import functional as F

from skggda import InfluenceAttributor, RandomGrouper, TracInAttributor
from skggda import _engine
from skggda._engine import _budget, _curvature, _kfac, _random
from skggda.models._resolve import training_recipe

from conftest import make_problem, tiny_net


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=120, n_features=5, n_classes=3, seed=3)
    X_test, y_test, _, _ = make_problem(n=20, n_features=5, n_classes=3, seed=4)
    return X, y, X_test, y_test


def _flat_grad(module, X, y, reduction):
    loss = F.cross_entropy(module(torch.as_tensor(X)), torch.as_tensor(y), reduction=reduction)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(module.parameters()))])


# -- 1. Hessian-vector products stay within the batch budget whatever m is ---------


@pytest.mark.parametrize("solver", ["cg", "lissa"])
def test_hvp_rows_times_vectors_stay_within_the_auto_budget(data, solver, monkeypatch):
    X, y, X_test, y_test = data
    frozen = FrozenEstimator(tiny_net(hidden=(4,), epochs=2).fit(X, y))
    monkeypatch.setattr(_budget, "_CPU_BUDGET", 1)  # every "auto" batch is the floor
    budget = _engine.auto_batch_size(1.0, "cpu")
    pairs = []
    original = _curvature._hvp_on_batch

    def recording(plan, X_batch, y_batch):
        product = original(plan, X_batch, y_batch)

        def run(V):
            pairs.append(_engine.n_samples(X_batch) * V.shape[0])
            return product(V)
        return run

    monkeypatch.setattr(_curvature, "_hvp_on_batch", recording)
    attr = InfluenceAttributor(frozen, solver=solver, grouper=RandomGrouper(group_size=6),
                               cg_max_iter=2, lissa_depth=2, lissa_repeat=1,
                               lissa_batch_size=4, random_state=0).fit(X, y)
    with pytest.warns(Warning) if solver == "cg" else nullcontext():
        attr.attribute(X_test[:7], y_test[:7])   # m = 7 test points
    with pytest.warns(Warning) if solver == "cg" else nullcontext():
        attr.self_influence()                    # m = 20 groups
    assert pairs and max(pairs) <= budget


def test_cg_scores_do_not_depend_on_the_hvp_chunking(data, monkeypatch):
    X, y, X_test, y_test = data
    frozen = FrozenEstimator(tiny_net(hidden=(), epochs=5).fit(X, y))
    attr = InfluenceAttributor(frozen, solver="cg", damping=1e-2, random_state=0).fit(X, y)
    whole = attr.attribute(X_test[:5], y_test[:5])
    monkeypatch.setattr(_budget, "_CPU_BUDGET", 1)
    chunked = attr.attribute(X_test[:5], y_test[:5])
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-7)


# -- 2. the exact solver: one factor, pseudo-inverse on a singular Hessian -----------


def test_solve_dense_is_the_pseudo_inverse_solve_of_a_singular_matrix():
    rng = np.random.RandomState(0)
    B = rng.normal(size=(6, 3))
    H = B @ B.T  # rank 3 of 6
    V = rng.normal(size=(4, 6))
    w, Q = _engine.factor_dense(torch.as_tensor(H))
    x = _engine.solve_dense(w, Q, torch.as_tensor(V), 0.0)
    expected = V @ np.linalg.pinv(H, rcond=6 * np.finfo(np.float64).eps, hermitian=True)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-8, atol=1e-10)


def _dead_relu_net(X, y):
    net = tiny_net(hidden=(4,), epochs=5).fit(X, y)
    with torch.no_grad():  # unit 0 never fires: its weights have zero Hessian rows
        net.module_.body[0].weight[0] = 0.0
        net.module_.body[0].bias[0] = -1.0
    return net


def test_exact_solver_with_damping_zero_gives_the_pseudo_inverse_scores(data, monkeypatch):
    X, y, X_test, y_test = data
    net = _dead_relu_net(X, y)
    lstsq = torch.linalg.lstsq
    # CUDA's lstsq has only the full-rank "gels" driver: make the CPU's do the same
    monkeypatch.setattr(torch.linalg, "lstsq",
                        lambda A, B, **kw: lstsq(A, B, **{**kw, "driver": "gels"}))
    attr = InfluenceAttributor(FrozenEstimator(net), solver="exact", damping=0.0).fit(X, y)
    scores = attr.score_groups(X_test, y_test)

    module = net.module_.eval()
    params = list(module.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params]).double()

    def mean_loss(theta):
        pieces, start = {}, 0
        for (name, p) in module.named_parameters():
            pieces[name] = theta[start:start + p.numel()].reshape(p.shape).float()
            start += p.numel()
        out = torch.func.functional_call(module, pieces, (torch.as_tensor(X),))
        return F.cross_entropy(out, torch.as_tensor(y))

    H = torch.autograd.functional.hessian(mean_loss, flat).numpy()
    assert np.linalg.matrix_rank(H) < len(H)  # singular: damping=0 has no inverse
    per_sample = torch.stack([_flat_grad(module, X[i:i + 1], y[i:i + 1], "sum")
                              for i in range(len(y))]).double().numpy()
    v = _flat_grad(module, X_test, y_test, "mean").double().numpy()
    rtol = len(H) * np.finfo(np.float32).eps  # the documented tolerance
    expected = per_sample @ (np.linalg.pinv(H, rcond=rtol, hermitian=True) @ v) / len(y)
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_exact_solver_factors_the_hessian_once_on_the_nets_device(data, monkeypatch):
    X, y, X_test, y_test = data
    frozen = FrozenEstimator(tiny_net(hidden=(), epochs=3).fit(X, y))
    attr = InfluenceAttributor(frozen, solver="exact").fit(X, y)
    assert attr._hessian_eigenvectors.device == torch.device("cpu")
    assert attr._hessian_eigenvectors.dtype == torch.float64

    def refuse(*args, **kwargs):
        raise AssertionError("the Hessian was factored again at scoring time")

    monkeypatch.setattr(torch.linalg, "eigh", refuse)
    monkeypatch.setattr(torch.linalg, "lstsq", refuse)
    X_many = np.concatenate([X_test] * 4)  # 80 rows: two blocks of test points
    assert np.isfinite(attr.attribute(X_many, np.concatenate([y_test] * 4))).all()


# -- 3. random draws are made on the CPU, whatever the device -----------------------


def _recording_generators(monkeypatch):
    requested, real = [], torch.Generator

    def recording(device="cpu"):
        requested.append(torch.device(device))
        return real(device="cpu")

    monkeypatch.setattr(torch, "Generator", recording)
    return requested


def test_kmeans_draws_with_a_cpu_generator_whatever_the_data_device(monkeypatch):
    requested = _recording_generators(monkeypatch)
    X = torch.zeros(40, 3, device="meta")
    with pytest.raises((NotImplementedError, RuntimeError)):  # meta tensors hold no values
        _engine.kmeans(X, 4, seed=0)
    assert requested == [torch.device("cpu")]


def test_true_fisher_labels_are_drawn_with_a_cpu_generator():
    plan = SimpleNamespace(module=torch.nn.Linear(3, 2, device="meta"))
    assert _kfac._labels_generator(plan, 0).device == torch.device("cpu")


def test_device_independent_draws_equal_the_cpu_draws():
    weights = torch.rand(5, 7, generator=torch.Generator().manual_seed(1))
    drawn = _random.draw(weights, 3, _random.cpu_generator(0),
                                 replacement=True)
    expected = torch.multinomial(weights, 3, replacement=True,
                                 generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn, expected)


# -- 4. a net whose module is not on net.device is refused ---------------------------


@pytest.fixture
def fresh_net(data):
    X, y, _, _ = data
    return tiny_net(hidden=(4,), epochs=1).fit(X, y)


def test_frozen_net_with_device_cuda_and_module_on_cpu_is_refused(data, fresh_net):
    X, y, _, _ = data
    fresh_net.device = "cuda"
    with pytest.raises(ValueError, match=r"device='cuda'.*\('cpu'\)"):
        TracInAttributor(FrozenEstimator(fresh_net)).fit(X, y)
    with pytest.raises(ValueError, match="differs from the device of its module"):
        training_recipe(FrozenEstimator(fresh_net))


def test_frozen_net_with_module_on_meta_is_refused(data, fresh_net):
    X, y, _, _ = data
    fresh_net.module_.to("meta")
    with pytest.raises(ValueError, match=r"device='cpu'.*\('meta'\)"):
        InfluenceAttributor(FrozenEstimator(fresh_net)).fit(X, y)
