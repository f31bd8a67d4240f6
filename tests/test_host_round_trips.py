"""GPU readiness checked on the CPU (issue 23, findings 5-8): no host round trips that
grow with the number of batches, prefetching of batches, whole data sets sent in
batches, and pinned training batches.

A pass on CUDA that uploads group labels, weights or indices batch by batch blocks
on each copy from pageable memory; one that reads a count back (``int()``, a boolean
mask) stops the device. On the CPU neither costs anything, so these tests count: the
uploads a pass makes outside its data batches (``torch.as_tensor`` of host arrays,
``Tensor.to`` with a device, indexing a tensor with a NumPy array) must not grow with
the number of batches.
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from skggda import KMeansGrouper
from skggda import _engine
from skggda._engine import _curvature, _data, _passes
from skggda.attribution import _kernel

from conftest import per_sample_loss
from conftest import two_linears as mlp


class Scaled(nn.Module):
    """A parameter outside any linear: the generic (``torch.func``) block."""

    def __init__(self):
        super().__init__()
        self.body = mlp()
        self.gain = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return self.body(x) * self.gain


def problem(n=48, k=6, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    y = rng.randint(0, 3, size=n)
    labels = rng.randint(0, k, size=n).astype(np.int32)  # compact labels, as groupers store
    labels[:k] = np.arange(k)
    weights = rng.uniform(0.5, 2.0, size=n)
    return X, y, labels, weights


def _has_array(key):
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, np.ndarray) for k in keys)


def _is_mask(key):
    keys = key if isinstance(key, tuple) else (key,)
    return any(torch.is_tensor(k) and k.dtype == torch.bool for k in keys)


@contextmanager
def counting_uploads(monkeypatch):
    """Count host-to-device uploads outside the data batches (and boolean-mask indexing)."""
    counts = Counter()
    state = threading.local()

    def data(function):  # the batches themselves: one upload each, by design
        def wrapper(*args, **kwargs):
            state.data = True
            try:
                return function(*args, **kwargs)
            finally:
                state.data = False
        return wrapper

    def outside_data():
        return not getattr(state, "data", False)

    as_tensor, to = torch.as_tensor, torch.Tensor.to
    getitem, setitem = torch.Tensor.__getitem__, torch.Tensor.__setitem__

    def counted_as_tensor(value, *args, **kwargs):
        if outside_data() and isinstance(value, (np.ndarray, list)):
            counts["as_tensor"] += 1
        return as_tensor(value, *args, **kwargs)

    def counted_to(self, *args, **kwargs):
        if outside_data() and ("device" in kwargs or any(
                isinstance(a, (str, torch.device)) for a in args)):
            counts["to"] += 1
        return to(self, *args, **kwargs)

    def counted_getitem(self, key):
        if outside_data() and _has_array(key):
            counts["index"] += 1
        if _is_mask(key):
            counts["mask"] += 1
        return getitem(self, key)

    def counted_setitem(self, key, value):
        if outside_data() and _has_array(key):
            counts["index"] += 1
        if _is_mask(key):
            counts["mask"] += 1
        return setitem(self, key, value)

    with monkeypatch.context() as patch:
        patch.setattr(_passes, "_load_batch", data(_passes._load_batch))
        patch.setattr(_passes, "_upload", data(_passes._upload))
        from skggda.grouping import _featurisers
        patch.setattr(_featurisers.RawFeatures, "features",
                      data(_featurisers.RawFeatures.features))
        patch.setattr(torch, "as_tensor", counted_as_tensor)
        patch.setattr(torch.Tensor, "to", counted_to)
        patch.setattr(torch.Tensor, "__getitem__", counted_getitem)
        patch.setattr(torch.Tensor, "__setitem__", counted_setitem)
        yield counts


def _plan(module, X):
    return _engine.make_plan(module, per_sample_loss, torch.as_tensor(X[:5]))


PASSES = {
    "group_gradients": lambda plan, X, y, labels, w, bs: _engine.group_gradients(
        plan, X, y, labels, 6, batch_size=bs),
    "projected": lambda plan, X, y, labels, w, bs: _engine.projected_gradients(
        plan, X, y, _engine.Projector(plan, 8, seed=0), labels=labels, n_groups=6,
        fisher=True, group_weights=w, batch_size=bs),
    "projected_per_sample": lambda plan, X, y, labels, w, bs: _engine.projected_gradients(
        plan, X, y, _engine.Projector(plan, 8, seed=0), batch_size=bs),
    "statistics": lambda plan, X, y, labels, w, bs: _engine.per_sample_statistics(
        plan, X, y, labels, 6, group_weights=w, batch_size=bs),
    "loss_gradient": lambda plan, X, y, labels, w, bs: _engine.loss_gradient(
        plan, X, y, sample_weight=w, batch_size=bs),
    "gradient_dots": lambda plan, X, y, labels, w, bs: _engine.gradient_dots(
        plan, X, y, [torch.ones(2, *b.shape) for b in plan.blocks], labels=labels,
        n_groups=6, batch_size=bs),
    "gradient_dots_per_sample": lambda plan, X, y, labels, w, bs: _engine.gradient_dots(
        plan, X, y, [torch.ones(2, *b.shape) for b in plan.blocks], batch_size=bs),
    "hessian_vector_products": lambda plan, X, y, labels, w, bs:
        _curvature.hessian_vector_products(plan, X, y, torch.ones(2, plan.n_params),
                                           batch_size=bs),
}


@pytest.mark.parametrize("module", [mlp, Scaled], ids=["hooks", "generic"])
@pytest.mark.parametrize("kind", sorted(PASSES))
def test_uploads_per_pass_do_not_grow_with_the_number_of_batches(kind, module, monkeypatch):
    X, y, labels, weights = problem()
    plan = _plan(module(), X)
    counts, results = {}, {}
    for batch_size in (24, 4):  # 2 batches, then 12
        with counting_uploads(monkeypatch) as counted:
            results[batch_size] = PASSES[kind](plan, X, y, labels, weights, batch_size)
        counts[batch_size] = dict(counted)
    assert counts[4] == counts[24], counts
    assert counts[4].get("index", 0) == 0 and counts[4].get("mask", 0) == 0, counts
    # and the batches change nothing but the order of sums
    torch.testing.assert_close(_flat(results[4]), _flat(results[24]), rtol=1e-5, atol=1e-6)


def _flat(result):
    parts = result if isinstance(result, (list, tuple)) else [result]
    return torch.cat([t.reshape(-1) for t in parts]).double()


def test_pass_layouts_equal_the_device_layouts_of_every_batch():
    rng = np.random.RandomState(1)
    sizes = rng.choice([1, 2, 3, 9, 30], size=40)
    sorted_labels = np.repeat(np.arange(len(sizes)), sizes)
    layouts = _passes.PassLayouts(sorted_labels, 16, torch.device("cpu"))
    for start, stop in _engine._data.batch_slices(len(sorted_labels), 16):
        expected = _passes.ChunkLayout.from_sorted_labels(
            torch.as_tensor(sorted_labels[start:stop]))
        got = layouts.batch(start, stop)
        assert (got.n_chunks, got.cap) == (expected.n_chunks, expected.cap)
        for name in ("chunk_id", "pos", "chunk_group"):
            assert torch.equal(getattr(got, name), getattr(expected, name)), name


# -- K-Means assignment -------------------------------------------------------------


def test_kmeans_assignment_uploads_the_centers_once_per_pass(monkeypatch):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    grouper = KMeansGrouper(n_groups=12, random_state=0).fit(X)
    counts, labels = {}, {}
    for block in (150, 25):
        with counting_uploads(monkeypatch) as counted:
            work = grouper._nearest_centers()  # one per pass, as _map_blocks makes it
            labels[block] = np.concatenate([work.assign(X[s:s + block], None)[0]
                                            for s in range(0, len(X), block)])
        counts[block] = dict(counted)
    assert counts[25] == counts[150], counts
    np.testing.assert_array_equal(labels[25], grouper.labels_)


def test_center_index_search_uses_no_boolean_mask(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(400, 3, generator=gen)
    points = torch.randn(2000, 3, generator=gen)
    exact, _ = _engine._kmeans.nearest_center(points, centers, squared=True)
    index = _engine.CenterIndex.build(centers, points, exact, seed=0)
    assert not index.exact  # more than 256 centers: the cell search
    with counting_uploads(monkeypatch) as counted:
        labels, distances = index.assign(points)
    # a mask reads its count back to the host: one sync per cell on a GPU
    assert counted.get("mask", 0) == 0, dict(counted)
    assert (labels == exact).float().mean() > 0.99
    best = ((points - centers[labels]) ** 2).sum(1)
    torch.testing.assert_close(distances, best, rtol=1e-4, atol=1e-5)


# -- LiSSA reads its divergence check back every 50 steps ------------------------------


def _lissa(plan, X, y, V, scale, depth=120):
    return _engine.lissa(plan, X, y, V, damping=0.01, scale=scale, depth=depth, repeat=2,
                         batch_size=8, generator=torch.Generator().manual_seed(0))


def test_lissa_reads_back_once_every_50_steps_with_the_same_result(monkeypatch):
    X, y, _, _ = problem()
    plan = _plan(mlp(), X)
    V = torch.randn(3, plan.n_params, generator=torch.Generator().manual_seed(2))
    reads = []
    first = _curvature._first_divergence
    monkeypatch.setattr(_curvature, "_first_divergence",
                        lambda flags: reads.append(len(flags)) or first(flags))
    every_50 = _lissa(plan, X, y, V, scale=50.0)
    assert reads == [50, 50, 20] * 2  # depth 120, two runs
    monkeypatch.setattr(_curvature, "DIVERGENCE_CHECK_EVERY", 1)
    every_step = _lissa(plan, X, y, V, scale=50.0)
    assert every_50.issues == every_step.issues == ()
    assert torch.equal(every_50.x, every_step.x)


def test_lissa_reports_the_first_step_that_diverged(monkeypatch):
    X, y, _, _ = problem()
    plan = _plan(mlp(), X)
    V = torch.randn(3, plan.n_params, generator=torch.Generator().manual_seed(2))
    late = _lissa(plan, X, y, V, scale=1e-3)  # far below the largest eigenvalue
    monkeypatch.setattr(_curvature, "DIVERGENCE_CHECK_EVERY", 1)
    at_once = _lissa(plan, X, y, V, scale=1e-3)
    assert late.issues == at_once.issues and "diverged in run 1 at step" in late.issues[0]
    assert torch.isnan(late.x).all()


# -- kernel scoring: features uploaded and the kernel factored once --------------------


def test_kernel_scores_upload_and_factor_once_per_state(monkeypatch):
    rng = np.random.RandomState(0)
    G = rng.normal(size=(10, 6)).astype(np.float32)
    K = (G.T @ G / 10).astype(np.float32)
    state = _kernel.KernelState(G, K, 10)
    vectors = [torch.as_tensor(rng.normal(size=(m, 6)).astype(np.float32)) for m in (1, 4, 40)]
    expected = [(_engine.solve_kernel(torch.as_tensor(K), v, 1e-2) @ torch.as_tensor(G).T / 10)
                .double().numpy() for v in vectors]
    factorings = Counter()
    cholesky = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex",
                        lambda A, **kw: factorings.update([A.dtype]) or cholesky(A, **kw))
    with counting_uploads(monkeypatch) as counted:
        for _ in range(3):  # three blocks of queries of each size
            for v, want in zip(vectors, expected):
                np.testing.assert_array_equal(_kernel.kernel_scores(state, v, 1e-2), want)
    assert counted["as_tensor"] == 2  # kernel and group features, once
    assert factorings == {torch.float32: 1, torch.float64: 1}


def test_kernel_state_with_new_arrays_is_uploaded_again():
    G = np.eye(3, dtype=np.float32)
    state = _kernel.KernelState(G, np.eye(3, dtype=np.float32), 3)
    v = torch.ones(1, 3)
    first = _kernel.kernel_scores(state, v, 0.0)
    state.group_features = 2 * G
    np.testing.assert_allclose(_kernel.kernel_scores(state, v, 0.0), 2 * first)


# -- 7. whole-data functions and properties run the module in batches --------------------


def test_function_gradient_batches_the_module_and_keeps_the_gradient():
    X, y, _, _ = problem(n=300)
    module = mlp()
    plan = _plan(module, X)
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))

    def worst_loss(net, X_, y_):  # not a sum over samples
        return F.cross_entropy(net(X_), y_, reduction="none").topk(5).values.mean()

    try:
        blocks = _engine.function_gradient(plan, worst_loss, X, y, batch_size=64)
    finally:
        handle.remove()
    assert seen and max(seen) <= 64
    params = list(module.parameters())
    loss = worst_loss(module, torch.as_tensor(X), torch.as_tensor(y))
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    grads = plan.to_param_grads([b[None] for b in blocks])
    got = torch.cat([grads[name].reshape(-1) for name, _ in module.named_parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_property_terms_upload_the_evaluation_data_in_batches(monkeypatch):
    from types import SimpleNamespace

    from skggda import properties

    X, y, _, _ = problem(n=100)
    module = mlp()
    net = SimpleNamespace(module_=module, criterion_=nn.CrossEntropyLoss())
    whole = properties.property_terms(properties.Margin(), net, X, y, np.arange(3))
    monkeypatch.setattr(properties, "_PROPERTY_BATCH", 16)
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        batched = properties.property_terms(properties.Margin(), net, X, y, np.arange(3))
    finally:
        handle.remove()
    assert max(seen) == 16
    np.testing.assert_allclose(batched[1], whole[1], rtol=1e-6)
    assert batched[0] == pytest.approx(whole[0], rel=1e-6)


# -- 6. prefetching on a background thread --------------------------------------------


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "skggda-prefetch"]


def _fake_pin(pinned):
    def pin(tensor):
        pinned.append(threading.current_thread().name)
        return tensor.clone()
    return pin


def test_prefetching_yields_the_same_batches_in_order_from_a_thread():
    pinned = []
    load = lambda item, pin: _data.host_batch(np.full(3, item), pin)  # noqa: E731
    direct = list(_data.prefetching(range(7), load))
    ahead = list(_data.prefetching(range(7), load, _fake_pin(pinned)))
    assert [b.tolist() for b in ahead] == [b.tolist() for b in direct] == \
        [[i] * 3 for i in range(7)]
    assert pinned == ["skggda-prefetch"] * 7
    assert not _prefetch_threads()


def test_prefetching_raises_the_loaders_error_at_its_batch():
    def load(item, pin):
        if item == 3:
            raise OSError("disk gone")
        return item

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in _data.prefetching(range(7), load, _fake_pin([])):
            got.append(item)
    assert got == [0, 1, 2]
    assert not _prefetch_threads()


def test_prefetching_stops_its_thread_when_the_caller_stops_early():
    batches = _data.prefetching(range(1000), lambda item, pin: item, _fake_pin([]))
    assert next(batches) == 0
    batches.close()
    assert not _prefetch_threads()


def test_prefetch_is_for_cuda_only():
    assert _data.prefetch_pin(torch.device("cpu")) is None
    assert _data.prefetch_pin("cuda") is torch.Tensor.pin_memory


@pytest.mark.parametrize("kind", ["group_gradients", "projected", "statistics",
                                  "hessian_vector_products"])
def test_passes_over_a_memmap_with_prefetching_are_unchanged(kind, tmp_path, monkeypatch):
    X, y, labels, weights = problem()
    path = tmp_path / "X.npy"
    np.save(path, X)
    X_map = np.load(path, mmap_mode="r")
    plan = _plan(mlp(), X)
    plain = PASSES[kind](plan, X_map, y, labels, weights, 8)
    pinned = []
    monkeypatch.setattr(_passes, "prefetch_pin", lambda device: _fake_pin(pinned))
    ahead = PASSES[kind](plan, X_map, y, labels, weights, 8)
    assert len(pinned) == 2 * 6  # X and y of every batch, pinned on the thread
    assert set(pinned) == {"skggda-prefetch"}
    for a, b in zip(ahead if isinstance(ahead, (list, tuple)) else [ahead],
                    plain if isinstance(plain, (list, tuple)) else [plain]):
        assert torch.equal(a, b)
    assert not _prefetch_threads()


def test_feature_passes_over_a_memmap_with_prefetching_are_unchanged(tmp_path, monkeypatch):
    from skggda._engine import _features

    X, y, _, _ = problem()
    np.save(tmp_path / "X.npy", X)
    X_map = np.load(tmp_path / "X.npy", mmap_mode="r")
    module = mlp()
    loss = per_sample_loss
    plain = (_engine.penultimate_representations(module, X_map, batch_size=8),
             _engine.preactivation_gradients(module, loss, X_map, y, batch_size=8,
                                             softmax_cross_entropy=True))
    pinned = []
    monkeypatch.setattr(_features, "prefetch_pin", lambda device: _fake_pin(pinned))
    ahead = (_engine.penultimate_representations(module, X_map, batch_size=8),
             _engine.preactivation_gradients(module, loss, X_map, y, batch_size=8,
                                             softmax_cross_entropy=True))
    assert len(pinned) == 6 + 2 * 6 and set(pinned) == {"skggda-prefetch"}
    for a, b in zip(ahead, plain):
        assert torch.equal(a, b)
    assert not _prefetch_threads()


# -- 8. skorch collates training batches in pinned memory on CUDA -----------------------


def test_nets_on_cuda_pin_their_batches_unless_told_otherwise(monkeypatch):
    from skggda.models import make_classifier

    net = make_classifier((4,), max_epochs=1)
    assert "pin_memory" not in net.get_params_for("iterator_train")  # the CPU: nothing to pin
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    net.set_params(device="cuda")
    for prefix in ("iterator_train", "iterator_valid"):
        assert net.get_params_for(prefix)["pin_memory"] is True
    loader = net.get_iterator(torch.utils.data.TensorDataset(torch.zeros(4, 2)), training=True)
    assert loader.pin_memory
    net.set_params(iterator_train__pin_memory=False)
    assert net.get_params_for("iterator_train")["pin_memory"] is False


def test_batched_forward_looks_like_the_module():
    module = Scaled().eval()
    wrapped = _data.BatchedForward(module, 4)
    assert isinstance(wrapped, nn.Module) and not wrapped.training
    assert wrapped.body is module.body and wrapped.gain is module.gain
    assert [p is q for p, q in zip(wrapped.parameters(), module.parameters())] == [True] * 5
    X = torch.randn(10, 5)
    torch.testing.assert_close(wrapped(X), module(X))
