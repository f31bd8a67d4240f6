"""The group store (issue 20): methods with a fixed curvature keep every group's
preconditioned gradient after fit, so that attribute is a product and no pass over the
training data; top_groups reads the extremes of attribute block by block."""

from __future__ import annotations

import numpy as np
import pytest

from skggda import InfluenceAttributor, KMeansGrouper, TracInAttributor
from skggda import _engine
from skggda.attribution import _base, _store, _tracin

from conftest import make_problem, tiny_net

STORED = {
    "tracin": lambda: TracInAttributor(tiny_net(hidden=(5,), epochs=2), random_state=0),
    "tracin-all": lambda: TracInAttributor(tiny_net(hidden=(5,), epochs=2), checkpoints="all",
                                           random_state=0),
    "exact": lambda: InfluenceAttributor(tiny_net(hidden=(5,), epochs=2), solver="exact",
                                         random_state=0),
    "kfac": lambda: InfluenceAttributor(tiny_net(hidden=(5,), epochs=2), solver="kfac",
                                        random_state=0),
    "ekfac": lambda: InfluenceAttributor(tiny_net(hidden=(5,), epochs=2), solver="ekfac",
                                         grouper=KMeansGrouper(group_size=6), random_state=0),
}


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=60, n_features=4, n_classes=3, seed=1)
    X_test, y_test, _, _ = make_problem(n=12, n_features=4, n_classes=3, seed=2)
    return X, y, X_test, y_test


def streamed(attributor, X, y):
    """What attribute and score_groups give without the store (a pass per call)."""
    saved = attributor._group_store
    attributor._group_store = None
    try:
        return attributor.attribute(X, y), attributor.score_groups(X, y)
    finally:
        attributor._group_store = saved


@pytest.mark.parametrize("make", STORED.values(), ids=STORED.keys())
def test_stored_and_streamed_attributions_are_equal(data, make):
    X, y, X_test, y_test = data
    attributor = make().fit(X, y)
    assert attributor._group_store is not None
    rows, scores = streamed(attributor, X_test, y_test)
    np.testing.assert_allclose(attributor.attribute(X_test, y_test), rows, rtol=1e-5,
                               atol=1e-5 * np.abs(rows).max())
    np.testing.assert_allclose(attributor.score_groups(X_test, y_test), scores, rtol=1e-5,
                               atol=1e-6 * np.abs(scores).max())


@pytest.mark.parametrize("name", ["tracin", "ekfac"])
def test_attribute_with_a_store_makes_no_training_pass(data, monkeypatch, name):
    X, y, X_test, y_test = data
    attributor = STORED[name]().fit(X, y)

    def refuse(*args, **kwargs):
        raise AssertionError("a pass over the training data")

    for module in (_base, _tracin):  # where the passes over the training data start
        monkeypatch.setattr(module, "training_pass", refuse)
    monkeypatch.setattr(_engine, "group_gradients", refuse)
    monkeypatch.setattr(type(attributor), "_group_gradient_blocks", refuse)
    assert attributor.attribute(X_test, y_test).shape == (len(y_test), attributor.n_groups_)
    attributor.top_groups(X_test, y_test, n=2)
    attributor.self_influence()


def test_damping_set_after_fit_is_used_with_a_store(data):
    """The store holds raw group gradients and the queries are preconditioned when
    scored: a damping set after fit re-solves, as it does without a store."""
    X, y, X_test, y_test = data
    attributor = STORED["ekfac"]().fit(X, y)
    before = attributor.attribute(X_test, y_test)
    attributor.set_params(damping=0.5)
    refitted = STORED["ekfac"]().set_params(damping=0.5).fit(X, y)
    assert not np.allclose(before, refitted.attribute(X_test, y_test))
    for method, args in [("attribute", (X_test, y_test)), ("score_groups", (X_test, y_test)),
                         ("self_influence", ())]:
        np.testing.assert_allclose(getattr(attributor, method)(*args),
                                   getattr(refitted, method)(*args), rtol=1e-6, atol=1e-9)


def test_a_store_above_the_budget_is_not_kept_and_attribute_streams(data, monkeypatch):
    X, y, X_test, y_test = data
    full = STORED["ekfac"]().fit(X, y)
    monkeypatch.setattr(_store, "STORE_BYTES", full._group_store.nbytes - 1)
    small = STORED["ekfac"]().fit(X, y)
    assert small._group_store is None
    np.testing.assert_allclose(small.attribute(X_test, y_test), full.attribute(X_test, y_test),
                               rtol=1e-5, atol=1e-7)


def test_top_groups_agrees_with_an_argsort_of_attribute(data, monkeypatch):
    X, y, X_test, y_test = data
    attributor = STORED["exact"]().fit(X, y)
    rows = attributor.attribute(X_test, y_test)
    monkeypatch.setattr(_store, "QUERY_BLOCK_BYTES", 4 * attributor.n_groups_ * 5)  # blocks of 5
    top = attributor.top_groups(X_test, y_test, n=4)
    order = np.argsort(-rows, axis=1, kind="stable")
    # blocks of 5 queries (and of store rows) round their products differently
    close = dict(rtol=1e-6, atol=1e-6 * np.abs(rows).max())
    np.testing.assert_array_equal(top.helpful_indices, order[:, :4])
    np.testing.assert_array_equal(top.harmful_indices, order[:, ::-1][:, :4])
    np.testing.assert_allclose(top.helpful_scores, np.take_along_axis(rows, order[:, :4], 1),
                               **close)
    np.testing.assert_allclose(top.harmful_scores,
                               np.take_along_axis(rows, order[:, ::-1][:, :4], 1), **close)
    assert top.helpful_indices.shape == top.harmful_indices.shape == (len(y_test), 4)


def test_top_groups_without_labels_explains_the_predictions(data):
    X, y, X_test, _ = data
    attributor = STORED["kfac"]().fit(X, y)
    predicted = attributor.estimator_.predict(X_test)
    top = attributor.top_groups(X_test, n=3)
    expected = attributor.top_groups(X_test, attributor.classes_[predicted], n=3)
    np.testing.assert_array_equal(top.helpful_indices, expected.helpful_indices)
    with pytest.raises(ValueError, match="n must be an integer"):
        attributor.top_groups(X_test, n=attributor.n_groups_ + 1)


def test_a_fitted_store_round_trips_through_io(data, tmp_path):
    from skggda.io import load, save

    X, y, X_test, y_test = data
    attributor = STORED["ekfac"]().fit(X, y)
    save(attributor, tmp_path / "ekfac.skggda")
    loaded = load(tmp_path / "ekfac.skggda")
    np.testing.assert_array_equal(loaded._group_store, attributor._group_store)
    np.testing.assert_array_equal(loaded.top_groups(X_test, y_test, n=3).helpful_indices,
                                  attributor.top_groups(X_test, y_test, n=3).helpful_indices)


@pytest.mark.parametrize("n", [1, 3, 7])
def test_extremes_are_those_of_a_full_sort(n):
    # wide rows: numpy sorts short ones whole, which would hide a wrong partition index
    rows = np.random.RandomState(n).permutation(20 * 5000).reshape(20, 5000).astype(np.float32)
    top = _store.extremes(rows, n)
    order = np.argsort(-rows, axis=1)
    np.testing.assert_array_equal(top["helpful_indices"], order[:, :n])
    np.testing.assert_array_equal(top["harmful_indices"], order[:, ::-1][:, :n])
    np.testing.assert_array_equal(top["harmful_scores"],
                                  np.take_along_axis(rows, order[:, ::-1][:, :n], 1))


def test_the_budget_keeps_a_store_of_exactly_its_size(data, monkeypatch):
    X, y, _, _ = data
    full = STORED["ekfac"]().fit(X, y)
    monkeypatch.setattr(_store, "STORE_BYTES", full._group_store.nbytes)
    assert STORED["ekfac"]().fit(X, y)._group_store is not None


def test_tracin_budgets_every_checkpoint_of_its_store(data, monkeypatch):
    """checkpoints="all" keeps one store per checkpoint: the budget counts them all."""
    X, y, _, _ = data
    full = STORED["tracin-all"]().fit(X, y)
    total = sum(store.nbytes for store in full._group_store)
    assert len(full._group_store) > 1
    monkeypatch.setattr(_store, "STORE_BYTES", total - 1)
    assert STORED["tracin-all"]().fit(X, y)._group_store is None
    monkeypatch.setattr(_store, "STORE_BYTES", total)
    assert STORED["tracin-all"]().fit(X, y)._group_store is not None


def test_a_projected_store_written_in_many_blocks_is_the_same(data, monkeypatch):
    X, y, _, _ = data
    make = lambda: InfluenceAttributor(tiny_net(hidden=(5,), epochs=2), solver="ekfac",  # noqa: E731
                                       n_components=12, random_state=0)
    whole = make().fit(X, y)._group_store
    monkeypatch.setattr(_store, "QUERY_BLOCK_BYTES", 4 * whole.shape[1] * 7)  # 7 rows a block
    blocks = make().fit(X, y)._group_store
    assert blocks.dtype == np.float32  # the net's dtype
    np.testing.assert_array_equal(blocks, whole)
