"""Inputs that are never densified: memmaps, h5py, zarr, Dask arrays and torch Datasets.

Every input kind must give exactly what the same data gives in memory, bad
data streamed late must fail like bad data in memory, and a pass over a
large memmap must keep the process's memory growth far below the data size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from skggda import (GradKMeansGrouper, InfluenceAttributor, KMeansGrouper, RandomGrouper,
                    ReprKMeansGrouper, TracInAttributor, TRAKAttributor)
from skggda.utils._inputs import RowReader
from skggda.utils._testing import PeakMemory

from conftest import make_problem, tiny_net

h5py = pytest.importorskip("h5py")
zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")


def to_memmap(array, path):
    out = np.lib.format.open_memmap(path, mode="w+", dtype=array.dtype, shape=array.shape)
    out[:] = array
    out.flush()
    return np.load(path, mmap_mode="r")


def to_h5(array, path, name="data"):
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=array, chunks=True)
    return h5py.File(path, "r")[name]


def to_zarr(array, path):
    out = zarr.create_array(store=str(path), shape=array.shape, dtype=array.dtype,
                            chunks=(37, *array.shape[1:]))
    out[:] = array
    return zarr.open_array(str(path), mode="r")


def as_kind(kind, X, y, tmp_path: Path):
    """``(X, y)`` of the given kind; a Dataset carries y in its items (y=None)."""
    if kind == "memmap":
        return to_memmap(X, tmp_path / "X.npy"), to_memmap(y, tmp_path / "y.npy")
    if kind == "h5py":
        return to_h5(X, tmp_path / "X.h5"), to_h5(y, tmp_path / "y.h5")
    if kind == "zarr":
        return to_zarr(X, tmp_path / "X.zarr"), y
    if kind == "dask":
        return da.from_array(X, chunks=(50, -1)), da.from_array(y, chunks=50)
    if kind == "dataset":
        return torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y)), None
    raise ValueError(kind)


KINDS = ["memmap", "h5py", "zarr", "dask", "dataset"]


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=240, n_classes=3)
    X_test, y_test, _, _ = make_problem(n=60, n_classes=3, seed=1)
    return X, y, X_test, y_test


def attributors(net):
    frozen = FrozenEstimator(net)
    return {
        "tracin": TracInAttributor(frozen, grouper=RandomGrouper(group_size=8), random_state=0),
        "tracin-projected": TracInAttributor(frozen, n_components=16, random_state=0),
        "fisher": InfluenceAttributor(frozen, grouper=GradKMeansGrouper(group_size=8),
                                      n_components=16, damping=1e-2, random_state=0),
        "trak": TRAKAttributor(tiny_net(epochs=2), n_models=2, n_components=16,
                               grouper=KMeansGrouper(group_size=8), random_state=0),
    }


@pytest.fixture(scope="module")
def net(data):
    X, y, _, _ = data
    return tiny_net().fit(X, y)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["tracin", "tracin-projected", "fisher", "trak"])
def test_attributors_give_the_in_memory_results(data, net, tmp_path, kind, name):
    X, y, X_test, y_test = data
    reference = attributors(net)[name].fit(X, y)
    X_s, y_s = as_kind(kind, X, y, tmp_path)
    streamed = attributors(net)[name].fit(X_s, y_s)
    assert isinstance(streamed._X_fit, RowReader)  # a handle, not a copy
    np.testing.assert_array_equal(streamed.labels_, reference.labels_)
    expected = reference.score_groups(X_test, y_test)
    # in memory, exact TracIn reads its group store (float32 group sums times the
    # property gradient); a Dask pass adds float32 per-sample products in float64: a
    # score near zero may differ in its float32 rounding
    np.testing.assert_allclose(streamed.score_groups(X_test, y_test), expected,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(streamed.score_groups(), reference.score_groups(),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(streamed.attribute(X_test[:5], y_test[:5]),
                               reference.attribute(X_test[:5], y_test[:5]), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_evaluation_data(data, net, tmp_path, kind):
    X, y, X_test, y_test = data
    attr = attributors(net)["tracin"].fit(X, y)
    Xt, yt = as_kind(kind, X_test, y_test, tmp_path)
    np.testing.assert_allclose(attr.score_groups(Xt, yt), attr.score_groups(X_test, y_test),
                               rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(attr.attribute(Xt, yt), attr.attribute(X_test, y_test),
                               rtol=1e-5, atol=1e-8)


def groupers(net):
    frozen = FrozenEstimator(net)
    return [
        RandomGrouper(group_size=8, random_state=0),
        KMeansGrouper(group_size=8, random_state=0),
        ReprKMeansGrouper(group_size=8, estimator=frozen, random_state=0),
        GradKMeansGrouper(group_size=8, estimator=frozen, random_state=0),
    ]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("index", range(4), ids=["random", "kmeans", "repr", "grad"])
def test_groupers_give_the_in_memory_results(data, net, tmp_path, kind, index):
    X, y, X_test, y_test = data
    reference = groupers(net)[index].fit(X, y)
    X_s, y_s = as_kind(kind, X, y, tmp_path)
    streamed = groupers(net)[index].fit(X_s, y_s)
    np.testing.assert_array_equal(streamed.labels_, reference.labels_)
    if hasattr(reference, "predict"):
        (tmp_path / "test").mkdir()
        Xt, yt = as_kind(kind, X_test, y_test, tmp_path / "test")
        needs_y = isinstance(reference, (ReprKMeansGrouper, GradKMeansGrouper))
        y_arg = yt if needs_y else None
        np.testing.assert_array_equal(streamed.predict(Xt, y_arg),
                                      reference.predict(X_test, y_test if needs_y else None))
        np.testing.assert_allclose(streamed.transform(Xt, y_arg),
                                   reference.transform(X_test, y_test if needs_y else None),
                                   rtol=1e-5, atol=1e-5)


@pytest.fixture
def large_problem():
    """Enough rows that the K-Means groupers fit on a sample and assign in a second pass."""
    X, y, _, _ = make_problem(n=80_000, n_features=4, n_classes=3)
    return X, y


def test_sampled_kmeans_streams_the_same_labels(large_problem, tmp_path):
    X, y = large_problem
    net = tiny_net(epochs=1, batch_size=4096).fit(X, y)
    make = lambda: GradKMeansGrouper(group_size=4096, estimator=FrozenEstimator(net),  # noqa: E731
                                     random_state=0)
    reference = make().fit(X, y)
    streamed = make().fit(*as_kind("memmap", X, y, tmp_path))
    np.testing.assert_array_equal(streamed.labels_, reference.labels_)
    assert streamed.inertia_ == pytest.approx(reference.inertia_, rel=1e-6)
    k = reference.n_groups_
    assert k == 20 and np.bincount(reference.labels_, minlength=k).min() > 0
    assert reference.labels_.dtype == np.int8


# ---------------------------------------------------------------------------
# bad data streamed late
# ---------------------------------------------------------------------------


def _state(estimator):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(estimator).items()}


def _assert_same_state(before, after):
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(after[key], value)
        else:
            assert after[key] is value


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_value_in_the_last_block(data, net, tmp_path, bad):
    X, y, _, _ = data
    attr = attributors(net)["tracin"].fit(X, y)
    before = _state(attr)
    big = np.repeat(X, 300, axis=0)[:70_000]  # more rows than one validation block
    big_y = np.repeat(y, 300)[:70_000]
    big[-1, 2] = bad
    X_s, y_s = as_kind("memmap", big, big_y, tmp_path)
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        attr.fit(X_s, y_s)
    _assert_same_state(before, _state(attr))


@pytest.mark.parametrize("estimator", ["tracin", "grouper"])
def test_wrong_label_type_in_a_middle_block(data, net, tmp_path, estimator):
    X, y, _, _ = data
    est = (attributors(net)["tracin"] if estimator == "tracin"
           else GradKMeansGrouper(group_size=8, estimator=FrozenEstimator(net), random_state=0))
    est.fit(X, y)
    before = _state(est)
    bad_y = y.astype(np.float64)
    bad_y[len(y) // 2] = 0.5  # a continuous label: not a classification target
    X_s, y_s = as_kind("h5py", X, bad_y, tmp_path)
    with pytest.raises(ValueError, match="Unknown label type"):
        est.fit(X_s, y_s)
    _assert_same_state(before, _state(est))


def test_dataset_with_malformed_items(net):
    class Bad(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(6)

    with pytest.raises(ValueError, match=r"must yield \(x, y\) items"):
        TracInAttributor(FrozenEstimator(net)).fit(Bad(), None)


def test_streamed_input_is_never_densified(data, tmp_path):
    X, _, _, _ = data
    reader = RowReader(to_memmap(X, tmp_path / "X.npy"))
    with pytest.raises(TypeError, match="never loaded whole"):
        np.asarray(reader)


def test_reader_pickles_a_file_reference_not_the_data(data, tmp_path):
    import pickle

    X, _, _, _ = data
    big = np.repeat(X, 100, axis=0)
    for source in (to_memmap(big, tmp_path / "X.npy")[10:], to_h5(big, tmp_path / "X.h5")):
        reader = RowReader(source)
        payload = pickle.dumps(reader)
        assert len(payload) < 2_000  # the data is 576 kB
        np.testing.assert_array_equal(pickle.loads(payload)[5:9], reader[5:9])


# ---------------------------------------------------------------------------
# memory: a pass over a large memmap
# ---------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_pass_over_a_million_row_memmap_keeps_memory_bounded(tmp_path):
    n, d = 1_000_000, 64
    path = tmp_path / "big.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.RandomState(0)
    for start in range(0, n, 100_000):
        X[start:start + 100_000] = rng.normal(size=(100_000, d))
    X.flush()
    del X
    y = (np.load(path, mmap_mode="r")[:, 0] > 0).astype(np.int64)
    X_small, y_small = np.load(path, mmap_mode="r")[:2000], y[:2000]
    net = tiny_net(hidden=(16,), epochs=1).fit(np.asarray(X_small), y_small)
    data_bytes = n * d * 4  # 256 MB
    X = np.load(path, mmap_mode="r")
    with PeakMemory() as tracin:
        attr = TracInAttributor(FrozenEstimator(net), batch_size=4096).fit(X, y)
        scores = attr.score_groups(X_small, y_small)
    assert scores.shape == (n,)
    with PeakMemory() as grouping:
        grouper = GradKMeansGrouper(group_size=1024, estimator=FrozenEstimator(net),
                                    batch_size=4096, random_state=0).fit(X, y)
    assert grouper.n_groups_ == 977 and np.bincount(grouper.labels_).min() > 0
    # group size 1: scores, labels and dot products are O(n) (about 30 MB)
    assert tracin.growth < data_bytes / 4, tracin.growth
    assert grouping.growth < data_bytes / 4, grouping.growth
