"""K-FAC and EK-FAC: against dense references of the same factorisation written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from torch import nn
from torch.nn import functional as F

from skggda import InfluenceAttributor, RandomGrouper, _engine
from skggda.models import make_classifier

from conftest import make_problem, per_sample_loss, tiny_net, two_linears


class TinyConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.head = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


class NormNet(nn.Module):
    """A LayerNorm (hook path, no Kronecker structure) and a bare parameter (torch.func)."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(5, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 3)
        self.temperature = nn.Parameter(torch.tensor([1.5]))

    def forward(self, x):
        return self.head(torch.tanh(self.norm(self.inner(x)))) * self.temperature


class TiedNet(nn.Module):
    """A bias-free layer called twice per sample: two calls, rows joined, no ones column."""

    def __init__(self):
        super().__init__()
        self.tied = nn.Linear(5, 5, bias=False)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.tied(torch.tanh(self.tied(x)))))


def tiny_conv():
    torch.manual_seed(0)
    return TinyConvNet()


def tied_net():
    torch.manual_seed(0)
    return TiedNet()


def data(n, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 3, (n,), generator=g)


CASES = {
    "mlp": (two_linears, (5,), ["0", "2"]),
    "conv": (tiny_conv, (2, 4, 4), ["conv", "head"]),
    "tied": (tied_net, (5,), ["tied", "head"]),
}


# -- the dense reference ---------------------------------------------------------------


def layer_rows(module, layer, X, y):
    """``(a, d)``: a layer's input rows ``(n, T, in [+ 1 with a bias])`` and output-gradient
    rows ``(n, T, out)`` (T: the output positions of a conv, times the layer's calls)."""
    calls = []
    handle = layer.register_forward_hook(lambda m, inputs, out: calls.append((inputs[0], out)))
    loss = F.cross_entropy(module(X), y, reduction="sum")
    handle.remove()
    grads = torch.autograd.grad(loss, [out for _, out in calls])
    a_rows, d_rows = [], []
    for (x, _), d in zip(calls, grads):
        x = x.detach()
        if isinstance(layer, nn.Conv2d):
            a_rows.append(F.unfold(x, layer.kernel_size, padding=layer.padding).transpose(1, 2))
            d_rows.append(d.flatten(2).transpose(1, 2))
        else:
            a_rows.append(x[:, None])
            d_rows.append(d[:, None])
    a, d = torch.cat(a_rows, 1), torch.cat(d_rows, 1)
    if layer.bias is not None:
        a = torch.cat([a, torch.ones_like(a[..., :1])], -1)
    return a.double(), d.double()


def per_sample_layer_gradients(module, layer, X, y):
    """``(n, out, in [+ 1])``: one backward per sample, weight (flattened) and bias."""
    params = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
    rows = []
    for i in range(len(y)):
        loss = F.cross_entropy(module(X[i:i + 1]), y[i:i + 1])
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([grads[0].flatten(1), *(g[:, None] for g in grads[1:])], 1))
    return torch.stack(rows).double()


def dense_block_curvature(module, layer, X, y, corrected):
    """The block's curvature as an explicit matrix: ``kron(S, A)`` (K-FAC), or the same
    eigenbasis with eigenvalues ``mean_i (Q_S^T G_i Q_A)^2`` (EK-FAC)."""
    a, d = layer_rows(module, layer, X, y)
    n, T = a.shape[:2]
    A = torch.einsum("nti,ntj->ij", a, a) / (n * T)
    S = torch.einsum("nto,ntp->op", d, d) / n
    if not corrected:
        return torch.kron(S, A)
    q_a, q_s = torch.linalg.eigh(A)[1], torch.linalg.eigh(S)[1]
    G = per_sample_layer_gradients(module, layer, X, y)
    corrected_values = (q_s.T @ G @ q_a).square().mean(0)
    Q = torch.kron(q_s, q_a)
    return Q @ torch.diag(corrected_values.reshape(-1)) @ Q.T


def dense_precondition(curvatures, V, damping=None):
    """Block-diagonal ``(C_b + lambda_b I)^{-1}`` on the rows of ``V``; ``lambda_b``
    defaults to 0.1 x the mean eigenvalue of block ``b`` (its trace over its size)."""
    out, start = [], 0
    for C in curvatures:
        size = C.shape[0]
        lam = 0.1 * torch.trace(C) / size if damping is None else damping
        block = V[:, start:start + size].double()
        out.append(torch.linalg.solve(C + lam * torch.eye(size, dtype=C.dtype), block.T).T)
        start += size
    return torch.cat(out, 1)


# -- K-FAC / EK-FAC equal the dense reference ----------------------------------------------


@pytest.mark.parametrize("corrected", [False, True], ids=["kfac", "ekfac"])
@pytest.mark.parametrize("damping", [None, 0.05])
@pytest.mark.parametrize("name", sorted(CASES))
def test_preconditioner_equals_dense_reference(name, corrected, damping):
    make_module, shape, layer_names = CASES[name]
    module = make_module().eval()
    X, y = data(23, shape)
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    assert [b.module_name for b in plan.hook_blocks] == layer_names and plan.generic is None
    # batches smaller than the data: the factors are sums over batches
    preconditioner = _engine.fit_kfac(plan, X, y, corrected=corrected, fisher="empirical",
                                      batch_size=8)
    layers = dict(module.named_modules())
    curvatures = [dense_block_curvature(module, layers[n], X, y, corrected) for n in layer_names]
    V = torch.randn(4, plan.n_params, generator=torch.Generator().manual_seed(1))
    got = plan.flatten(preconditioner.precondition(plan.unflatten(V), damping))
    expected = dense_precondition(curvatures, V, damping)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def test_layers_without_kronecker_structure_get_the_diagonal_fisher():
    torch.manual_seed(0)
    module = NormNet().eval()
    X, y = data(19, (5,))
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    assert [b.module_name for b in plan.hook_blocks] == ["inner", "norm", "head"]
    assert plan.generic.names == ["temperature"]
    preconditioner = _engine.fit_kfac(plan, X, y, fisher="empirical", batch_size=8)
    V = torch.randn(2, plan.n_params, generator=torch.Generator().manual_seed(1))
    got = plan.to_param_grads(preconditioner.precondition(plan.unflatten(V), damping=0.01))
    directions = plan.to_param_grads(plan.unflatten(V))
    names = ["norm.weight", "norm.bias", "temperature"]
    squares = {name: 0.0 for name in names}
    for i in range(len(y)):
        loss = F.cross_entropy(module(X[i:i + 1]), y[i:i + 1])
        grads = torch.autograd.grad(loss, [module.get_parameter(n) for n in names])
        for name, g in zip(names, grads):
            squares[name] = squares[name] + g.double() ** 2
    for name in names:
        expected = directions[name].double() / (squares[name] / len(y) + 0.01)
        torch.testing.assert_close(got[name].double(), expected, rtol=1e-4, atol=1e-7)


def test_true_fisher_draws_labels_from_the_model():
    """K-FAC of a logistic regression with sampled labels tends to kron(E_p[S], A),
    the Gauss-Newton factorisation: ``E_y[d d^T] = diag(p) - p p^T``."""
    torch.manual_seed(0)
    module = nn.Linear(4, 3).eval()
    with torch.no_grad():
        module.weight.mul_(3)  # confident predictions
    X, _ = data(4000, (4,))
    y = module(X).argmin(1)  # the given labels are the least likely ones
    plan = _engine.make_plan(module, per_sample_loss, X[:5])

    def curvature(fisher):
        block = _engine.fit_kfac(plan, X, y, corrected=False, fisher=fisher, seed=0).blocks[0]
        Q = torch.kron(block.q_out, block.q_in)
        return Q @ torch.diag(block.eigenvalues.reshape(-1)) @ Q.T

    a = torch.cat([X, torch.ones(len(X), 1)], 1).double()
    p = torch.softmax(module(X), 1).detach().double()
    S = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]).mean(0)
    expected = torch.kron(S, a.T @ a / len(X))
    for fisher, low, high in [("true", 0, 0.1), ("empirical", 1, np.inf)]:
        error = float((curvature(fisher) - expected).norm() / expected.norm())
        assert low <= error < high, (fisher, error)


def test_true_fisher_labels_are_seeded():
    module = two_linears().eval()
    X, y = data(40, (5,))
    plan = _engine.make_plan(module, per_sample_loss, X[:5])

    def values(seed):
        return _engine.fit_kfac(plan, X, y, fisher="true", seed=seed).blocks[1].eigenvalues

    torch.testing.assert_close(values(3), values(3), rtol=0, atol=0)
    assert not torch.equal(values(3), values(4))


# -- the attributor ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_logistic():
    """Logistic regression on random inputs and labels, as in dattri's EK-FAC test: the
    outputs barely depend on the inputs, where the Kronecker factorisation of the Hessian
    is close to exact (on separable data EK-FAC's correlation with exact influence was
    0.87-0.97: the approximation, which the dense-reference tests above separate from
    the implementation)."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(500, 10)).astype(np.float32)
    y = rng.randint(5, size=500)
    X_test = rng.normal(size=(50, 10)).astype(np.float32)
    y_test = rng.randint(5, size=50)
    net = make_classifier(hidden_layer_sizes=(), max_epochs=10, lr=1e-2, batch_size=32,
                          random_state=0).fit(X, y)
    return FrozenEstimator(net), X, y, X_test, y_test


@pytest.mark.parametrize("fisher", ["true", "empirical"])
def test_ekfac_influence_correlates_with_exact_influence(random_logistic, fisher):
    frozen, X, y, X_test, y_test = random_logistic
    exact = InfluenceAttributor(frozen, solver="exact").fit(X, y).score_groups(X_test, y_test)
    ekfac = InfluenceAttributor(frozen, solver="ekfac", fisher=fisher, random_state=0)
    scores = ekfac.fit(X, y).score_groups(X_test, y_test)
    assert np.corrcoef(scores, exact)[0, 1] > 0.98


@pytest.fixture(scope="module")
def mlp_problem():
    X, y, _, _ = make_problem(n=120, noise=0.1, seed=3)
    X_test, y_test, _, _ = make_problem(n=30, seed=4)
    return FrozenEstimator(tiny_net(hidden=(8,), epochs=5).fit(X, y)), X, y, X_test, y_test


@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
def test_group_scores_are_sums_of_member_scores(mlp_problem, solver):
    frozen, X, y, X_test, y_test = mlp_problem
    points = InfluenceAttributor(frozen, solver=solver, random_state=0).fit(X, y)
    grouped = InfluenceAttributor(frozen, solver=solver, random_state=0,
                                  grouper=RandomGrouper(group_size=8, random_state=0)).fit(X, y)
    np.testing.assert_allclose(grouped.score_groups(X_test, y_test),
                               np.bincount(grouped.labels_, points.score_groups(X_test, y_test)),
                               rtol=1e-4, atol=1e-7)


def test_attribute_rows_average_to_score_groups(mlp_problem):
    frozen, X, y, X_test, y_test = mlp_problem
    attr = InfluenceAttributor(frozen, solver="ekfac", random_state=0,
                               grouper=RandomGrouper(group_size=10, random_state=0)).fit(X, y)
    np.testing.assert_allclose(attr.attribute(X_test, y_test).mean(0),
                               attr.score_groups(X_test, y_test), rtol=1e-4, atol=1e-7)


def test_scores_use_the_dense_reference_curvature(mlp_problem):
    frozen, X, y, X_test, y_test = mlp_problem
    attr = InfluenceAttributor(frozen, solver="ekfac", fisher="empirical").fit(X, y)
    module = frozen.estimator.module_.eval()
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y)
    layers = [module.body[0], module.head]
    curvatures = [dense_block_curvature(module, layer, X_t, y_t, True) for layer in layers]

    def layer_gradient(X_, y_, reduction):
        loss = F.cross_entropy(module(torch.as_tensor(X_)), torch.as_tensor(y_),
                               reduction=reduction)
        grads = torch.autograd.grad(loss, [p for l in layers for p in (l.weight, l.bias)])
        return torch.cat([torch.cat([w, b[:, None]], 1).reshape(-1)
                          for w, b in zip(grads[::2], grads[1::2])])

    v = layer_gradient(X_test, y_test, "mean")
    solved = dense_precondition(curvatures, v[None])[0]
    expected = [float(layer_gradient(X[i:i + 1], y[i:i + 1], "sum").double() @ solved) / len(y)
                for i in range(len(y))]
    np.testing.assert_allclose(attr.score_groups(X_test, y_test), expected, rtol=1e-3,
                               atol=1e-6 * np.abs(expected).max())


def test_damping_none_keeps_the_other_solvers_default(mlp_problem):
    frozen, X, y, X_test, y_test = mlp_problem
    default = InfluenceAttributor(frozen, fisher="empirical").fit(X, y)
    explicit = InfluenceAttributor(frozen, fisher="empirical", damping=1e-3).fit(X, y)
    np.testing.assert_array_equal(default.score_groups(X_test, y_test),
                                  explicit.score_groups(X_test, y_test))


@pytest.mark.parametrize("solver,fisher", [("fisher", "true"), ("kfac", "batched"),
                                           ("ekfac", "batched")])
def test_fisher_must_suit_the_solver(mlp_problem, solver, fisher):
    frozen, X, y, _, _ = mlp_problem
    with pytest.raises(ValueError, match=f"fisher='{fisher}' does not apply to solver='{solver}'"):
        InfluenceAttributor(frozen, solver=solver, fisher=fisher).fit(X, y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_ekfac_runs_on_the_nets_device(mlp_problem):
    from test_gpu import _frozen_copy

    frozen, X, y, X_test, y_test = mlp_problem
    scores = {}
    for device in ("cpu", "cuda"):
        net = _frozen_copy(frozen.estimator, device)
        attr = InfluenceAttributor(net, solver="ekfac", fisher="empirical").fit(X, y)
        assert attr._kfac.blocks[0].q_in.device.type == device
        scores[device] = attr.score_groups(X_test, y_test)
    np.testing.assert_allclose(scores["cuda"], scores["cpu"], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 3])
def test_a_factor_takes_a_bias_ones_column_apart_as_if_appended(rows):
    """Added to A's sums (both triangles: the factor is symmetric) over several batches,
    the ones column gives the factor of rows with it appended."""
    from skggda._engine._kfac import _KroneckerSums

    g = torch.Generator().manual_seed(0)
    acts, grads = torch.randn(7, rows, 4, generator=g), torch.randn(7, rows, 3, generator=g)
    apart = _KroneckerSums(5, 3, torch.float32, "cpu", ones_column=True)
    appended = _KroneckerSums(5, 3, torch.float32, "cpu")
    for batch in (slice(0, 4), slice(4, 7)):
        apart.add(acts[batch], grads[batch])
        appended.add(torch.cat([acts[batch], torch.ones(*acts[batch].shape[:2], 1)], -1),
                     grads[batch])
    for got, expected in zip(apart.factors(), appended.factors()):
        torch.testing.assert_close(got, expected)
