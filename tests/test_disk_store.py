"""The on-disk group store (issue 20): ``memory=`` writes the store to a folder as a
``.npy`` file read as a memory map in row blocks; the fitted estimator holds a handle that
skggda.io saves by name and SHA-256 and checks on loading."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator

from skggda import InfluenceAttributor, RandomGrouper, TracInAttributor
from skggda.attribution import _store
from skggda.io import UnsafeFileError, load, save

from conftest import make_problem, tiny_net

MAKERS = {
    "tracin": lambda net, **kw: TracInAttributor(net, random_state=0, **kw),
    "tracin-projected": lambda net, **kw: TracInAttributor(net, n_components=12,
                                                           random_state=0, **kw),
    "ekfac": lambda net, **kw: InfluenceAttributor(net, solver="ekfac", random_state=0,
                                                   grouper=RandomGrouper(group_size=3), **kw),
    "ekfac-projected": lambda net, **kw: InfluenceAttributor(
        net, solver="ekfac", n_components=16, grouper=RandomGrouper(group_size=3),
        random_state=0, **kw),
}


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=90, n_features=4, n_classes=3, seed=1)
    X_test, y_test, _, _ = make_problem(n=11, n_features=4, n_classes=3, seed=2)
    return FrozenEstimator(tiny_net(hidden=(5,), epochs=2).fit(X, y)), X, y, X_test, y_test


def stores(attributor):
    if isinstance(attributor, TracInAttributor):
        found = attributor._group_features or attributor._group_store
        return list(found)
    return [attributor._group_store]


@pytest.mark.parametrize("name", MAKERS)
def test_a_disk_store_gives_what_the_memory_store_gives(data, tmp_path, name):
    net, X, y, X_test, y_test = data
    in_memory = MAKERS[name](net).fit(X, y)
    on_disk = MAKERS[name](net, memory=str(tmp_path)).fit(X, y)
    (handle,) = stores(on_disk)
    assert isinstance(handle, _store.DiskStore)
    assert os.listdir(tmp_path) == [handle.name]
    np.testing.assert_array_equal(handle.open(), stores(in_memory)[0])
    np.testing.assert_array_equal(on_disk.attribute(X_test, y_test),
                                  in_memory.attribute(X_test, y_test))
    np.testing.assert_allclose(on_disk.score_groups(X_test, y_test),
                               in_memory.score_groups(X_test, y_test), rtol=1e-12)
    np.testing.assert_allclose(on_disk.self_influence(), in_memory.self_influence(), rtol=1e-12)


def test_memory_accepts_a_joblib_memory(data, tmp_path):
    from joblib import Memory

    net, X, y, _, _ = data
    attributor = MAKERS["ekfac"](net, memory=Memory(tmp_path, verbose=0)).fit(X, y)
    assert attributor._group_store.folder == str(tmp_path)
    # a Memory without a location caches nothing: the store stays in memory
    in_memory = MAKERS["ekfac"](net, memory=Memory(None, verbose=0)).fit(X, y)
    assert isinstance(in_memory._group_store, np.ndarray)


def test_a_store_larger_than_the_free_disk_is_refused(data, tmp_path, monkeypatch):
    net, X, y, _, _ = data
    needed = MAKERS["ekfac"](net).fit(X, y)._group_store.nbytes
    for free, refused in [(needed - 1, True), (needed, False)]:
        usage = _store.shutil.disk_usage(tmp_path)._replace(free=free)
        monkeypatch.setattr(_store.shutil, "disk_usage", lambda folder, usage=usage: usage)
        attributor = MAKERS["ekfac"](net, memory=str(tmp_path / str(free)))
        if refused:
            with pytest.raises(MemoryError, match="GiB free"):
                attributor.fit(X, y)
        else:
            assert isinstance(attributor.fit(X, y)._group_store, _store.DiskStore)


def test_a_handle_whose_shape_is_not_its_files_is_refused(data, tmp_path):
    net, X, y, _, _ = data
    handle = MAKERS["ekfac"](net, memory=str(tmp_path)).fit(X, y)._group_store
    handle.verify()
    rows, columns = handle.shape
    for shape in [(rows + 1, columns), (rows, columns + 1)]:
        handle.shape = shape
        with pytest.raises(ValueError, match="holds"):
            handle.verify()


@pytest.mark.parametrize("name", ["ekfac", "ekfac-projected", "tracin-projected"])
def test_an_estimator_with_a_disk_store_round_trips_through_io(data, tmp_path, name):
    net, X, y, X_test, y_test = data
    attributor = MAKERS[name](net, memory=str(tmp_path / "store")).fit(X, y)
    save(attributor, tmp_path / "fitted.skggda")
    # the file holds the handle, not the data
    assert os.path.getsize(tmp_path / "fitted.skggda") < stores(attributor)[0].open().nbytes + \
        50_000
    loaded = load(tmp_path / "fitted.skggda")
    assert isinstance(stores(loaded)[0], _store.DiskStore)
    np.testing.assert_array_equal(loaded.attribute(X_test, y_test),
                                  attributor.attribute(X_test, y_test))


def test_loading_refuses_a_missing_or_changed_store(data, tmp_path):
    net, X, y, _, _ = data
    attributor = MAKERS["ekfac"](net, memory=str(tmp_path / "store")).fit(X, y)
    save(attributor, tmp_path / "fitted.skggda")
    path = attributor._group_store.path
    array = np.load(path)
    array[0, 0] += 1
    np.save(path, array)
    with pytest.raises(UnsafeFileError, match="SHA-256 differs"):
        load(tmp_path / "fitted.skggda")
    os.remove(path)
    with pytest.raises(UnsafeFileError, match="is missing"):
        load(tmp_path / "fitted.skggda")


@pytest.mark.parametrize("field, value, message", [
    ("name", "../../etc/passwd", "not the name of a skggda group store"),
    ("shape", (3,), "a 2-d shape"),
    ("sha256", 7, "must hold"),
])
def test_a_forged_store_handle_is_refused(data, tmp_path, field, value, message):
    store = _store.DiskStore(str(tmp_path), "skggda-store-" + "0" * 32 + ".npy", (2, 2),
                             "<f4", "0")
    setattr(store, field, value)
    with pytest.raises(ValueError, match=message):
        store.verify()


def _disk_store_peak(n, tmp_path, X_test, y_test):
    """Traced peak memory of top_groups against an exact on-disk store of n singletons."""
    X, y, _, _ = make_problem(n=n, n_features=4, n_classes=3, seed=1)
    net = FrozenEstimator(tiny_net(hidden=(5,), epochs=1).fit(X, y))
    streaming = InfluenceAttributor(net, solver="ekfac", random_state=0).fit(X, y)
    assert streaming._group_store is None  # the exact store does not fit the budget
    attributor = InfluenceAttributor(net, solver="ekfac", memory=str(tmp_path / str(n)),
                                     random_state=0).fit(X, y)
    attributor.top_groups(X_test[:2], y_test[:2], n=3)  # warm up: imports, plans
    tracemalloc.start()
    top = attributor.top_groups(X_test, y_test, n=3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    expected = streaming.top_groups(X_test, y_test, n=3)
    np.testing.assert_array_equal(top.helpful_indices, expected.helpful_indices)
    return peak, attributor._group_store.open().nbytes


def test_memory_stays_within_the_budget_where_the_exact_store_would_not_fit(tmp_path,
                                                                           monkeypatch):
    """Exact stores that the in-memory budget refuses are kept on disk; top_groups then
    holds one block of store rows and of queries at a time: its peak memory does not
    grow with the store (4x the groups), and stays far below it."""
    X_test, y_test, _, _ = make_problem(n=64, n_features=4, n_classes=3, seed=2)
    block = 1 << 17
    monkeypatch.setattr(_store, "STORE_BYTES", block)
    monkeypatch.setattr(_store, "QUERY_BLOCK_BYTES", block)
    small_peak, small_store = _disk_store_peak(4000, tmp_path, X_test, y_test)
    peak, store = _disk_store_peak(16000, tmp_path, X_test, y_test)
    assert store == 4 * small_store > 16 * block
    assert peak < 1.25 * small_peak + 2 * block and peak < store / 4, (peak, small_peak, store)
