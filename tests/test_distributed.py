"""Training-set passes split over Dask workers give the in-process results.

A ``LocalCluster`` of two single-threaded worker processes runs the passes
of TracIn (exact and projected), Fisher influence (batched and empirical),
TRAK and the K-Means groupers, with ``X`` as a Dask array and as a memmap
under ``joblib.parallel_config(backend="dask")``; the scores and labels must
equal those computed in this process, also when a worker dies mid-pass.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import sys

import joblib
import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from skggda import (GradKMeansGrouper, InfluenceAttributor, KMeansGrouper, RandomGrouper,
                    ReprKMeansGrouper, TracInAttributor, TRAKAttributor)
from skggda import _engine
from skggda.attribution._base import net_plan
from skggda.grouping import _kmeans
from skggda.utils import _distributed

from conftest import make_problem, tiny_net

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

N_ROWS = 3000


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        with distributed.Client(cluster) as client:
            yield client


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=N_ROWS, n_classes=3)
    X_test, y_test, _, _ = make_problem(n=100, n_classes=3, seed=1)
    return X, y, X_test, y_test


@pytest.fixture(scope="module")
def net(data):
    X, y, _, _ = data
    return tiny_net(epochs=2).fit(X, y)


@pytest.fixture(scope="module")
def memmaps(data, tmp_path_factory):
    X, y, _, _ = data
    folder = tmp_path_factory.mktemp("memmaps")
    return to_memmap(X, folder / "X.npy"), to_memmap(y, folder / "y.npy")


def to_memmap(array, path):
    np.save(path, array)
    return np.load(path, mmap_mode="r")


def run_on_cluster(client, make, mode, data, memmaps, score):
    """``score(make().fit(...))`` with the data as a Dask array or a memmap on the cluster.

    Also checks that the blocks ran on the workers.
    """
    X, y, _, _ = data
    with distributed.get_task_stream(client) as stream:
        if mode == "dask":
            X_d, y_d = da.from_array(X, chunks=(500, -1)), da.from_array(y, chunks=500)
            result = score(make().fit(X_d, y_d))
        else:
            with joblib.parallel_config(backend="dask"):
                result = score(make().set_params(n_jobs=2).fit(*memmaps))
    blocks = [task for task in stream.data if str(task["key"]).startswith("_run_block")]
    assert blocks, "no block of the pass ran on the workers"
    return result


def assert_close(actual, expected, rtol=1e-5):
    np.testing.assert_allclose(actual, expected, rtol=rtol,
                               atol=rtol * float(np.abs(expected).max()))


def attributors(net):
    frozen = FrozenEstimator(net)
    return {
        "tracin": lambda: TracInAttributor(frozen, grouper=RandomGrouper(group_size=16),
                                           random_state=0),
        "tracin-points": lambda: TracInAttributor(frozen, batch_size=256, random_state=0),
        "tracin-projected": lambda: TracInAttributor(
            frozen, grouper=RandomGrouper(group_size=16), n_components=24, random_state=0),
        "fisher-batched": lambda: InfluenceAttributor(
            frozen, grouper=RandomGrouper(group_size=16), n_components=24, damping=1e-2,
            fisher="batched", random_state=0),
        "fisher-empirical": lambda: InfluenceAttributor(
            frozen, grouper=RandomGrouper(group_size=16), n_components=24, damping=1e-2,
            fisher="empirical", random_state=0),
        "ekfac-stored": lambda: InfluenceAttributor(
            frozen, grouper=RandomGrouper(group_size=16), solver="ekfac", random_state=0),
        "ekfac-projected": lambda: InfluenceAttributor(
            frozen, grouper=RandomGrouper(group_size=16), solver="ekfac", n_components=24,
            random_state=0),
        "trak": lambda: TRAKAttributor(tiny_net(epochs=1, batch_size=256), n_models=2,
                                       n_components=24,
                                       grouper=RandomGrouper(group_size=16), random_state=0),
    }


@pytest.mark.parametrize("mode", ["dask", "memmap"])
@pytest.mark.parametrize("name", ["tracin", "tracin-points", "tracin-projected",
                                  "fisher-batched", "fisher-empirical", "trak"])
def test_attributors_give_the_in_process_scores(client, data, net, memmaps, mode, name):
    _, _, X_test, y_test = data
    make = attributors(net)[name]
    score = lambda attr: (attr.labels_, attr.score_groups(X_test, y_test))  # noqa: E731
    expected_labels, expected = score(make().fit(*data[:2]))
    labels, scores = run_on_cluster(client, make, mode, data, memmaps, score)
    np.testing.assert_array_equal(labels, expected_labels)
    assert_close(scores, expected)


def groupers(net):
    frozen = FrozenEstimator(net)
    return {
        "kmeans": lambda: KMeansGrouper(group_size=64, random_state=0),
        "repr": lambda: ReprKMeansGrouper(group_size=64, estimator=frozen, random_state=0),
        "grad": lambda: GradKMeansGrouper(group_size=64, estimator=frozen, random_state=0),
    }


@pytest.mark.parametrize("sampled", [False, True], ids=["all-rows", "sampled"])
@pytest.mark.parametrize("mode", ["dask", "memmap"])
@pytest.mark.parametrize("name", ["kmeans", "repr", "grad"])
def test_groupers_give_the_in_process_labels(client, data, net, memmaps, monkeypatch, mode,
                                             name, sampled):
    if sampled:  # centers fitted on a sample, then every row assigned in a second pass
        monkeypatch.setattr(_kmeans, "_MIN_SAMPLE", 1000)
        monkeypatch.setattr(_kmeans, "_SAMPLE_PER_GROUP", 8)
    X, y, X_test, y_test = data
    make = groupers(net)[name]
    score = lambda grouper: (grouper.labels_, grouper.inertia_,  # noqa: E731
                             grouper.predict(X_test, y_test))
    expected_labels, expected_inertia, expected_predicted = score(make().fit(X, y))
    labels, inertia, predicted = run_on_cluster(client, make, mode, data, memmaps, score)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(predicted, expected_predicted)
    assert inertia == pytest.approx(expected_inertia, rel=1e-5)


def test_attributor_lends_its_n_jobs_to_the_grouper(client, data, net, memmaps):
    X, y, X_test, y_test = data
    make = lambda: TracInAttributor(  # noqa: E731
        FrozenEstimator(net), grouper=GradKMeansGrouper(group_size=64), random_state=0)
    expected = make().fit(X, y)
    with joblib.parallel_config(backend="dask"):
        attr = make().set_params(n_jobs=2).fit(*memmaps)
        scores = attr.score_groups(X_test, y_test)
    assert attr.grouper_.n_jobs == 2
    np.testing.assert_array_equal(attr.labels_, expected.labels_)
    assert_close(scores, expected.score_groups(X_test, y_test))


# ---------------------------------------------------------------------------
# the pieces: when to distribute, state shipping, blocks and their sums
# ---------------------------------------------------------------------------


def test_passes_stay_in_process_without_a_dask_backend(client, data, memmaps):
    X, _, _, _ = data
    reader = _distributed.RowReader(memmaps[0])
    assert _distributed.cluster_for(X, n_jobs=2) is None  # default joblib backend
    assert _distributed.cluster_for(reader, n_jobs=None) is None
    with joblib.parallel_config(backend="dask"):
        assert _distributed.cluster_for(reader, n_jobs=None) is None
        assert _distributed.cluster_for(reader, n_jobs=1) is None
        assert _distributed.cluster_for(reader, n_jobs=2).client is client
    dask_reader = _distributed.RowReader(da.from_array(X, chunks=(500, -1)))
    assert _distributed.cluster_for(dask_reader).client is client


@pytest.mark.parametrize("kronecker", [False, True])
def test_projections_are_regenerated_from_the_seed(data, net, kronecker):
    X, y, _, _ = data
    plan = net_plan(net, X, "all")
    projector = _engine.Projector(plan, 24, seed=7, kronecker=kronecker)
    work = _distributed._PlanPass("projected", plan, 256, {"projector": projector})
    # a seed, not matrices
    assert work.__getstate__()["params"]["projector"] == (24, 7, kronecker)
    rebuilt = pickle.loads(pickle.dumps(work))
    labels = np.arange(len(y)) % 10
    (expected,) = work(X, y, labels, 10)
    (actual,) = rebuilt(X, y, labels, 10)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_block_partials_keep_only_the_groups_they_hold():
    ids, local = _distributed._local_groups(np.array([7, 5, 7, 9], dtype=np.int8))
    np.testing.assert_array_equal(ids, [5, 7, 9])
    np.testing.assert_array_equal(local, [1, 0, 1, 2])
    ids, local = _distributed._local_groups(np.array([10**6, 3, 3]))  # sparse: sorted ids
    np.testing.assert_array_equal(ids, [3, 10**6])
    np.testing.assert_array_equal(local, [1, 0, 0])


def test_partials_add_up_on_the_union_of_their_groups():
    Partial = _distributed.Partial
    a = Partial(ids=np.array([1, 4]), groups=np.array([[1.0], [2.0]]), totals=[np.eye(2)])
    b = Partial(ids=np.array([0, 4]), groups=np.array([[3.0], [5.0]]), totals=[np.eye(2)])
    total = _distributed._combine(a, b)
    np.testing.assert_array_equal(total.ids, [0, 1, 4])
    np.testing.assert_array_equal(total.groups, [[3.0], [1.0], [7.0]])
    np.testing.assert_array_equal(total.totals[0], 2 * np.eye(2))


def test_deep_reduction_trees_give_the_same_sums(client, data, net, monkeypatch):
    X, y, X_test, y_test = data
    make = attributors(net)["tracin"]
    expected = make().fit(X, y).score_groups(X_test, y_test)
    monkeypatch.setattr(_distributed, "SPLIT_EVERY", 2)
    attr = make().fit(da.from_array(X, chunks=(100, -1)), y)  # 30 blocks: five levels
    assert_close(attr.score_groups(X_test, y_test), expected)


def test_blocks_follow_the_batches_of_the_in_process_pass():
    edges = _distributed._block_edges(1_000_000, 2, align=65_536)  # 16 batches, one partial
    np.testing.assert_array_equal(edges, [*range(0, 1_000_000, 65_536), 1_000_000])
    edges = _distributed._block_edges(10_000_000, 2, align=65_536)  # 153 batches in 16 blocks
    assert len(edges) == 17 and np.all(edges[1:-1] % 65_536 == 0)
    assert set(np.diff(edges[:-1]) // 65_536) == {9, 10}
    np.testing.assert_array_equal(_distributed._block_edges(3000, 2, align=65_536),
                                  [0, 1500, 3000])  # one batch: cut anywhere
    np.testing.assert_array_equal(_distributed._block_edges(500, 8, align=None), [0, 500])


def test_missing_dask_raises_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ImportError, match=r"pip install 'skggda\[dask\]'"):
        _distributed._import_dask()


# ---------------------------------------------------------------------------
# a worker dies mid-pass
# ---------------------------------------------------------------------------


class DieOnce(torch.nn.Module):
    """The identity, except that it kills the first Dask worker process it runs in.

    A marker file remembers the death, so the retried block runs normally.
    """

    def __init__(self, marker):
        super().__init__()
        self.marker = str(marker)

    def forward(self, x):
        if _in_dask_worker() and not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            os._exit(1)  # as a crash or an out-of-memory kill would
        return x


def _in_dask_worker():
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def test_a_killed_worker_does_not_change_the_scores(client, data, net, memmaps, tmp_path):
    _, _, X_test, y_test = data
    marker = tmp_path / "worker-killed"
    dying = copy.deepcopy(net)
    dying.module_ = torch.nn.Sequential(DieOnce(marker), dying.module_)
    make = lambda: TracInAttributor(FrozenEstimator(dying),  # noqa: E731
                                    grouper=RandomGrouper(group_size=16), random_state=0)
    expected = make().fit(*data[:2]).score_groups(X_test, y_test)
    with joblib.parallel_config(backend="dask"):
        scores = make().set_params(n_jobs=2).fit(*memmaps).score_groups(X_test, y_test)
    assert marker.exists(), "no worker was killed"
    assert_close(scores, expected)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


@pytest.mark.parametrize("mode", ["dask", "memmap"])
@pytest.mark.parametrize("name", ["tracin", "ekfac-stored", "ekfac-projected"])
def test_group_stores_are_built_on_the_workers(client, data, net, memmaps, mode, name):
    """The store of group gradients (exact or projected) comes from the workers' passes and
    equals the in-process one; attribute is then a product, as in process."""
    _, _, X_test, y_test = data
    make = attributors(net)[name]
    expected = make().fit(*data[:2])

    def stored(attr):
        store = attr._group_features or attr._group_store if name == "tracin" \
            else attr._group_store
        assert store is not None
        return (store[0] if isinstance(store, list) else store), attr.attribute(X_test, y_test)

    store, rows = run_on_cluster(client, make, mode, data, memmaps, stored)
    expected_store, expected_rows = stored(expected)
    assert_close(store, expected_store)
    assert_close(rows, expected_rows)
