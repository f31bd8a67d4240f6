"""The engine's paths one by one, pinned by value (tests added by mutation testing,
benchmarks/TESTING.md): the projection's hook, dense and generic paths, and how the
plan picks its blocks and its batch rows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skggda import _engine
from test_engine import (TinyText, data, flat_in_param_order, mlp, per_sample_loss,
                         reference_gradients)


# -- the projection, path by path (mutation testing: benchmarks/TESTING.md) --------------


class Scaled(nn.Module):
    """Three linears (the first tiny) and a bare parameter (the generic block)."""

    def __init__(self):
        super().__init__()
        self.first, self.mid, self.head = nn.Linear(1, 1), nn.Linear(1, 8), nn.Linear(8, 3)
        self.scale = nn.Parameter(torch.tensor([1.5, 0.5, 1.0]))

    def forward(self, x):
        return self.head(torch.tanh(self.mid(torch.tanh(self.first(x))))) * self.scale


class TwoTokens(nn.Module):
    """A linear with one output applied to each of two tokens (two rows a sample), a head."""

    def __init__(self):
        super().__init__()
        self.token, self.head = nn.Linear(3, 1), nn.Linear(1, 3)

    def forward(self, x):  # (batch, 2, 3)
        return self.head(torch.tanh(self.token(x)).mean(1))


def _projection_case(name, n_components):
    torch.manual_seed(0)
    module = Scaled() if name == "scaled" else TwoTokens()
    X, y = data(n=9, shape=(1,) if name == "scaled" else (2, 3))
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    return plan, X, y, _engine.Projector(plan, n_components, seed=3)


@pytest.mark.parametrize("name,n_components,dims", [
    # 2 components for 4 blocks of sizes 2, 16, 27, 3 (shares 0.08, 0.67, 1.13,
    # 0.13): the first linear and the generic block get none
    ("scaled", 2, [0, 1, 1, 0]),
    ("scaled", 21, [1, 7, 11, 2]),
    ("scaled", 48, [2, 16, 27, 3]),  # everything kept: identity sides
    # the token block (one output, two rows a sample) keeps 2 of its 4
    ("two-tokens", 4, [2, 2]),
])
def test_projection_of_calls_equals_projection_of_gradients(name, n_components, dims):
    # the hook path (projected from captured calls, blocks without components
    # included) against the dense path applied to exact per-sample gradients,
    # batched and one gradient at a time
    plan, X, y, projector = _projection_case(name, n_components)
    assert projector.dims == dims
    blocks = _engine._passes.per_sample_gradients(plan, X, y)
    dense = projector.dense(blocks)
    assert dense.shape == (len(y), n_components)
    torch.testing.assert_close(_engine.projected_gradients(plan, X, y, projector, batch_size=4),
                               dense, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(projector.dense([b[3] for b in blocks]), dense[3])


@pytest.mark.parametrize("n_components", [2, 13, 21, 48])
def test_diagonal_gram_is_the_projection_of_the_diagonal(n_components):
    # P diag(d) P^T, with P's columns the projections of the unit vectors (the
    # dense path), for linear blocks (one value per input column) and the
    # generic block; 13 components give the middle linear an identity input side
    plan, X, y, projector = _projection_case("scaled", n_components)
    rng = torch.Generator().manual_seed(1)
    diagonal = []
    for block in plan.blocks:
        if isinstance(block, _engine._blocks.LinearBlock):
            diagonal.append(torch.rand(block.shape[1], generator=rng).expand(block.shape))
        else:
            diagonal.append(torch.rand(block.shape, generator=rng))
    units = projector.dense(plan.unflatten(torch.eye(plan.n_params)))  # (p, n_components)
    d = plan.flatten(diagonal)
    torch.testing.assert_close(projector.diagonal_gram(diagonal), units.T @ (d[:, None] * units),
                               rtol=1e-5, atol=1e-6)


def test_blocks_without_components_project_to_zero_columns():
    plan, X, y, projector = _projection_case("scaled", 2)  # dims [0, 1, 1, 0]
    generic = len(plan.hook_blocks)
    assert projector.flat(generic, torch.ones(2, 5, 3)).shape == (2, 5, 0)
    assert projector.flat(generic, torch.ones(3)).shape == (0,)
    calls = [(torch.ones(6, 1), torch.ones(6, 1))]  # block "first" (1 -> 1), 6 samples
    assert projector.project_calls(0, calls).shape == (6, 0)


def test_diagonal_gram_rejects_a_diagonal_that_differs_between_rows():
    plan, X, y, projector = _projection_case("scaled", 21)
    diagonal = [torch.rand(block.shape) for block in plan.blocks]  # "first" has one row
    with pytest.raises(ValueError, match="'mid' differs between output rows; only a per-column "
                                         "diagonal has a Kronecker projection"):
        projector.diagonal_gram(diagonal)


def test_generic_block_projection_is_seeded_and_leaves_the_global_rng_alone():
    plan, X, y, _ = _projection_case("scaled", 21)
    blocks = _engine._passes.per_sample_gradients(plan, X, y)
    state = torch.random.get_rng_state()
    first = _engine.Projector(plan, 21, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(123)
    second = _engine.Projector(plan, 21, seed=5)
    torch.testing.assert_close(first.dense(blocks), second.dense(blocks), rtol=0, atol=0)


def test_half_precision_gradients_are_projected_in_float32():
    plan, X, y, _ = _projection_case("scaled", 21)
    plan.module.to(torch.bfloat16)
    projector = _engine.Projector(plan, 21, seed=3)
    blocks = [torch.randn(4, *block.shape, generator=torch.Generator().manual_seed(i))
              .to(torch.bfloat16) for i, block in enumerate(plan.blocks)]
    half = projector.dense(blocks)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, projector.dense([b.float() for b in blocks]),
                               rtol=0, atol=0)


@pytest.mark.parametrize("n_keep,out_dim,in_dim,expected", [
    # least variance 2/r_out + 2/r_in (0 for a side kept whole), ties to the
    # cheaper out*r_out + in*r_in, then to the smaller r_out
    (9, 2, 10, (2, 5)),   # 1.4; (1, 9): 2.22; r_out is never above out_dim ((3, 3): 1.33)
    (6, 4, 3, (2, 3)),    # input side whole: 1; (3, 2): 1.67; (4, 2): 1.5
    (8, 4, 3, (4, 2)),    # output side whole: 1; (3, 3): 1.33
    (20, 10, 10, (6, 4)),  # 0.83; (4, 5) and (5, 4): 0.9; (2, 10): 1
    (30, 10, 10, (3, 10)),  # (3, 10) and (10, 3): 0.67 and the same cost
    (3, 2, 3, (2, 2)),    # (1, 3) and (2, 2): 2; cost 11 against 10
])
def test_factor_shape_has_the_least_variance(n_keep, out_dim, in_dim, expected):
    assert _engine._projection._factor_shape(n_keep, out_dim, in_dim) == expected


@pytest.mark.parametrize("n_components,sizes,expected", [
    (2, [1, 100], [1, 1]),  # as many components as blocks: one each
    (2, [1, 1], [1, 1]),    # nothing left to share out
    (3, [2, 3], [1, 2]),    # one left: to the larger room (2 of 3)
    (4, [13, 10], [2, 2]),  # rooms 12, 9 share 2: 1.14, 0.86; the larger remainder wins
    # 6 left over 20 blocks: 0.15 each for rooms of 2, 0.45 each for rooms of 6;
    # the tie among the ten 0.45s goes to the first six
    (26, [3, 7] * 10, [1, 2] * 6 + [1, 1] * 4),
])
def test_allocate_components_by_largest_remainder(n_components, sizes, expected):
    assert _engine._projection.allocate_components(sizes, n_components) == expected


# -- the plan: which blocks, how many rows (mutation testing: benchmarks/TESTING.md) ------


class Context(nn.Module):
    """A linear called on a parameter vector, not on the batch, and an unused linear."""

    def __init__(self):
        super().__init__()
        self.context = nn.Linear(5, 5)  # its 1-D input and output have 5 = probe rows
        self.vector = nn.Parameter(torch.randn(5))
        self.unused = nn.Linear(5, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(torch.tanh(x + self.context(self.vector)))


class Doubled(nn.Linear):
    def forward(self, x):  # a subclass with its own forward: not the hook path
        return 2 * super().forward(x)


class Keywords(nn.Module):
    """Inputs given as a dict of keyword arguments."""

    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(5, 4), Doubled(4, 3)

    def forward(self, x, scale):
        return self.head(torch.tanh(self.body(x) * scale))


@pytest.mark.parametrize("make,hooked", [(Context, ["head"]), (Keywords, ["body"])])
def test_only_batch_leading_plain_linears_take_the_hook_path(make, hooked):
    torch.manual_seed(0)
    module = make()
    X, y = data(n=9)
    if make is Keywords:
        X = {"x": X, "scale": torch.rand(9, 1, generator=torch.Generator().manual_seed(2))}
    plan = _engine.make_plan(module, per_sample_loss, _engine.probe_batch(X))
    assert [b.module_name for b in plan.hook_blocks] == hooked
    expected = reference_gradients(module, X, y)
    got = flat_in_param_order(plan, _engine._passes.per_sample_gradients(plan, X, y), module)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_probe_batch_is_the_first_rows():
    X = torch.arange(40.0).reshape(20, 2)
    assert torch.equal(_engine.probe_batch(X), X[:5])
    assert torch.equal(_engine.probe_batch(X, 3), X[:3])
    probe = _engine.probe_batch({"x": X, "mask": X[:, 0]})
    assert torch.equal(probe["x"], X[:5]) and torch.equal(probe["mask"], X[:5, 0])
    assert torch.equal(_engine.probe_batch({"x": X}, 3)["x"], X[:3])


def test_plan_repr_names_its_blocks():
    module = TinyText()
    plan = _engine.make_plan(module, per_sample_loss, torch.zeros(3, 5, dtype=torch.long))
    assert repr(plan) == (f"GradientPlan(n_params={plan.n_params}, hooks=[norm, token_mix, "
                          f"head], generic_params=1)")
    assert repr(_engine.make_plan(mlp(), per_sample_loss, torch.zeros(3, 5))) == (
        "GradientPlan(n_params=122, hooks=[0, 2, 4], generic_params=0)")


@pytest.mark.parametrize("make,shape,dtype", [(mlp, (5,), torch.float32),
                                              (TinyText, None, torch.float32),
                                              (mlp, (5,), torch.float64)])
def test_auto_batch_size_is_the_largest_power_of_two_that_fits(make, shape, dtype, monkeypatch):
    # per sample: the activations the probe counted, the generic block's
    # per-sample gradient and what the pass adds, in the module's element size
    from skggda._engine import _budget

    module = make().to(dtype)
    X = torch.zeros(3, *shape, dtype=dtype) if shape else torch.zeros(3, 5, dtype=torch.long)
    plan = _engine.make_plan(module, per_sample_loss, X)
    generic = plan.generic.size if plan.generic is not None else 0
    assert plan.activation_floats > 0 and (make is mlp or generic > 0)
    for extra in (0, 7):
        per_sample = (plan.activation_floats + generic + extra) * (8 if dtype == torch.float64 else 4)
        for budget, rows in ((64 * per_sample, 64), (64 * per_sample - 1, 32)):
            monkeypatch.setattr(_budget, "_CPU_BUDGET", budget)
            assert plan.batch_size("auto", extra) == rows
            if extra == 0:
                assert plan.with_loss(per_sample_loss).batch_size("auto") == rows
    assert plan.batch_size(24, 7) == 24


def test_select_parameters_default_root_owner_and_nothing_trainable():
    select = _engine._plan.select_parameters
    assert list(select(mlp())) == list(select(mlp(), "all"))  # "all" by default
    assert list(select(nn.Linear(3, 2), "last")) == ["weight", "bias"]  # the root owns them
    with pytest.raises(ValueError, match=r"^The module has no trainable parameters to "
                                         r"attribute\.$"):
        select(mlp().requires_grad_(False))


class Aliased(nn.Module):
    """One linear registered under two names (``self.b = self.a``), called twice."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 5)
        self.b = self.a
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.b(torch.tanh(self.a(x)))))


def test_passes_keep_the_parameters_of_a_module_registered_twice():
    # torch.func.functional_call swaps each name in and out in the same order:
    # for a module reachable under two names the second "original" it saved is
    # the first swap's tensor, and the module was left holding plain tensors
    torch.manual_seed(0)
    module = Aliased()
    X, y = data(n=9)
    expected = reference_gradients(module, X, y)
    params = dict(module.named_parameters(remove_duplicate=False))
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    assert plan.generic is not None and plan.generic.names == ["a.weight", "a.bias"]
    got = flat_in_param_order(plan, _engine._passes.per_sample_gradients(plan, X, y), module)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    _engine.gradient_dots(plan, X, y, [torch.ones(1, *b.shape) for b in plan.blocks])
    _engine._curvature.hessian_vector_products(plan, X, y, torch.ones(2, plan.n_params))
    after = dict(module.named_parameters(remove_duplicate=False))
    assert after.keys() == params.keys()
    assert all(after[name] is param for name, param in params.items())
    torch.testing.assert_close(reference_gradients(module, X, y), expected)
