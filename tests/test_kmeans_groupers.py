"""K-Means, Repr-K-Means and Grad-K-Means groupers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn
from torch.nn import functional as F

from skggda import (GradKMeansGrouper, InfluenceAttributor, KMeansGrouper, RandomGrouper,
                    ReprKMeansGrouper, TracInAttributor, TRAKAttributor)
from skggda._engine import _features

from conftest import make_problem, tiny_net

GROUPERS = [KMeansGrouper, ReprKMeansGrouper, GradKMeansGrouper, RandomGrouper]


def make(cls, **params):
    if cls in (ReprKMeansGrouper, GradKMeansGrouper):
        params.setdefault("estimator", tiny_net())
    return cls(random_state=0, **params)


@pytest.mark.parametrize("cls", GROUPERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("group_size", [1, 5, 64])
def test_labels_are_a_partition(problem, cls, group_size):
    X, y, _, _ = problem
    grouper = make(cls, group_size=group_size).fit(X, y)
    k = int(np.ceil(len(y) / group_size))
    assert grouper.n_groups_ == k
    assert grouper.labels_.shape == (len(y),)
    assert set(np.unique(grouper.labels_)) == set(range(k))


@pytest.mark.parametrize("cls", GROUPERS[:3], ids=lambda c: c.__name__)
def test_deterministic_given_random_state(problem, cls):
    X, y, _, _ = problem
    a = make(cls, group_size=10).fit(X, y)
    b = make(cls, group_size=10).fit(X, y)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_)


@pytest.mark.parametrize("cls", GROUPERS[:3], ids=lambda c: c.__name__)
def test_predict_and_transform_follow_the_centers(problem, cls):
    X, y, _, _ = problem
    grouper = make(cls, group_size=20).fit(X, y)
    distances = grouper.transform(X, y)
    assert distances.shape == (len(y), grouper.n_groups_)
    np.testing.assert_array_equal(grouper.predict(X, y), distances.argmin(1))
    # at convergence nearly every training point sits nearest to its own center
    assert (grouper.predict(X, y) == grouper.labels_).mean() > 0.9


@pytest.mark.parametrize("cls", GROUPERS[:3], ids=lambda c: c.__name__)
def test_fit_transform_is_fit_then_transform(problem, cls):
    # to the last bit: Grad-K-Means reads transform(X) at the net's predictions
    X, y, _, _ = problem
    expected = make(cls, group_size=20).fit(X, y).transform(X)
    np.testing.assert_array_equal(make(cls, group_size=20).fit_transform(X, y), expected)


@pytest.mark.parametrize("cls", GROUPERS[:3], ids=lambda c: c.__name__)
def test_fit_transform_validates_parameters_as_fit_does(problem, cls):
    X, y, _, _ = problem
    with pytest.raises(InvalidParameterError, match="max_iter"):
        make(cls, max_iter=0).fit_transform(X, y)


def clustered(n, seed):
    """Points around 40 fixed cluster means in 8-D; ``seed`` draws the points."""
    means = np.random.RandomState(0).normal(scale=4, size=(40, 8))
    rng = np.random.RandomState(seed)
    return (means[rng.randint(40, size=n)] + rng.normal(size=(n, 8))).astype(np.float32)


def agreement(grouper, labels, X):
    """Share of rows whose label is their nearest center by brute force (all distances)."""
    return np.mean(labels == grouper.transform(X).argmin(1))


def test_predict_above_256_groups_finds_the_nearest_center():
    # above 256 groups predict searches an approximate index of candidate
    # centers; transform compares every center: they must nearly always agree
    X = clustered(3000, seed=1)
    grouper = KMeansGrouper(n_groups=300, random_state=0).fit(X)
    assert grouper._index_state is not None  # the index, not the exact search
    for data in (X, clustered(2000, seed=2)):
        assert agreement(grouper, grouper.predict(data), data) >= 0.99


@pytest.mark.parametrize("n_features", [6, 50])
def test_predict_above_256_groups_finds_the_nearest_center_without_clusters(n_features):
    # unstructured Gaussian data is the hard case for a cell index: the number of
    # cells probed is calibrated for it (6-d), or the index compares with every
    # center when probing enough cells would cost as much (50-d)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(4000, n_features)).astype(np.float32)
    grouper = KMeansGrouper(n_groups=600, random_state=0).fit(X)
    new = rng.normal(size=(4000, n_features)).astype(np.float32)
    assert agreement(grouper, grouper.predict(new), new) >= 0.99


def test_sampled_fit_assigns_every_row_to_its_nearest_center(monkeypatch):
    # a fit on more rows than its sample assigns the rest through the index;
    # shrink the sample so that 3,000 rows take that path
    from skggda.grouping import _kmeans as module

    monkeypatch.setattr(module, "_MIN_SAMPLE", 1000)
    monkeypatch.setattr(module, "_SAMPLE_PER_GROUP", 4)
    X = clustered(3000, seed=1)
    assert module.fit_sample(len(X), 300, 0) is not None
    grouper = KMeansGrouper(n_groups=300, random_state=0).fit(X)
    assert grouper._index_state is not None
    # only the rows moved into otherwise empty groups may differ
    assert agreement(grouper, grouper.labels_, X) >= 0.99
    assert grouper.inertia_ == pytest.approx(np.sum(grouper.transform(X)[
        np.arange(len(X)), grouper.labels_].astype(np.float64) ** 2), rel=1e-3)


def test_kmeans_grouper_centers_in_input_space():
    X = np.r_[np.full((10, 2), 5.0), np.full((10, 2), -5.0)]
    grouper = KMeansGrouper(n_groups=2, random_state=0).fit(X)
    np.testing.assert_allclose(np.sort(grouper.cluster_centers_[:, 0]), [-5.0, 5.0])


def test_closed_form_preactivation_gradients_equal_autograd(fitted_net, problem):
    X, y, _, _ = problem
    module = fitted_net.module_
    head = module.head
    h = module.body(torch.as_tensor(X)).detach().requires_grad_(True)
    loss = F.cross_entropy(head(h), torch.as_tensor(y), reduction="sum")
    (expected,) = torch.autograd.grad(loss, h)
    closed = _features.closed_form_preactivation_gradients(
        head, head(h).detach(), torch.as_tensor(y))
    torch.testing.assert_close(closed, expected, rtol=1e-5, atol=1e-6)
    via_engine = _features.preactivation_gradients(
        module, lambda o, t: F.cross_entropy(o, t, reduction="none"), X, y,
        softmax_cross_entropy=False)
    torch.testing.assert_close(via_engine, expected, rtol=1e-5, atol=1e-6)


def test_autograd_fallback_for_a_nonlinear_head_output():
    class TemperatureNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.head(torch.tanh(self.body(x))) / 2.0  # head output is not the output

    torch.manual_seed(0)
    module = TemperatureNet()
    X, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 1, 0])
    loss_fn = lambda o, t: F.cross_entropy(o, t, reduction="none")  # noqa: E731
    got = _features.preactivation_gradients(module, loss_fn, X, y, softmax_cross_entropy=True)
    h = torch.tanh(module.body(X)).detach().requires_grad_(True)
    (expected,) = torch.autograd.grad(loss_fn(module.head(h) / 2.0, y).sum(), h)
    torch.testing.assert_close(got, expected)


def group_purity(labels, flipped):
    """Size-weighted mean over groups of the majority share (flipped vs clean)."""
    sizes = np.bincount(labels)
    noisy = np.bincount(labels, weights=flipped)
    return float(np.maximum(noisy, sizes - noisy).sum() / sizes.sum())


def test_grad_kmeans_groups_separate_flipped_labels():
    X, y_noisy, _, flipped = make_problem(n=600, noise=0.1, seed=5)
    net = tiny_net(hidden=(16,), epochs=30).fit(X, y_noisy)
    frozen = FrozenEstimator(net)
    grad = GradKMeansGrouper(group_size=16, estimator=frozen, random_state=0).fit(X, y_noisy)
    rand = RandomGrouper(group_size=16, random_state=0).fit(X)
    assert group_purity(grad.labels_, flipped) > group_purity(rand.labels_, flipped) + 0.05
    assert group_purity(grad.labels_, flipped) > 0.95


def test_model_groupers_reuse_the_attributors_net(problem):
    X, y, X_test, y_test = problem
    attr = TracInAttributor(tiny_net(), grouper=GradKMeansGrouper(group_size=12),
                            random_state=0).fit(X, y)
    assert attr.grouper_.estimator_ is attr.estimator_
    assert attr.n_groups_ == 20
    np.testing.assert_array_equal(attr.labels_, attr.grouper_.labels_)


def test_standalone_model_grouper_trains_its_own_net(problem):
    X, y, _, _ = problem
    grouper = GradKMeansGrouper(group_size=40, estimator=tiny_net(), random_state=0).fit(X, y)
    assert grouper.estimator_.initialized_
    assert grouper.fit_time_ > 0


def test_model_grouper_needs_labels(problem):
    X, _, _, _ = problem
    with pytest.raises(ValueError, match="requires y to be passed"):
        GradKMeansGrouper(estimator=tiny_net()).fit(X)


def test_grid_search_over_group_size(problem):
    X, y, _, _ = problem

    def n_groups(estimator, X, y):  # a scorer reading the fitted attributor
        return -float(estimator.n_groups_)

    search = GridSearchCV(
        TracInAttributor(FrozenEstimator(tiny_net().fit(X, y)),
                         grouper=GradKMeansGrouper(random_state=0)),
        {"grouper__group_size": [8, 32]}, scoring=n_groups, cv=2,
    ).fit(X, y)
    assert [p["grouper__group_size"] for p in search.cv_results_["params"]] == [8, 32]
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], [-15, -4])
    assert search.best_estimator_.grouper_.group_size == 32


ATTRIBUTORS = {
    "tracin": lambda net, grouper: TracInAttributor(net, grouper=grouper, random_state=0),
    "fisher": lambda net, grouper: InfluenceAttributor(net, grouper=grouper, n_components=8,
                                                      random_state=0),
    "trak": lambda net, grouper: TRAKAttributor(net, grouper=grouper, n_models=2,
                                                n_components=8, random_state=0),
}


@pytest.mark.parametrize("attributor", sorted(ATTRIBUTORS))
@pytest.mark.parametrize("cls", GROUPERS, ids=lambda c: c.__name__)
def test_every_grouper_plugs_into_every_attributor(problem, cls, attributor):
    X, y, X_test, y_test = problem
    attr = ATTRIBUTORS[attributor](tiny_net(), make(cls, group_size=16)).fit(X, y)
    scores = attr.score_groups(X_test, y_test)
    assert scores.shape == (15,) and np.isfinite(scores).all()
    assert attr.timings_["grouping"] > 0
    np.testing.assert_array_equal(attr.labels_, attr.grouper_.labels_)


@pytest.mark.parametrize("cls", [ReprKMeansGrouper, GradKMeansGrouper], ids=lambda c: c.__name__)
def test_model_groupers_without_labels_use_the_nets_predictions(problem, cls):
    X, y, X_test, _ = problem
    grouper = make(cls, group_size=20).fit(X, y)
    predicted = grouper.estimator_.predict(X_test)
    np.testing.assert_array_equal(grouper.predict(X_test), grouper.predict(X_test, predicted))
    np.testing.assert_allclose(grouper.transform(X_test), grouper.transform(X_test, predicted))


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a CPU-only machine")
def test_grouper_fitted_for_a_gpu_predicts_on_a_cpu_only_machine(problem):
    X, y, _, _ = problem
    grouper = KMeansGrouper(group_size=20, random_state=0).fit(X)
    expected = grouper.predict(X)
    grouper.set_params(device="cuda")  # as if fitted on a GPU and reloaded here
    np.testing.assert_array_equal(grouper.predict(X), expected)
    assert grouper.transform(X).shape == (len(X), grouper.n_groups_)
