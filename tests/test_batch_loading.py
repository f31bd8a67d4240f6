"""Batches read whole (issue 23, "GPU readiness": skorch fetched training rows one at
a time): one fancy index per batch, the same batches in the same order as skorch's
per-row path, hence the same weights and outputs, and skorch's own path whenever
the configuration or the data asks for something the batched path cannot reproduce."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from skorch.dataset import Dataset, ValidSplit
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from skggda.models import SeededNeuralNetClassifier, make_classifier, make_regressor
from skggda.models import _batch_loading
from skggda.models._batch_loading import BatchView

from conftest import make_problem


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=100, n_features=5, n_classes=3, seed=7)
    return X, y


def per_row(net):
    """A copy of ``net`` that takes skorch's per-row path."""
    twin = copy.deepcopy(net)
    twin._batch_loading = False
    return twin


def assert_same_weights(a, b):
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def assert_same_batches(fast, slow):
    """Batch lists equal in structure, dtype, shape, values and C order."""
    assert len(fast) == len(slow)
    for batch_fast, batch_slow in zip(fast, slow):
        assert type(batch_fast) is type(batch_slow) is list
        for a, b in zip(batch_fast, batch_slow):
            if isinstance(b, dict):
                assert isinstance(a, dict) and list(a) == list(b)
                pairs = [(a[key], b[key]) for key in b]
            else:
                pairs = [(a, b)]
            for u, v in pairs:
                assert u.dtype == v.dtype and u.shape == v.shape
                assert u.is_contiguous() and torch.equal(u, v)


def loaders(net, dataset, training):
    fast = net.get_iterator(dataset, training=training)
    slow = per_row(net).get_iterator(dataset, training=training)
    assert isinstance(fast.dataset, BatchView)
    assert not isinstance(slow.dataset, BatchView)
    return fast, slow


@pytest.fixture
def counted(monkeypatch):
    """Counts of ``BatchView`` reads and of skorch's per-row reads, and the batch sizes."""
    counts = {"batches": 0, "rows": 0, "sizes": [], "views": []}
    view_getitem, row_getitem = BatchView.__getitem__, Dataset.__getitem__

    def batch_read(self, batch):
        counts["batches"] += 1
        counts["sizes"].append(len(batch))
        counts["views"].append(self)
        return view_getitem(self, batch)

    def row_read(self, i):
        counts["rows"] += 1
        return row_getitem(self, i)

    monkeypatch.setattr(BatchView, "__getitem__", batch_read)
    monkeypatch.setattr(Dataset, "__getitem__", row_read)
    return counts


# -- one read per batch ------------------------------------------------------------------


def test_training_reads_the_data_once_per_batch_not_once_per_row(data, counted):
    X, y = data
    epochs, batch_size = 3, 32
    make_classifier((4,), max_epochs=epochs, batch_size=batch_size, random_state=0).fit(X, y)
    per_epoch = math.ceil(len(X) / batch_size)  # 32, 32, 32 and the partial 4
    assert counted["batches"] == epochs * per_epoch
    assert counted["sizes"] == epochs * [32, 32, 32, 4]
    assert counted["rows"] == 0


def test_the_per_row_path_reads_every_row(data, counted):
    X, y = data
    per_row(make_classifier((4,), max_epochs=2, batch_size=32, random_state=0)).fit(X, y)
    assert counted["batches"] == 0 and counted["rows"] == 2 * len(X)


def test_prediction_reads_once_per_batch(data, counted):
    X, y = data
    net = make_classifier((4,), max_epochs=1, batch_size=32, random_state=0).fit(X, y)
    counted.update(batches=0, sizes=[])
    net.predict_proba(X)
    assert counted["sizes"] == [32, 32, 32, 4] and counted["rows"] == 0


# -- the same batches as skorch's collation ------------------------------------------------


DTYPES = ["bool", "int8", "uint8", "int16", "int32", "int64", "float16", "float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(10,), (10, 3), (10, 2, 3)])
def test_batches_equal_skorch_collation_for_every_dtype_and_shape(dtype, shape):
    X = (np.random.RandomState(0).normal(size=shape) * 3).astype(dtype)
    net = make_classifier((4,), batch_size=4)
    assert_same_batches(*map(list, loaders(net, Dataset(X, None), training=False)))


@pytest.mark.parametrize("y", [
    None,
    np.arange(10, dtype=np.int64),
    np.linspace(0, 1, 10, dtype=np.float32),
    np.linspace(0, 1, 20).reshape(10, 2),
    torch.arange(10),
], ids=["placeholder", "int64", "float32", "2d", "tensor"])
@pytest.mark.parametrize("X", [
    np.arange(30, dtype=np.float32).reshape(10, 3),
    np.asfortranarray(np.arange(30, dtype=np.float64).reshape(10, 3)),
    np.arange(60, dtype=np.float32).reshape(10, 2, 3).transpose(0, 2, 1),
    torch.arange(30.0).reshape(10, 3),
    {"a": np.arange(10, dtype=np.int64), "b": torch.ones(10, 2)},
], ids=["float32", "fortran", "transposed", "tensor", "dict"])
def test_batches_equal_skorch_collation_for_inputs_and_targets(X, y):
    net = make_classifier((4,), batch_size=4)
    assert_same_batches(*map(list, loaders(net, Dataset(X, y), training=False)))


def test_a_subset_and_a_drawn_order_give_the_same_batches():
    X = np.arange(60, dtype=np.float32).reshape(20, 3)
    dataset = Subset(Dataset(X, np.arange(20)), np.array([3, 1, 4, 15, 9, 2, 6, 5, 13]))
    net = make_classifier((4,), batch_size=4, iterator_train__drop_last=True)
    fast, slow = loaders(net, dataset, training=True)
    torch.manual_seed(11)
    batches_fast, after_fast = list(fast), torch.rand(3)
    torch.manual_seed(11)
    batches_slow, after_slow = list(slow), torch.rand(3)
    assert_same_batches(batches_fast, batches_slow)
    assert len(batches_fast) == 2  # drop_last: 9 rows give two batches of 4
    assert torch.equal(after_fast, after_slow)  # the draws consumed the global RNG alike


def test_a_given_generator_draws_the_order():
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    batches = []
    for batch_loading in (True, False):
        net = make_classifier((4,), batch_size=6,
                              iterator_train__generator=torch.Generator().manual_seed(3))
        net._batch_loading = batch_loading
        batches.append(list(net.get_iterator(Dataset(X, np.arange(20)), training=True)))
    assert_same_batches(*batches)
    assert not torch.equal(batches[0][0][1], torch.arange(6))  # shuffled


# -- training and prediction identical to skorch's path ------------------------------------


@pytest.mark.parametrize("options", [
    dict(batch_size=32),
    dict(batch_size=32, iterator_train__drop_last=True),
    dict(batch_size=-1),
    dict(batch_size=16, train_split=ValidSplit(4)),
    dict(batch_size=25, iterator_train__shuffle=False),
], ids=["partial-batch", "drop-last", "full-batch", "valid-split", "unshuffled"])
def test_training_gives_bit_identical_weights(data, options):
    X, y = data
    net = make_classifier((8,), max_epochs=3, lr=1e-2, random_state=0).set_params(**options)
    slow = per_row(net)
    net.fit(X, y)
    slow.fit(X, y)
    assert_same_weights(net, slow)
    assert net.history[:, "train_loss"] == slow.history[:, "train_loss"]
    if "train_split" in options:
        assert net.history[:, "valid_loss"] == slow.history[:, "valid_loss"]
    assert np.array_equal(net.predict_proba(X), per_row(net).predict_proba(X))


def test_training_without_a_seed_draws_from_the_global_rng_alike(data):
    X, y = data
    nets = []
    for batch_loading in (True, False):
        torch.manual_seed(5)
        net = make_classifier((8,), max_epochs=2, batch_size=16)
        net._batch_loading = batch_loading
        nets.append(net.fit(X, y))
        nets.append(torch.rand(2))  # the generator is left alike too
    assert_same_weights(nets[0], nets[2])
    assert torch.equal(nets[1], nets[3])


def test_float64_inputs_and_2d_regression_targets(data):
    X, _ = data
    X = X.astype(np.float64)
    Y = np.stack([X[:, 0] - X[:, 1], X[:, 2]], axis=1)
    net = make_regressor((8,), max_epochs=3, batch_size=16, random_state=0)
    slow = per_row(net)
    assert_same_weights(net.fit(X, Y), slow.fit(X, Y))
    assert np.array_equal(net.predict(X), per_row(net).predict(X))
    assert np.array_equal(net.forward(X).numpy(), per_row(net).forward(X).numpy())


class TokenBag(nn.Sequential):
    """Mean of token embeddings: takes int64 token ids, as the text classifier does."""

    def __init__(self, n_classes=3, vocabulary=50):
        super().__init__(nn.EmbeddingBag(vocabulary, 6), nn.Linear(6, n_classes))


class TwoInputs(nn.Module):
    """A module of two named inputs, which skorch passes from a dict."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(5, 3)
        self.embed = nn.Embedding(7, 3)

    def forward(self, dense, ids):
        return self.dense(dense) + self.embed(ids)


@pytest.mark.parametrize("case", ["tokens", "token-tensor", "dict"])
def test_token_ids_and_dict_inputs(data, case):
    X, y = data
    rng = np.random.RandomState(0)
    if case == "dict":
        module, X = TwoInputs, {"dense": X, "ids": rng.randint(7, size=len(X))}
    else:
        module, X = TokenBag, rng.randint(50, size=(len(X), 12)).astype(np.int64)
        if case == "token-tensor":
            X = torch.as_tensor(X)
    net = SeededNeuralNetClassifier(module, criterion=nn.CrossEntropyLoss, max_epochs=2,
                                    batch_size=16, train_split=None, verbose=0,
                                    iterator_train__shuffle=True, random_state=0)
    slow = per_row(net)
    assert_same_weights(net.fit(X, y), slow.fit(X, y))
    assert np.array_equal(net.predict_proba(X), per_row(net).predict_proba(X))


def test_a_memmap_is_sliced_per_batch_not_copied(data, tmp_path, counted):
    X, y = data
    stored = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=X.dtype,
                                       shape=X.shape)
    stored[:] = X
    stored.flush()
    X_map = np.load(tmp_path / "X.npy", mmap_mode="r")  # read-only
    net = make_classifier((8,), max_epochs=2, batch_size=16, random_state=0)
    slow = per_row(net)
    net.fit(X_map, y)
    assert counted["views"] and all(view.X is X_map for view in counted["views"])
    counted["views"].clear()
    proba = net.predict_proba(X_map)
    assert counted["views"] and all(view.X is X_map for view in counted["views"])
    # and the same weights and outputs as skorch's path on the array in memory
    assert_same_weights(net, slow.fit(X, y))
    assert np.array_equal(proba, per_row(net).predict_proba(X))


def test_loaders_pin_batches_only_for_cuda(monkeypatch):
    dataset = Dataset(np.zeros((8, 2), dtype=np.float32), np.zeros(8, dtype=np.int64))
    net = make_classifier((4,), batch_size=4)
    assert not net.get_iterator(dataset, training=True).pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    net.set_params(device="cuda")
    for training in (True, False):
        loader = net.get_iterator(dataset, training=training)
        assert isinstance(loader.dataset, BatchView) and loader.pin_memory
    net.set_params(iterator_train__pin_memory=False)
    assert not net.get_iterator(dataset, training=True).pin_memory


def test_worker_processes_load_whole_batches(data):
    X, y = data
    net = make_classifier((4,), max_epochs=1, batch_size=32, random_state=0,
                          iterator_valid__num_workers=1).fit(X, y)
    assert isinstance(net.get_iterator(Dataset(X), training=False).dataset, BatchView)
    assert np.array_equal(net.predict_proba(X), per_row(net).predict_proba(X))


# -- skorch's own path for what the batched path cannot reproduce --------------------------


class RowLoader(DataLoader):
    """A user's iterator class (here just torch's)."""


class ScaledDataset(Dataset):
    """A user's skorch Dataset that transforms rows."""

    def transform(self, X, y):
        return X * 2, y


def _collate(rows):
    return torch.utils.data.default_collate(rows)


def _per_row_sampler():
    return torch.utils.data.SequentialSampler(range(100))


FALLBACKS = {
    "iterator-class": dict(iterator_train=RowLoader, iterator_valid=RowLoader),
    "sampler": dict(iterator_train__sampler=_per_row_sampler(), iterator_train__shuffle=False),
    "collate-fn": dict(iterator_train__collate_fn=_collate, iterator_valid__collate_fn=_collate),
    "batch-sampler": dict(
        iterator_train__batch_sampler=torch.utils.data.BatchSampler(_per_row_sampler(), 32, False),
        iterator_train__batch_size=1, iterator_train__shuffle=False),
    "dataset-class": dict(dataset=ScaledDataset),
}


@pytest.mark.parametrize("case", list(FALLBACKS))
def test_configurations_the_batched_path_cannot_reproduce_use_skorchs(data, case, counted):
    X, y = data
    net = make_classifier((4,), max_epochs=1, batch_size=32, random_state=0)
    net.set_params(**FALLBACKS[case]).fit(X, y)
    assert counted["batches"] == 0 and counted["rows"] == len(X)
    if case != "dataset-class":
        # a per-row twin trains alike: nothing of the configuration was lost
        assert_same_weights(net, per_row(net).fit(X, y))


@pytest.mark.parametrize("case", ["dataset", "list", "object", "uint64", "series-y"])
def test_data_the_batched_path_cannot_reproduce_uses_skorchs(data, case, counted):
    X, y = data
    net = make_classifier((4,), max_epochs=1, batch_size=32, random_state=0)
    if case == "dataset":
        X, y = TensorDataset(torch.as_tensor(X), torch.as_tensor(y)), None
        net.set_params(module__n_classes=3)
    elif case == "list":
        X = [X[:, :2], X[:, 2:4]]
        net = SeededNeuralNetClassifier(ListInputs, criterion=nn.CrossEntropyLoss,
                                        max_epochs=1, batch_size=32, train_split=None,
                                        verbose=0, random_state=0)
    else:
        dataset = Dataset(X.astype(object) if case == "object"
                          else X.astype(np.uint64) if case == "uint64" else X,
                          pd.Series(y) if case == "series-y" else y)
        assert _batch_loading.batch_view(dataset) is None
        assert not isinstance(net.get_iterator(dataset).dataset, BatchView)
        return
    net.fit(X, y)
    assert counted["batches"] == 0
    assert counted["rows"] == (0 if case == "dataset" else len(y))
    assert_same_weights(net, per_row(net).fit(X, y))


class ListInputs(nn.Module):
    """Two inputs from a list of arrays."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 3), nn.Linear(2, 3)

    def forward(self, X):
        a, b = X
        return self.a(a) + self.b(b)


def test_only_dense_arrays_and_tensors_of_rows_are_sliced():
    assert _batch_loading.batchable_array(torch.zeros(4, 2))
    assert not _batch_loading.batchable_array(torch.zeros(4, 2).to_sparse())
    assert not _batch_loading.batchable_array(torch.zeros(4, 2, device="meta"))
    assert not _batch_loading.batchable_array(np.float32(1.0))
    assert not _batch_loading.batchable_array(torch.tensor(1.0))
    assert not _batch_loading.batchable_array([1.0, 2.0])


def test_only_dicts_of_sliceable_arrays_are_sliced():
    rows = np.zeros((10, 2), dtype=np.float32)
    assert isinstance(_batch_loading.batch_view(Dataset({"a": rows}, None)), BatchView)
    for other in (rows.astype(object), rows.astype(np.uint64)):
        assert _batch_loading.batch_view(Dataset({"a": rows, "b": other}, None)) is None


def test_a_dataset_given_another_length_uses_skorchs_path():
    X = np.zeros((10, 2), dtype=np.float32)
    assert _batch_loading.batch_view(Dataset(X, None, length=5)) is None
    assert isinstance(_batch_loading.batch_view(Dataset(X, None)), BatchView)


def test_a_read_only_memmap_is_copied_for_skorchs_path(data, tmp_path):
    X, y = data
    np.save(tmp_path / "X.npy", X)
    X_map = np.load(tmp_path / "X.npy", mmap_mode="r")
    net = make_classifier((4,), iterator_train__collate_fn=_collate)
    # skorch hands each row to torch, which wants writable memory
    copied = net._inputs(X_map, True)
    assert copied is not X_map and copied.flags.writeable and copied.base is None
    assert make_classifier((4,))._inputs(X_map, True) is X_map
