"""The gradient engine against slow references: one backward pass per sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from skggda import _engine
from skggda._engine._plan import GenericBlock, GradientPlan

from conftest import per_sample_loss


def reference_gradients(module, X, y, names=None):
    """(n, p): one autograd call per sample, parameters in named_parameters order."""
    params = [(n, p) for n, p in module.named_parameters() if names is None or n in names]
    rows = []
    for i in range(len(y)):
        xi = {k: v[i : i + 1] for k, v in X.items()} if isinstance(X, dict) else X[i : i + 1]
        out = module(**xi) if isinstance(xi, dict) else module(xi)
        loss = per_sample_loss(out, y[i : i + 1]).sum()
        grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
        rows.append(torch.cat([
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, (_, p) in zip(grads, params)
        ]))
    return torch.stack(rows)


def flat_in_param_order(plan, blocks, module):
    grads = plan.to_param_grads(blocks)
    lead = blocks[0].shape[0]
    return torch.cat([grads[n].reshape(lead, -1) for n, _ in module.named_parameters()
                      if n in grads], dim=1)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 7), nn.ReLU(), nn.Linear(7, 3))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)
        self.head = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).flatten(1))


class TinyText(nn.Module):
    """Embedding + layer norm + a linear applied per token (3-D input) + tied head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.norm = nn.LayerNorm(6)
        self.token_mix = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, tokens):
        h = torch.tanh(self.token_mix(self.norm(self.embed(tokens))))  # (B, T, 6)
        return self.head(h.mean(1))


def data(n=37, shape=(5,), classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


CASES = {
    "mlp": (mlp, lambda: data()),
    "conv": (lambda: ConvNet().eval(), lambda: data(shape=(2, 4, 4))),
    "text": (TinyText, lambda: (torch.randint(0, 11, (37, 5), generator=torch.Generator().manual_seed(0)),
                                torch.randint(0, 3, (37,), generator=torch.Generator().manual_seed(1)))),
}


@pytest.fixture(params=sorted(CASES))
def case(request):
    make_module, make_data = CASES[request.param]
    torch.manual_seed(0)
    module = make_module()
    X, y = make_data()
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    return module, plan, X, y


def test_plan_uses_linear_fast_path_where_it_can():
    module = mlp()
    plan = _engine.make_plan(module, per_sample_loss, torch.zeros(3, 5))
    assert [b.module_name for b in plan.hook_blocks] == ["0", "2", "4"]
    assert plan.generic is None
    assert plan.n_params == sum(p.numel() for p in module.parameters())


def test_plan_puts_convs_and_norms_on_the_hook_path():
    plan = _engine.make_plan(ConvNet().eval(), per_sample_loss, torch.zeros(3, 2, 4, 4))
    assert [b.module_name for b in plan.hook_blocks] == ["conv", "norm", "head"]
    assert plan.generic is None


class StridedConvNet(nn.Module):
    """Convolutions with stride, dilation, no bias and a non-square kernel."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, (3, 2), stride=2, padding=1, bias=False)
        self.b = nn.Conv2d(4, 5, 3, dilation=2, padding=2)
        self.grouped = nn.Conv2d(5, 5, 1, groups=5)  # grouped: generic path
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        h = self.grouped(torch.relu(self.b(torch.relu(self.a(x)))))
        return self.head(h.mean((2, 3)))


def test_conv_fast_path_matches_reference_with_stride_dilation_and_groups():
    torch.manual_seed(0)
    module = StridedConvNet()
    X, y = data(n=9, shape=(3, 7, 6))
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    assert [b.module_name for b in plan.hook_blocks] == ["a", "b", "head"]
    assert plan.generic.names == ["grouped.weight", "grouped.bias"]
    assert plan.generic is not None
    expected = reference_gradients(module, X, y)
    got = flat_in_param_order(plan, _engine._passes.per_sample_gradients(plan, X, y), module)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    labels = np.array([0, 1, 1, 2, 0, 2, 2, 1, 0])
    groups = flat_in_param_order(plan, _engine.group_gradients(plan, X, y, labels, 3,
                                                               batch_size=4), module)
    torch.testing.assert_close(groups, torch.zeros(3, expected.shape[1]).index_add_(
        0, torch.as_tensor(labels), expected), rtol=1e-4, atol=1e-5)
    v = expected.mean(0)
    dots = _engine.gradient_dots(plan, X, y, [t[None] for t in plan.from_param_grads(
        _unflatten_param_order(plan, module, v))], batch_size=4)
    torch.testing.assert_close(dots[:, 0].float(), expected @ v, rtol=1e-4, atol=1e-5)


def test_per_sample_gradients_match_one_backward_per_sample(case):
    module, plan, X, y = case
    expected = reference_gradients(module, X, y)
    got = flat_in_param_order(plan, _engine._passes.per_sample_gradients(plan, X, y), module)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_group_gradients_are_sums_of_member_gradients(case):
    module, plan, X, y = case
    labels = np.random.RandomState(0).randint(0, 6, len(y))
    expected = torch.zeros(6, plan.n_params).index_add_(
        0, torch.as_tensor(labels), reference_gradients(module, X, y))
    blocks = _engine.group_gradients(plan, X, y, labels, 6, batch_size=8)
    torch.testing.assert_close(flat_in_param_order(plan, blocks, module), expected,
                               rtol=1e-4, atol=1e-5)


def test_group_gradients_with_very_unequal_groups():
    module = mlp()
    X, y = data(n=60)
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    labels = np.zeros(60, dtype=int)
    labels[:3] = [1, 2, 3]  # one group of 57 and three singletons
    expected = torch.zeros(4, plan.n_params).index_add_(
        0, torch.as_tensor(labels), reference_gradients(module, X, y))
    blocks = _engine.group_gradients(plan, X, y, labels, 4, batch_size=16)
    torch.testing.assert_close(flat_in_param_order(plan, blocks, module), expected,
                               rtol=1e-4, atol=1e-5)


def test_loss_gradient_is_the_mean_of_per_sample_gradients(case):
    module, plan, X, y = case
    got = plan.flatten(_engine.loss_gradient(plan, X, y, batch_size=10))
    mean = flat_in_param_order(plan, _engine._passes.per_sample_gradients(plan, X, y), module).mean(0)
    torch.testing.assert_close(plan.to_param_grads([got])[next(iter(plan.params))].reshape(-1)
                               if False else got,
                               plan.flatten(plan.from_param_grads(
                                   _unflatten_param_order(plan, module, mean))),
                               rtol=1e-4, atol=1e-6)


def _unflatten_param_order(plan, module, flat):
    out, start = {}, 0
    for name, param in module.named_parameters():
        if name in plan.params:
            out[name] = flat[start:start + param.numel()].reshape(param.shape)
            start += param.numel()
    return out


def test_gradient_dots_equal_explicit_dot_products(case):
    module, plan, X, y = case
    per_sample = plan.flatten(_engine._passes.per_sample_gradients(plan, X, y))
    directions = torch.randn(4, plan.n_params, generator=torch.Generator().manual_seed(3))
    blocks = [
        t for t in plan.from_param_grads(
            {n: g for n, g in _split_flat(plan, directions).items()})
    ]
    dots = _engine.gradient_dots(plan, X, y, blocks, batch_size=9)
    torch.testing.assert_close(dots.float(), per_sample @ directions.T, rtol=1e-4, atol=1e-4)


def _split_flat(plan, flat):
    """Flat vectors in plan.flatten order -> per-parameter tensors with a leading dim."""
    return plan.to_param_grads(plan.unflatten(flat))


def test_linear_and_generic_paths_agree_on_a_linear_net():
    module = mlp()
    X, y = data()
    fast = _engine.make_plan(module, per_sample_loss, X[:5])
    generic = GradientPlan(module, per_sample_loss, fast.params, [],
                           GenericBlock(list(fast.params), list(fast.params.values())))
    ref = reference_gradients(module, X, y)
    torch.testing.assert_close(generic.flatten(_engine._passes.per_sample_gradients(generic, X, y)), ref,
                               rtol=1e-4, atol=1e-6)
    v = ref.mean(0, keepdim=True)
    dots_generic = _engine.gradient_dots(generic, X, y, [v])
    torch.testing.assert_close(dots_generic.float(), ref @ v.T, rtol=1e-4, atol=1e-6)


def test_projection_of_group_sums_equals_sum_of_projections(case):
    module, plan, X, y = case
    projector = _engine.Projector(plan, 24, seed=0)
    labels = np.random.RandomState(1).randint(0, 5, len(y))
    per_sample = _engine.projected_gradients(plan, X, y, projector, batch_size=8)
    grouped, fisher = _engine.projected_gradients(
        plan, X, y, projector, labels=labels, n_groups=5, fisher=True, batch_size=8)
    assert per_sample.shape == (len(y), 24)
    torch.testing.assert_close(
        grouped, torch.zeros(5, 24).index_add_(0, torch.as_tensor(labels), per_sample),
        rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fisher, per_sample.T @ per_sample, rtol=1e-4, atol=1e-4)
    dense = projector.dense(_engine._passes.per_sample_gradients(plan, X, y))
    torch.testing.assert_close(per_sample, dense, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("labels", ["none", "permutation"])
def test_fisher_of_per_sample_rows_taken_at_the_end(labels, monkeypatch):
    # every sample its own row: the Fisher is one product of the stored rows,
    # with no accumulator
    from skggda._engine import _passes

    def no_accumulator(*args, **kwargs):
        raise AssertionError("the Fisher of stored per-sample rows needs no accumulator")

    module = mlp()
    X, y = data(n=45)
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    projector = _engine.Projector(plan, 12, seed=0)
    reference = _engine.projected_gradients(plan, X, y, projector, batch_size=8)
    order = np.random.RandomState(3).permutation(len(y))
    kwargs = {} if labels == "none" else dict(labels=order, n_groups=len(y))
    monkeypatch.setattr(_passes, "GramAccumulator", no_accumulator)
    rows, fisher = _engine.projected_gradients(plan, X, y, projector, fisher=True,
                                               batch_size=8, **kwargs)
    expected_rows = reference if labels == "none" else reference[np.argsort(order)]
    torch.testing.assert_close(rows, expected_rows)
    torch.testing.assert_close(fisher, reference.T @ reference, rtol=1e-4, atol=1e-5)


def test_group_weights_from_the_same_forward_equal_precomputed_weights(case):
    module, plan, X, y = case
    projector = _engine.Projector(plan, 24, seed=0)
    labels = np.random.RandomState(1).randint(0, 5, len(y))

    def weight_of(output, target):  # any per-sample function of the output
        return output.logsumexp(dim=-1).reshape(len(target), -1).mean(1) - 1.0

    weights = _engine.sample_values(plan.with_loss(weight_of), X, y, batch_size=8)
    kwargs = dict(labels=labels, n_groups=5, fisher=True, batch_size=8)
    expected, fisher = _engine.projected_gradients(
        plan, X, y, projector, group_weights=weights.cpu().numpy(), **kwargs)
    got, same_fisher = _engine.projected_gradients(
        plan, X, y, projector, group_weights=weight_of, **kwargs)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(same_fisher, fisher)
    assert not torch.allclose(got, _engine.projected_gradients(
        plan, X, y, projector, labels=labels, n_groups=5, batch_size=8))  # weights matter


def test_projected_inner_products_equal_exact_ones_on_average(case):
    # The projection claims unbiased inner products: E[<Pg, Ph>] = <g, h> in
    # every block (linear, convolution, norm, generic). A scale error (2.25x
    # too large for a Gaussian map 1.5x too wide) keeps every correlation and
    # ranking, so compare values: per block, the mean projected Gram matrix
    # over 1000 seeds against the exact one, by its regression slope through
    # the origin (1 +/- 0.1) and its relative error (< 15%). Measured: slopes
    # 0.93-1.06, errors <= 0.09.
    module, plan, X, y = case
    blocks = _engine._passes.per_sample_gradients(plan, X, y)
    exact = [(b.flatten(1) @ b.flatten(1).T).double() for b in blocks]
    n_seeds, sums = 1000, [0.0] * len(blocks)
    for seed in range(n_seeds):
        projector = _engine.Projector(plan, 48, seed=seed)
        parts = iter(torch.split(projector.dense(blocks).double(),
                                 [d for d in projector.dims if d], dim=1))
        for index, keep in enumerate(projector.dims):
            if keep:
                part = next(parts)
                sums[index] = sums[index] + part @ part.T
    for index, keep in enumerate(projector.dims):
        if not keep:
            continue
        mean, truth = sums[index] / n_seeds, exact[index]
        slope = float((mean * truth).sum() / (truth * truth).sum())
        error = float((mean - truth).norm() / truth.norm())
        name = plan.blocks[index].__class__.__name__
        assert abs(slope - 1) < 0.1, (index, name, slope)
        assert error < 0.15, (index, name, error)


def test_projection_is_seeded_and_device_independent():
    module = mlp()
    X, y = data()
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    a = _engine.projected_gradients(plan, X, y, _engine.Projector(plan, 10, seed=7))
    b = _engine.projected_gradients(plan, X, y, _engine.Projector(plan, 10, seed=7))
    c = _engine.projected_gradients(plan, X, y, _engine.Projector(plan, 10, seed=8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("n_components,sizes,expected", [
    (10, [100, 100], [5, 5]),
    (7, [1000, 10, 1], [5, 1, 1]),
    (2, [5, 5, 5], [1, 1, 0]),
    (11, [10, 1], [10, 1]),
])
def test_allocate_components(n_components, sizes, expected):
    alloc = _engine._projection.allocate_components(sizes, n_components)
    assert sum(alloc) == n_components
    assert all(a <= s for a, s in zip(alloc, sizes))
    assert alloc == expected


def test_allocate_components_rejects_more_components_than_parameters():
    with pytest.raises(ValueError, match="n_components=12 exceeds"):
        _engine._projection.allocate_components([5, 6], 12)


def test_linear_called_twice_and_tied_weights():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(4, 4)
            self.embed = nn.Embedding(4, 4)
            self.out = nn.Linear(4, 4, bias=False)
            self.out.weight = self.embed.weight  # tied: must not use the hook path

        def forward(self, x):
            h = torch.tanh(self.inner(torch.tanh(self.inner(x))))  # called twice
            return self.out(h)

    torch.manual_seed(0)
    module = Shared()
    X, y = data(n=12, shape=(4,), classes=4)
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    assert [b.module_name for b in plan.hook_blocks] == ["inner"]
    expected = reference_gradients(module, X, y)
    got = flat_in_param_order(plan, _engine._passes.per_sample_gradients(plan, X, y), module)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("subset,expected", [
    ("all", ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]),
    ("last", ["4.weight", "4.bias"]),
    (["2", "4.bias"], ["2.weight", "2.bias", "4.bias"]),
])
def test_select_parameters(subset, expected):
    assert list(_engine._plan.select_parameters(mlp(), subset)) == expected


def test_select_parameters_rejects_unknown_names():
    with pytest.raises(ValueError, match="'nope' matches no trainable parameter"):
        _engine._plan.select_parameters(mlp(), ["nope"])


def test_parameter_subset_gradients_match_reference():
    module = mlp()
    X, y = data()
    plan = _engine.make_plan(module, per_sample_loss, X[:5], param_subset=["2.weight", "4"])
    expected = reference_gradients(module, X, y, names={"2.weight", "4.weight", "4.bias"})
    got = flat_in_param_order(plan, _engine._passes.per_sample_gradients(plan, X, y), module)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_chunk_layout_cuts_long_groups_and_pads_short_ones():
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 2])
    layout = _engine._passes.ChunkLayout.from_sorted_labels(labels)
    # the longest group would triple the padded size, so groups are cut at the mean length
    assert layout.cap == 4
    assert layout.n_chunks == 4
    assert layout.chunk_group.tolist() == [0, 0, 1, 2]
    padded = layout.pad(torch.arange(10.0))
    assert padded.sum() == torch.arange(10.0).sum()


def test_passes_leave_module_mode_and_parameters_untouched():
    module = mlp().train()
    X, y = data()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    _engine.group_gradients(plan, X, y, np.zeros(len(y), dtype=int), 1)
    _engine.loss_gradient(plan, X, y)
    assert module.training
    assert all(p.grad is None for p in module.parameters())
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_numpy_inputs_stream_in_batches():
    module = mlp()
    X, y = data()
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    a = _engine.gradient_dots(plan, X.numpy(), y.numpy(), [torch.ones(1, 7, 6), torch.ones(1, 7, 8),
                                                          torch.ones(1, 3, 8)], batch_size=4)
    b = _engine.gradient_dots(plan, X, y, [torch.ones(1, 7, 6), torch.ones(1, 7, 8),
                                          torch.ones(1, 3, 8)], batch_size=100)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("width", [7, 255, 256, 301])
def test_gram_equals_the_full_product(width):
    rows = torch.randn(53, width, dtype=torch.float64)
    torch.testing.assert_close(_engine.gram(rows), rows.T @ rows)


@pytest.mark.parametrize("width", [5, 300])
def test_gram_accumulator_over_batches_that_straddle_its_buffer(width, monkeypatch):
    from skggda._engine import _gram

    # a buffer of 3 rows: batches of 4 and 2 rows cross its edge in every way
    monkeypatch.setattr(_gram, "MAX_BUFFER_ENTRIES", 3 * width)
    rows = torch.randn(23, width, dtype=torch.float64)
    acc = _engine._gram.GramAccumulator(width, dtype=rows.dtype, device=rows.device)
    for start, stop in [(0, 4), (4, 6), (6, 7), (7, 19), (19, 23)]:
        acc.add(rows[start:stop])
    torch.testing.assert_close(acc.result(), rows.T @ rows)


@pytest.mark.parametrize("damping", [1e-3, 1e-7])
@pytest.mark.parametrize("n_rhs", [1, 40])
def test_solve_kernel_matches_a_float64_solve(damping, n_rhs):
    # a badly conditioned kernel: refined float32 solves must still match float64
    rows = torch.randn(300, 64, dtype=torch.float64) * torch.logspace(0, -3, 64, dtype=torch.float64)
    K64 = rows.T @ rows / 300
    V = torch.randn(n_rhs, 64)
    expected = torch.linalg.solve(K64 + damping * torch.eye(64, dtype=torch.float64),
                                  V.double().T).T
    got = _engine.solve_kernel(K64.float(), V, damping)
    # float32 entries of K differ from K64 by rounding: compare to what that perturbs
    rel = (got.double() - expected).norm() / expected.norm()
    assert rel < 1e-3
    same_input = torch.linalg.solve(K64.float().double() + damping * torch.eye(64, dtype=torch.float64),
                                    V.double().T).T
    torch.testing.assert_close(got.double(), same_input, rtol=1e-5, atol=1e-6 * float(same_input.abs().max()))


def test_solve_kernel_refines_a_float32_factor_when_it_can():
    from skggda._engine._curvature import _damped, _solve_refined

    def solve_refined(K, V, damping):
        return _solve_refined(_damped(K, damping, K.dtype), _damped(K, damping, torch.float64), V)

    rows = torch.randn(300, 64)
    K = rows.T @ rows / 300
    V = torch.randn(1, 64)
    refined = solve_refined(K, V, 1e-3)
    assert refined is not None  # the fast path was taken, and it is the float64 answer
    expected = torch.linalg.solve(K.double() + 1e-3 * torch.eye(64, dtype=torch.float64),
                                  V.double().T).T
    torch.testing.assert_close(refined.double(), expected, rtol=1e-6, atol=1e-7)
    # a singular float32 factor gives up instead of returning a poor answer
    assert solve_refined(torch.zeros(4, 4), torch.ones(1, 4), 0.0) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_solve_kernel_leaves_the_kernel_alone(dtype):
    rows = torch.randn(50, 8, dtype=dtype)
    K = rows.T @ rows / 50
    before = K.clone()
    V = torch.randn(2, 8, dtype=torch.float64)  # any dtype of right-hand sides
    first = _engine.solve_kernel(K, V, 1e-2)
    torch.testing.assert_close(K, before, rtol=0, atol=0)
    torch.testing.assert_close(_engine.solve_kernel(K, V, 1e-2), first, rtol=0, atol=0)
    expected = torch.linalg.solve(before.double() + 1e-2 * torch.eye(8, dtype=torch.float64),
                                  V.T).T
    torch.testing.assert_close(first.double(), expected, rtol=1e-6, atol=1e-8)
