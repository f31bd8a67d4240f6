"""Projected K-FAC / EK-FAC (issue 20, LoGra-style): the Kronecker factors, the eigenvalue
correction and the stored group gradients live in the space of a Kronecker random
projection; checked against dense references built here in that same space."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from skggda import InfluenceAttributor, RandomGrouper, _engine

from conftest import make_problem, tiny_net
from test_kfac import CASES, NormNet, data, dense_block_curvature, dense_precondition, layer_rows, \
    per_sample_layer_gradients, per_sample_loss, tiny_conv, two_linears


def projected_reference(module, projector, X, y, corrected):
    """Per linear layer: the dense curvature of the projected gradients ``(r, r)`` and
    the projected per-sample gradients ``(n, r)``, from per-sample backward passes."""
    layers = dict(module.named_modules())
    names = [name for name, layer in layers.items() if isinstance(layer, torch.nn.Linear)]
    curvatures, gradients = [], []
    for index, name in enumerate(names):
        p_out, p_in, scale = projector.sides(index)
        p_out = torch.eye(layers[name].out_features) if p_out is None else p_out
        p_in = torch.eye(layers[name].in_features + 1) if p_in is None else p_in
        p_out, p_in = p_out.double(), p_in.double()
        a, d = layer_rows(module, layers[name], X, y)  # T = 1
        a, d = a[:, 0] @ p_in, scale * d[:, 0] @ p_out
        A, S = a.T @ a / len(y), d.T @ d / len(y)
        G = scale * p_out.T @ per_sample_layer_gradients(module, layers[name], X, y) @ p_in
        if corrected:
            q_a, q_s = torch.linalg.eigh(A)[1], torch.linalg.eigh(S)[1]
            values = (q_s.T @ G @ q_a).square().mean(0)
            Q = torch.kron(q_s, q_a)
            curvatures.append(Q @ torch.diag(values.reshape(-1)) @ Q.T)
        else:
            curvatures.append(torch.kron(S, A))
        gradients.append(G.flatten(1))
    return curvatures, torch.cat(gradients, 1)


@pytest.mark.parametrize("corrected", [False, True], ids=["kfac", "ekfac"])
@pytest.mark.parametrize("damping", [None, 0.05])
def test_projected_preconditioner_equals_dense_kronecker_reference(corrected, damping):
    module = two_linears().eval()
    X, y = data(29, (5,))
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    projector = _engine.Projector(plan, 26, seed=3, kronecker=True)
    # every side is random: the test covers real projections, not identities
    assert all(side is not None for i in range(2) for side in projector.sides(i)[:2])
    preconditioner = _engine.fit_kfac(plan, X, y, corrected=corrected, fisher="empirical",
                                      batch_size=8, projector=projector)
    curvatures, G = projected_reference(module, projector, X, y, corrected)
    # the projector's own gradients are the reference's
    features = _engine.projected_gradients(plan, X, y, projector, batch_size=8)
    torch.testing.assert_close(features.double(), G, rtol=1e-4, atol=1e-6)
    V = torch.randn(4, projector.n_components, generator=torch.Generator().manual_seed(1))
    got = preconditioner.precondition_projected(V, damping)
    expected = dense_precondition(curvatures, V, damping)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4,
                               atol=1e-5 * expected.abs().max())


def test_projected_blocks_keep_whole_kronecker_products():
    module = two_linears().eval()
    X, _ = data(5, (5,))
    plan = _engine.make_plan(module, per_sample_loss, X)
    projector = _engine.Projector(plan, 37, seed=0, kronecker=True)
    assert projector.n_components == sum(projector.dims) <= 37
    for dim, (r_out, r_in), block in zip(projector.dims, projector.factor_shapes, plan.blocks):
        assert dim == r_out * r_in and r_out <= block.out_dim and r_in <= block.in_dim


@pytest.fixture(scope="module")
def problem():
    X, y, _, _ = make_problem(n=80, n_features=4, n_classes=3, seed=1)
    X_test, y_test, _, _ = make_problem(n=10, n_features=4, n_classes=3, seed=2)
    net = tiny_net(hidden=(5,), epochs=3).fit(X, y)
    return FrozenEstimator(net), X, y, X_test, y_test


def projected(frozen, solver, n_components, projection="random", **params):
    return InfluenceAttributor(frozen, solver=solver, n_components=n_components,
                               projection=projection, grouper=RandomGrouper(group_size=4),
                               fisher="empirical", random_state=0, **params)


@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
def test_attribute_and_scores_equal_the_dense_reference(problem, solver):
    frozen, X, y, X_test, y_test = problem
    attributor = projected(frozen, solver, 24).fit(X, y)
    module = attributor.estimator_.module_
    plan = _engine.make_plan(module, per_sample_loss, torch.as_tensor(X[:5]))
    projector = attributor._projector(plan)
    curvatures, G = projected_reference(module, projector, torch.as_tensor(X),
                                        torch.as_tensor(y), solver == "ekfac")
    labels = torch.as_tensor(attributor.labels_.astype(np.int64))
    groups = torch.zeros(attributor.n_groups_, G.shape[1], dtype=G.dtype).index_add_(0, labels, G)
    _, Q = projected_reference(module, projector, torch.as_tensor(X_test),
                               torch.as_tensor(y_test), False)
    expected = (Q @ dense_precondition(curvatures, groups).T / len(y)).numpy()
    got = attributor.attribute(X_test, y_test)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # the property's gradient is the mean of the test gradients
    np.testing.assert_allclose(attributor.score_groups(X_test, y_test), expected.mean(0),
                               rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    self_scores = ((groups * dense_precondition(curvatures, groups)).sum(1) / len(y)).numpy()
    np.testing.assert_allclose(attributor.self_influence(), self_scores, rtol=1e-4,
                               atol=1e-5 * np.abs(self_scores).max())


@pytest.mark.parametrize("projection", ["random", "eigen"])
@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
def test_projection_at_full_width_is_the_unprojected_solver(problem, solver, projection):
    """Every side kept whole is the identity (random), every eigen-coordinate kept is an
    orthogonal change of basis (eigen): the projected solver is the exact one."""
    frozen, X, y, X_test, y_test = problem
    n_params = sum(p.numel() for p in frozen.estimator.module_.parameters())
    full = projected(frozen, solver, n_params, projection).fit(X, y)
    exact = projected(frozen, solver, None).fit(X, y)
    np.testing.assert_allclose(full.attribute(X_test, y_test), exact.attribute(X_test, y_test),
                               rtol=1e-4, atol=1e-6)


def test_projection_follows_random_state(problem):
    frozen, X, y, X_test, y_test = problem
    first = projected(frozen, "ekfac", 16).fit(X, y).attribute(X_test, y_test)
    again = projected(frozen, "ekfac", 16).fit(X, y).attribute(X_test, y_test)
    other = projected(frozen, "ekfac", 16).set_params(random_state=1).fit(X, y)
    np.testing.assert_array_equal(first, again)
    # another seed draws other projections (and other random groups)
    assert not np.allclose(first, other.attribute(X_test, y_test)[:, :first.shape[1]])


def test_too_few_components_for_the_blocks_is_refused(problem):
    frozen, X, y, _, _ = problem
    with pytest.raises(ValueError, match="at least one component per block"):
        projected(frozen, "kfac", 1).fit(X, y)


# -- the eigen-coordinates (projection="eigen") -------------------------------------------


@pytest.mark.parametrize("damping", [None, 0.03])
@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
def test_eigen_projection_is_the_dense_curvature_restricted_to_its_top_eigenvectors(
        problem, solver, damping):
    """Reference: each layer's dense K-FAC / EK-FAC matrix, eigendecomposed here; its top
    ``r_block`` eigenvectors ``U`` give ``q^T U (Lambda_U + damping)^{-1} U^T g``, the
    default damping being 0.1 x the mean of all the layer's eigenvalues."""
    frozen, X, y, X_test, y_test = problem
    attributor = projected(frozen, solver, 20, "eigen", damping=damping).fit(X, y)
    module = attributor.estimator_.module_
    plan = _engine.make_plan(module, per_sample_loss, torch.as_tensor(X[:5]))
    dims = attributor._projector(plan).dims
    assert 0 < sum(dims) == 20 and all(d < b.size for d, b in zip(dims, plan.blocks))
    layers = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    expected = self_scores = 0
    for layer, keep in zip(layers, dims):
        C = dense_block_curvature(module, layer, Xt, yt, corrected=solver == "ekfac")
        values, vectors = torch.linalg.eigh(C)
        top = torch.argsort(values, descending=True)[:keep]
        lam = 0.1 * values.mean() if damping is None else damping
        U = vectors[:, top]
        weights = 1 / (values[top] + lam)
        G = per_sample_layer_gradients(module, layer, Xt, yt).flatten(1)
        Q = per_sample_layer_gradients(module, layer, torch.as_tensor(X_test),
                                       torch.as_tensor(y_test)).flatten(1)
        labels = torch.as_tensor(attributor.labels_.astype(np.int64))
        groups = torch.zeros(attributor.n_groups_, G.shape[1], dtype=G.dtype).index_add_(
            0, labels, G)
        expected = expected + ((Q @ U) * weights) @ (groups @ U).T
        self_scores = self_scores + (((groups @ U) ** 2) * weights).sum(1)
    expected = (expected / len(y)).numpy()
    np.testing.assert_allclose(attributor.attribute(X_test, y_test), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())
    # the property's gradient (no leading dimension) is the mean of the test gradients
    np.testing.assert_allclose(attributor.score_groups(X_test, y_test), expected.mean(0),
                               rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    self_scores = (self_scores / len(y)).numpy()
    np.testing.assert_allclose(attributor.self_influence(), self_scores, rtol=1e-4,
                               atol=1e-5 * np.abs(self_scores).max())


def test_eigen_projection_has_no_seed(problem):
    frozen, X, y, X_test, y_test = problem
    first = projected(frozen, "ekfac", 16, "eigen").set_params(grouper=None).fit(X, y)
    other = projected(frozen, "ekfac", 16, "eigen").set_params(grouper=None,
                                                               random_state=5).fit(X, y)
    np.testing.assert_allclose(first.attribute(X_test, y_test),
                               other.attribute(X_test, y_test), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make, shape", [(tiny_conv, (2, 4, 4)), (NormNet, (5,))],
                         ids=["conv", "norm-and-generic"])
def test_eigen_coordinates_from_hooks_equal_those_of_the_gradients(make, shape):
    """The hook path (rows of a convolution, norm layers, the torch.func block) gives the
    coordinates that rotating and indexing each sample's full gradient gives."""
    torch.manual_seed(0)
    module = make().eval()
    X, y = data(21, shape)
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    preconditioner = _engine.fit_kfac(plan, X, y, fisher="empirical", batch_size=8)
    projector = _engine.EigenProjector(plan, preconditioner, plan.n_params // 3)
    got = _engine.projected_gradients(plan, X, y, projector, batch_size=8)
    per_sample = torch.cat([projector.dense(grads) for _, grads in
                            _engine.iter_per_sample_gradients(plan, X, y, batch_size=8)])
    torch.testing.assert_close(got, per_sample, rtol=1e-4, atol=1e-6)
    # every block keeps coordinates, the wide ones not all of them
    for block, keep in zip(preconditioner.blocks, projector.dims):
        assert 0 < keep <= block.eigenvalues.numel()
    assert any(keep < block.eigenvalues.numel() // 2
               for block, keep in zip(preconditioner.blocks, projector.dims))


def test_random_projection_gives_other_blocks_the_dense_fisher_of_their_projection():
    """Norm layers and the torch.func block have no Kronecker structure: projected, each
    gets the second moment of its projected per-sample gradients, inverted whole."""
    torch.manual_seed(0)
    module = NormNet().eval()
    X, y = data(19, (5,))
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    projector = _engine.Projector(plan, 14, seed=1, kronecker=True)
    preconditioner = _engine.fit_kfac(plan, X, y, fisher="empirical", batch_size=8,
                                      projector=projector)
    per_sample = torch.cat([projector.dense(grads) for _, grads in
                            _engine.iter_per_sample_gradients(plan, X, y, batch_size=8)])
    V = torch.randn(3, projector.n_components, generator=torch.Generator().manual_seed(2))
    got = preconditioner.precondition_projected(V, damping=0.01)
    start, dense = 0, 0
    for block, dim, shape in zip(preconditioner.blocks, projector.dims,
                                 projector.factor_shapes):
        columns, start = slice(start, start + dim), start + dim
        if shape is not None:
            continue
        assert isinstance(block, _engine.DenseBlock) and dim > 0
        P = per_sample[:, columns].double()
        C = P.T @ P / len(y)
        expected = torch.linalg.solve(C + 0.01 * torch.eye(dim, dtype=C.dtype),
                                      V[:, columns].double().T).T
        torch.testing.assert_close(got[:, columns].double(), expected, rtol=1e-4, atol=1e-6)
        dense += 1
    assert dense == 2  # the norm layer and the torch.func block


# -- EK-FAC's correction restricted to the eigen projection's candidate columns ----------


@pytest.mark.parametrize("name", sorted(CASES))  # a conv block's rows take the other branch
def test_restricted_correction_is_the_full_one_on_its_columns_and_keeps_every_row_total(name):
    """Read columns: the full correction's values. Every row keeps the full correction's
    total (so does the block's mean, the default damping). The other columns share the
    row's remainder in proportion to A's eigenvalues, as K-FAC's rows do."""
    make_module, shape, _ = CASES[name]
    module = make_module().eval()
    X, y = data(23, shape)
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    fit = functools.partial(_engine.fit_kfac, plan, X, y, fisher="empirical", batch_size=8)
    kfac, full = fit(corrected=False), fit()
    read = [torch.arange(1, b.eigenvalues.shape[1], 3) for b in kfac.blocks]
    restricted = fit(correction_columns=lambda blocks: read)
    for k, f, r, columns in zip(kfac.blocks, full.blocks, restricted.blocks, read):
        scale = f.eigenvalues.abs().max()
        torch.testing.assert_close(r.eigenvalues[:, columns], f.eigenvalues[:, columns],
                                   rtol=1e-5, atol=1e-6 * scale)
        torch.testing.assert_close(r.eigenvalues.sum(1), f.eigenvalues.sum(1), rtol=1e-5,
                                   atol=1e-6 * scale)
        rest = torch.ones(k.eigenvalues.shape[1], dtype=torch.bool)
        rest[columns] = False
        shares = k.eigenvalues.sum(0)[rest] / k.eigenvalues.sum(0)[rest].sum()
        remainder = f.eigenvalues.sum(1) - f.eigenvalues[:, columns].sum(1)
        torch.testing.assert_close(r.eigenvalues[:, rest], remainder[:, None] * shares,
                                   rtol=1e-4, atol=1e-6 * scale)
        assert not torch.allclose(r.eigenvalues[:, rest], f.eigenvalues[:, rest])
    projector = _engine.Projector(plan, 6, seed=0, kronecker=True)
    with pytest.raises(ValueError, match="unprojected EK-FAC only"):
        fit(projector=projector, correction_columns=lambda blocks: read)


def test_eigen_projected_ekfac_corrects_only_candidates_and_scores_as_the_full_fit(
        monkeypatch):
    """The kept coordinates lie among the candidates (checked here, it is the premise):
    selection, eigenvalues, default damping and so every score equal the full fit's."""
    X, y, _, _ = make_problem(n=120, n_features=20, n_classes=3, seed=1)
    X_test, y_test, _, _ = make_problem(n=10, n_features=20, n_classes=3, seed=2)
    frozen = FrozenEstimator(tiny_net(hidden=(16,), epochs=3).fit(X, y))
    restricted = projected(frozen, "ekfac", 8, "eigen").fit(X, y)
    plan = _engine.make_plan(restricted.estimator_.module_, per_sample_loss,
                             torch.as_tensor(X[:5]))
    kfac = _engine.fit_kfac(plan, X, y, corrected=False, fisher="empirical")
    candidates = _engine.eigen_correction_columns(plan, 8, kfac.blocks)
    monkeypatch.setattr(InfluenceAttributor, "_correction_columns", lambda self, plan: None)
    full = projected(frozen, "ekfac", 8, "eigen").fit(X, y)
    assert candidates[0] is not None and len(candidates[0]) < kfac.blocks[0].q_in.shape[0]
    for block, keep, columns in zip(full._kfac.blocks, restricted._projector(plan).dims,
                                    candidates):
        kept = torch.topk(block.eigenvalues.reshape(-1), keep).indices
        if columns is not None:
            assert np.isin(kept % block.eigenvalues.shape[1], columns).all()
    assert not torch.allclose(restricted._kfac.blocks[0].eigenvalues,
                              full._kfac.blocks[0].eigenvalues)
    for method, args in [("attribute", (X_test, y_test)), ("score_groups", (X_test, y_test)),
                         ("self_influence", ())]:
        expected = getattr(full, method)(*args)
        np.testing.assert_allclose(getattr(restricted, method)(*args), expected, rtol=1e-4,
                                   atol=1e-5 * np.abs(expected).max())


def test_restricted_correction_gives_columns_without_kfac_mass_nothing():
    """Unread columns whose input eigenvalues are 0 (dead inputs) carry no gradient: they
    get 0, not a share of rounding (nor NaN from 0 / 0)."""
    from skggda._engine._kfac import _spread_remainder

    kfac = _engine.KroneckerBlock(torch.eye(2, dtype=torch.float64),
                                  torch.eye(4, dtype=torch.float64),
                                  torch.outer(torch.tensor([1.0, 2.0], dtype=torch.float64),
                                              torch.tensor([3.0, 1.0, 0.0, 0.0],
                                                           dtype=torch.float64)))
    values = torch.tensor([[2.5, 0.5], [7.0, 1.5]], dtype=torch.float64)
    full = _spread_remainder(kfac, values, torch.tensor([0, 1]), values.sum(1) + 1e-12)
    expected = torch.cat([values, torch.zeros(2, 2, dtype=torch.float64)], 1)
    torch.testing.assert_close(full, expected, rtol=0, atol=0)


def test_correction_columns_name_each_kronecker_blocks_top_product_columns():
    """One entry a block, in order, past blocks without Kronecker structure (a norm layer, a
    bare parameter): the sorted columns of a block's 4 x r_block largest K-FAC products,
    None for the others and where those cover every column."""
    torch.manual_seed(0)
    module = NormNet().eval()
    X, y = data(19, (5,))
    plan = _engine.make_plan(module, per_sample_loss, X[:5])
    blocks = _engine.fit_kfac(plan, X, y, corrected=False, fisher="empirical").blocks
    columns = _engine.eigen_correction_columns(plan, 4, blocks)
    assert len(columns) == len(blocks) == 4
    restricted = 0
    for block, keep, got in zip(blocks, _engine.EigenProjector(plan, _engine.KFACPreconditioner(
            blocks), 4).dims, columns):
        if not isinstance(block, _engine.KroneckerBlock):
            assert got is None
            continue
        order = torch.argsort(block.eigenvalues.reshape(-1), descending=True)[:4 * keep]
        expected = torch.unique(order % block.eigenvalues.shape[1])
        if len(expected) == block.eigenvalues.shape[1]:
            assert got is None
        else:
            restricted += 1
            assert torch.equal(got, expected)
    assert restricted == 2  # both linear layers read fewer columns than they have
