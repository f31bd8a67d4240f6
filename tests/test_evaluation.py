"""Evaluation metrics against hand-computed cases, and their retraining machinery."""

from __future__ import annotations

import sys
from functools import partial

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV

from skggda import GradKMeansGrouper, RandomGrouper, TracInAttributor
from skggda.metrics import (
    group_leave_one_out,
    linear_datamodeling_score,
    make_lds_scorer,
    make_removal_scorer,
    removal_score,
)
from skggda.metrics._orders import points_to_remove, removal_order

from conftest import make_problem, tiny_net


def test_removal_takes_whole_groups_then_part_of_the_last():
    scores = np.array([3.0, 1.0, 2.0])
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2])  # sizes 2, 3, 5
    # most important first: group 0 (2 points), group 2 (5), then group 1 (3)
    removed = points_to_remove(scores, labels, 0.4, random_state=0)
    assert len(removed) == 4
    assert {0, 1} <= set(removed)
    assert set(removed) - {0, 1} <= {5, 6, 7, 8, 9}
    least = points_to_remove(scores, labels, 0.4, most_important=False, random_state=0)
    assert set(least) >= {2, 3, 4} and len(set(least) & {5, 6, 7, 8, 9}) == 1


def test_partial_group_is_chosen_at_random():
    labels = np.zeros(100, dtype=int)
    picks = [set(points_to_remove([1.0], labels, 0.1, random_state=s)) for s in range(5)]
    assert len({frozenset(p) for p in picks}) == 5


def test_removal_order_is_a_permutation_grouped_by_score():
    labels = np.random.RandomState(0).randint(0, 7, 50)
    scores = np.random.RandomState(1).normal(size=7)
    order = removal_order(scores, labels, random_state=0)
    assert sorted(order) == list(range(50))
    group_sequence = labels[order]
    firsts = [g for i, g in enumerate(group_sequence) if i == 0 or g != group_sequence[i - 1]]
    assert firsts == list(np.argsort(-scores))


def test_stratified_removal_takes_each_class_in_its_groups_order():
    scores = np.array([3.0, 1.0, 2.0])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    classes = np.array([0, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1])  # 6 points of each class
    removed = points_to_remove(scores, labels, 0.5, stratify=classes, random_state=0)
    # class 0, group 0 first (3 points); class 1: group 0 (1 point), then group 2
    # (2 points) -- whole groups in score order inside each class
    assert set(removed) == {0, 1, 2, 3, 10, 11}
    least = points_to_remove(scores, labels, 0.5, most_important=False, stratify=classes,
                             random_state=0)
    # class 0: group 1 (1 point), group 2 (2 of its 2); class 1: group 1 (3 points)
    assert set(least) == {4, 8, 9, 5, 6, 7}
    # a part of the last group, at random: class 0 needs 2 of group 0's 3 points
    part = points_to_remove(scores, labels, 1 / 3, stratify=classes, random_state=0)
    assert len(part) == 4 and len(set(part) & {0, 1, 2}) == 2 and 3 in part
    with pytest.raises(ValueError, match="stratify has shape"):
        points_to_remove(scores, labels, 0.5, stratify=classes[:5])


def test_stratified_pruning_keeps_class_proportions(noisy):
    X, y, X_test, y_test, _ = noisy
    scores = np.where(y == 1, 1.0, -1.0)  # an order that would remove class 0 first
    kwargs = dict(fractions=[0.5], n_seeds=1, random_state=0)
    plain = removal_score(tiny_net(hidden=(8,), epochs=3), X, y, X_test, y_test, scores,
                          np.arange(len(y)), most_important=False, **kwargs)
    balanced = removal_score(tiny_net(hidden=(8,), epochs=3), X, y, X_test, y_test, scores,
                             np.arange(len(y)), most_important=False, stratify=True, **kwargs)
    share = np.bincount(y) / len(y)
    assert plain.kept_class_share[0, 0] < 0.05  # class 0 gone
    np.testing.assert_allclose(balanced.kept_class_share[0], share, atol=0.01)


def test_stratified_random_baseline_removes_the_share_of_every_class():
    from skggda.metrics._orders import _random_removal

    y = np.array([0] * 30 + [1] * 10 + [2] * 20)
    removed = _random_removal(len(y), 0.5, y, seed=0)
    np.testing.assert_array_equal(np.bincount(y[removed]), [15, 5, 10])
    assert len(set(removed)) == len(removed)
    # unstratified: the same share of all points, any classes
    assert len(_random_removal(len(y), 0.2, None, seed=0)) == 12


def test_shared_baselines_give_the_same_result_with_fewer_retrainings(noisy, monkeypatch):
    from skggda.metrics import _removal, removal_baselines

    X, y, X_test, y_test, flipped = noisy
    scores = np.where(flipped, -1.0, 1.0)
    kwargs = dict(fractions=[0.2, 0.4], n_seeds=2, random_state=0)
    net = tiny_net(hidden=(8,), epochs=2)
    alone = removal_score(net, X, y, X_test, y_test, scores, np.arange(len(y)),
                          most_important=False, **kwargs)
    shared = removal_baselines(net, X, y, X_test, y_test, **kwargs)
    calls = []
    real = _removal._fit_and_score
    monkeypatch.setattr(_removal, "_fit_and_score",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    reused = removal_score(net, X, y, X_test, y_test, scores, np.arange(len(y)),
                           most_important=False, baselines=shared, **kwargs)
    assert len(calls) == 2 * 2  # seeds x fractions: the scored removals only
    for field in ("accuracy", "random_accuracy", "full_accuracy", "kept_class_share"):
        np.testing.assert_array_equal(getattr(reused, field), getattr(alone, field))


@pytest.mark.parametrize("change", [dict(fractions=[0.3]), dict(random_state=1),
                                    dict(stratify=True), dict(n_test=30)])
def test_baselines_for_another_setting_are_refused(noisy, change):
    from skggda.metrics import removal_baselines

    X, y, X_test, y_test, _ = noisy
    base = dict(fractions=[0.2], n_seeds=1, random_state=0, stratify=False)
    net = tiny_net(hidden=(4,), epochs=1)
    shared = removal_baselines(net, X, y, X_test, y_test, **base)
    change = dict(change)  # the parametrize dict outlives this run: popping it would empty it
    n_test = change.pop("n_test", len(y_test))
    with pytest.raises(ValueError, match="baselines were computed for other"):
        removal_score(net, X, y, X_test[:n_test], y_test[:n_test], np.zeros(len(y)),
                      np.arange(len(y)), most_important=True, baselines=shared,
                      **{**base, **change})


def test_removal_score_wants_a_boolean_stratify(noisy):
    X, y, X_test, y_test, _ = noisy
    with pytest.raises(TypeError, match="stratify must be True or False"):
        removal_score(tiny_net(), X, y, X_test, y_test, np.zeros(len(y)), np.arange(len(y)),
                      most_important=False, stratify=y)


@pytest.mark.parametrize("most_important, metric, expected, name", [
    (True, "accuracy", 0.9 - 0.7, "retraining_75"),  # the accuracy drop
    (False, "accuracy", 0.7, "pruning_75"),  # the accuracy kept
    (True, "rmse", 0.7 - 0.9, "retraining_75"),  # the RMSE rise (here negative)
    (False, "rmse", -0.7, "pruning_75"),  # the RMSE, negated: greater is better
])
def test_removal_scorers_pass_their_options_and_orient_the_value(most_important, metric,
                                                                  expected, name, monkeypatch):
    from types import SimpleNamespace

    from skggda.metrics import _scorers

    seen = {}

    def fake_removal_score(*args, **kwargs):
        seen.update(kwargs)
        return SimpleNamespace(accuracy=np.array([0.7]), full_accuracy=0.9, metric=metric)

    monkeypatch.setattr(_scorers, "removal_score", fake_removal_score)
    X, y, _, _ = make_problem(n=60, seed=5)
    attr = TracInAttributor(FrozenEstimator(tiny_net().fit(X, y))).fit(X, y)
    scorer = make_removal_scorer(0.75, most_important=most_important, stratify=True,
                                 metric=metric)
    assert scorer(attr, X, y) == pytest.approx(expected)
    assert scorer.__name__ == name
    assert seen["stratify"] is True and seen["most_important"] is most_important
    # the documented defaults reach the retrainings: one seed, random_state 0
    assert seen["fractions"] == [0.75] and seen["metric"] == metric
    assert seen["n_seeds"] == 1 and seen["random_state"] == 0


def test_lds_scorer_passes_its_options_and_the_attributors_property(monkeypatch):
    from types import SimpleNamespace

    from skggda.metrics import _scorers

    seen = {}

    def fake_lds(*args, **kwargs):
        seen.update(kwargs)
        return SimpleNamespace(score=0.25)

    monkeypatch.setattr(_scorers, "linear_datamodeling_score", fake_lds)
    X, y, _, _ = make_problem(n=60, seed=5)
    attr = TracInAttributor(FrozenEstimator(tiny_net().fit(X, y)), property="margin").fit(X, y)
    scorer = make_lds_scorer(7, subset_fraction=0.3)
    assert scorer(attr, X, y) == 0.25 and scorer.__name__ == "lds"
    assert seen == {"property": "margin", "n_subsets": 7, "subset_fraction": 0.3,
                    "random_state": 0}
    make_lds_scorer()(attr, X, y)  # the documented defaults
    assert seen["n_subsets"] == 10 and seen["subset_fraction"] == 0.5


def test_fraction_out_of_range():
    with pytest.raises(ValueError, match="fraction must be in"):
        points_to_remove([1.0], [0, 0], 1.5)


@pytest.fixture(scope="module")
def noisy():
    X, y, _, flipped = make_problem(n=240, noise=0.2, seed=21)
    X_test, y_test, _, _ = make_problem(n=120, seed=22)
    return X, y, X_test, y_test, flipped


def test_removing_flipped_labels_first_prunes_well(noisy):
    X, y, X_test, y_test, flipped = noisy
    scores = np.where(flipped, -1.0, 1.0)  # an oracle attribution
    net = tiny_net(hidden=(8,), epochs=15)
    result = removal_score(net, X, y, X_test, y_test, scores, np.arange(len(y)),
                           most_important=False, fractions=[0.2], n_seeds=2, random_state=0)
    assert result.accuracy.shape == (1,) and result.n_seeds == 2
    assert result.accuracy[0] > result.random_accuracy[0]
    assert result.accuracy[0] >= result.full_accuracy
    assert result.kept_class_share.shape == (1, 2)
    assert "random removal" in result.as_table()


def test_removal_score_most_important_removes_the_helpful_points(noisy):
    X, y, X_test, y_test, flipped = noisy
    scores = np.where(flipped, -1.0, 1.0)
    result = removal_score(tiny_net(hidden=(8,), epochs=15), X, y, X_test, y_test, scores,
                           np.arange(len(y)), most_important=True, fractions=[0.5], n_seeds=1,
                           random_state=0)
    assert result.accuracy[0] < result.random_accuracy[0]
    assert result.accuracy_sem.shape == (1,)


def test_group_loo_effects_follow_the_sign_convention(noisy):
    X, y, X_test, y_test, flipped = noisy
    labels = np.where(flipped, 0, 1 + np.arange(len(y)) % 3)  # group 0: every flipped label
    loo = group_leave_one_out(tiny_net(hidden=(8,), epochs=15), X, y, X_test, y_test, labels,
                              random_state=0)
    assert loo.effect.shape == (4,)
    # removing the flipped labels lowers the test loss: a negative effect
    assert loo.effect[0] < 0
    assert loo.correlation([-1.0, 1.0, 1.0, 1.0]) > 0


def test_lds_of_tracin_group_scores_is_positive(noisy):
    X, y, X_test, y_test, _ = noisy
    attr = TracInAttributor(tiny_net(hidden=(8,), epochs=10),
                            grouper=GradKMeansGrouper(group_size=24), random_state=0).fit(X, y)
    scores = attr.score_groups(X_test, y_test)
    lds = linear_datamodeling_score(tiny_net(hidden=(8,), epochs=10), X, y, X_test, y_test,
                                    scores, attr.labels_, n_subsets=10, random_state=0)
    assert lds.predicted.shape == lds.actual.shape == (10,)
    assert lds.score > 0
    matrix = attr.attribute(X_test[:10], y_test[:10])
    per_sample = linear_datamodeling_score(tiny_net(hidden=(8,), epochs=3), X, y,
                                           X_test[:10], y_test[:10], matrix, attr.labels_,
                                           n_subsets=4, random_state=0)
    assert per_sample.actual.shape == (4, 10)


@pytest.mark.parametrize("make_scorer", [partial(make_removal_scorer, most_important=False),
                                         partial(make_removal_scorer, most_important=True),
                                         make_lds_scorer])
def test_scorers_drive_grid_search_over_group_size(noisy, make_scorer):
    X, y, _, _, _ = noisy
    kwargs = {"n_subsets": 4} if make_scorer is make_lds_scorer else {}
    search = GridSearchCV(
        TracInAttributor(FrozenEstimator(tiny_net(hidden=(8,), epochs=5).fit(X, y)),
                         grouper=RandomGrouper(random_state=0)),
        {"grouper__group_size": [16, 64]}, scoring=make_scorer(**kwargs), cv=2,
    ).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_retrainings_spread_over_a_dask_cluster(noisy):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    X, y, X_test, y_test, flipped = noisy
    scores = np.where(flipped, -1.0, 1.0)
    labels = np.arange(len(y))
    kwargs = dict(fractions=[0.2], n_seeds=2, random_state=0)
    local = removal_score(tiny_net(hidden=(4,), epochs=3), X, y, X_test, y_test, scores,
                          labels, most_important=False, **kwargs)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with parallel_config(backend="dask"):
            remote = removal_score(tiny_net(hidden=(4,), epochs=3), X, y, X_test, y_test,
                                   scores, labels, most_important=False, n_jobs=-1, **kwargs)
        assert client.run(lambda: 1)  # the workers were there
    np.testing.assert_allclose(remote.accuracy, local.accuracy)
    np.testing.assert_allclose(remote.random_accuracy, local.random_accuracy)


def test_retraining_without_a_whole_class_keeps_its_output():
    # Class-pure groups: leaving out the group of the last class must not shrink the head
    # (the test loss of that class is still measured) nor crash.
    X, y, _, _ = make_problem(n=120, n_classes=3, seed=5)
    X_test, y_test, _, _ = make_problem(n=60, n_classes=3, seed=6)
    loo = group_leave_one_out(tiny_net(hidden=(8,), epochs=30), X, y, X_test, y_test, y,
                              n_seeds=1, random_state=0)
    assert np.isfinite(loo.effect).all()
    # removing a whole class raises the test loss (of that class above all)
    assert (loo.effect > 0.2).all()


def _tiny_noisy_grid(**kwargs):
    from skggda.experiments import GridConfig

    return GridConfig(group_sizes=(1,), epochs=2, n_train=120, noise=0.2, **kwargs)


def test_noisy_grid_has_a_cleanlab_row_with_its_cost():
    # cleanlab is in the test extra: this test runs in CI, it does not skip
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from skggda.experiments import run_grid
    from skggda.experiments._grid import load_dataset
    from skggda.metrics import flip_labels
    from skggda.experiments._grid import make_net

    config = _tiny_noisy_grid(cleanlab_folds=3)
    records = run_grid(config, progress=False)
    row = [r for r in records if r.attributor == "cleanlab"]
    assert len(row) == 1 and row[0].metric == "auc"
    assert row[0].runtime_s > 0 and row[0].n_groups == 120
    # cleanlab's label quality from 3-fold probabilities of the same recipe,
    # on the flipped labels, computed here
    X, y, _, _ = load_dataset(config)
    y_noisy, flipped = flip_labels(y, config.noise, random_state=0)
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    probabilities = cross_val_predict(make_net(config, 0), X, y_noisy, cv=folds,
                                      method="predict_proba")
    quality = get_label_quality_scores(y_noisy, probabilities)
    assert row[0].value == pytest.approx(detection_auc(quality, flipped), abs=1e-9)


def test_cleanlab_row_is_skipped_cleanly_without_cleanlab(monkeypatch, capsys):
    from skggda.experiments import run_grid
    from skggda.experiments._baselines import CLEANLAB_MISSING

    # a None entry in sys.modules makes `import cleanlab...` raise ImportError
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    monkeypatch.setitem(sys.modules, "cleanlab.rank", None)
    records = run_grid(_tiny_noisy_grid(cleanlab_folds=3), progress=False)
    assert [r.attributor for r in records] == ["tracin"]
    assert CLEANLAB_MISSING in capsys.readouterr().out


def detection_auc(scores, flipped):
    """Area under the detection curve of per-point ``scores`` (lowest inspected first).

    From scikit-learn's ROC AUC of ``-scores`` as a detector of the flipped
    labels: inspecting a share ``x = p TPR + (1 - p) FPR`` of the points finds
    a share TPR of the ``p`` flipped ones, so the area is ``p / 2 + (1 - p) AUC``.
    """
    p = flipped.mean()
    return p / 2 + (1 - p) * roc_auc_score(flipped, -np.asarray(scores))


@pytest.mark.parametrize("detector, checkpoints", [("train-loss", "last"), ("self", "all")])
def test_noisy_detectors_rank_by_their_own_scores(detector, checkpoints):
    from skggda.experiments import run_grid
    from skggda.experiments._grid import load_dataset
    from skggda.metrics import flip_labels
    from skggda.experiments._config import SELF_INFLUENCE_COMPONENTS
    from skggda.experiments._grid import make_net

    config = _tiny_noisy_grid(detector=detector, checkpoints=checkpoints, cleanlab_folds=0)
    (record,) = run_grid(config, progress=False)
    # the same detector by hand: a net of the grid's recipe trained on the
    # flipped training labels, its TracIn scores of the training loss, or
    # its self-influences (projected, as the grid does for "self")
    X, y, _, _ = load_dataset(config)
    y_noisy, flipped = flip_labels(y, config.noise, random_state=0)
    if detector == "self":
        attr = TracInAttributor(make_net(config, 0), checkpoints="all", random_state=0,
                                n_components=SELF_INFLUENCE_COMPONENTS).fit(X, y_noisy)
        scores = -attr.self_influence()
    else:
        net = make_net(config, 0).fit(X, y_noisy)
        scores = TracInAttributor(FrozenEstimator(net), random_state=0).fit(X, y_noisy) \
            .score_groups()
    assert record.value == pytest.approx(detection_auc(scores, flipped), abs=1e-9)


def test_unknown_detector_is_refused():
    from skggda.experiments import run_grid

    with pytest.raises(ValueError, match="Unknown detector 'oracle'"):
        run_grid(_tiny_noisy_grid(detector="oracle", cleanlab_folds=0), progress=False)


class _FixedSelfInfluence:
    """An attributor stand-in: two groups, of 4 members and of 1."""

    labels_ = np.array([0, 0, 0, 0, 1])
    n_groups_ = 2

    def self_influence(self):
        return np.array([8.0, 1.0])


def test_self_detector_ranks_groups_by_their_mean_gradient():
    from skggda.experiments._grid import _detection_scores

    # the group of 4 has the larger self-influence, but its mean gradient's
    # squared norm is 8 / 4**2 = 0.5 against the single point's 1
    scores, _ = _detection_scores(_FixedSelfInfluence(), "self", None, None)
    np.testing.assert_allclose(scores, [-0.5, -1.0])


def test_self_detector_finds_flipped_labels_in_grad_kmeans_groups():
    from skggda.experiments import GridConfig, run_grid

    # the raw group self-influence ranked large clean groups first (AUC 0.35 here)
    config = GridConfig(groupers=("grad",), group_sizes=(16,), cleanlab_folds=0)
    (record,) = run_grid(config, progress=False)
    assert record.value > 0.7


@pytest.mark.parametrize("most_important, paper", [(True, [0.01, 0.05, 0.10, 0.20]),
                                                    (False, [0.25, 0.50, 0.75])])
def test_removal_score_defaults_to_the_papers_fractions(most_important, paper, monkeypatch):
    from skggda.metrics import _removal

    def no_retraining(self, estimator, jobs, n_jobs):
        return [0.5] * len(jobs)

    monkeypatch.setattr(_removal._RetrainingSetup, "retrain", no_retraining)
    X, y, _, _ = make_problem(n=40, seed=3)
    result = removal_score(tiny_net(), X, y, X, y, np.zeros(len(y)), np.arange(len(y)),
                           most_important=most_important, n_seeds=1, random_state=0)
    np.testing.assert_array_equal(result.fractions, paper)
    assert result.most_important is most_important
