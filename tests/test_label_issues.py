"""``skggda.metrics.label_issue_scores``: which training labels are likely wrong."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import InvalidParameterError

from conftest import tiny_net
from skggda.metrics import flip_labels, label_issue_scores, noisy_label_auc
from skggda.metrics._label_issues import rank_average


def flipped_problem(n=240, fraction=0.15, seed=0):
    """Two separable blobs with ``fraction`` of the labels flipped."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    clean = (X[:, 0] + X[:, 1] > 0).astype(int)
    y, flipped = flip_labels(clean, fraction, random_state=seed)
    return X, y, flipped


def auc(scores, flipped):
    """Detection AUC of label-issue scores (higher = more likely flipped)."""
    return noisy_label_auc(-scores, np.arange(len(scores)), flipped)


def test_out_of_fold_losses_find_flipped_labels():
    X, y, flipped = flipped_problem()
    scores = label_issue_scores(LogisticRegression(), X, y, method="oof_loss", random_state=0)
    assert scores.shape == (len(y),)
    # measured 0.907 (3 folds, seed 0); random scores give 0.5
    assert auc(scores, flipped) > 0.85
    # higher = more likely mislabeled (measured: 6.2 times the clean rows' mean);
    # a reversed sign puts the flipped rows below
    assert scores[flipped].mean() > 3 * scores[~flipped].mean()


def test_self_influence_and_combined_find_flipped_labels():
    X, y, flipped = flipped_problem()
    net = tiny_net(epochs=8)
    by_method = {m: label_issue_scores(net, X, y, method=m, random_state=0)
                 for m in ("self_influence", "combined")}
    # measured: self_influence 0.850, combined 0.884 (seed 0)
    assert auc(by_method["self_influence"], flipped) > 0.78
    assert auc(by_method["combined"], flipped) > 0.83
    # measured: flipped rows' mean self-influence 3.5 times the clean rows'
    influence = by_method["self_influence"]
    assert influence[flipped].mean() > 2 * influence[~flipped].mean()
    assert np.all((0 < by_method["combined"]) & (by_method["combined"] <= 1))


def test_auto_is_the_combined_ranking():
    X, y, _ = flipped_problem(n=120)
    auto = label_issue_scores(LogisticRegression(), X, y, random_state=0)
    combined = label_issue_scores(LogisticRegression(), X, y, method="combined", random_state=0)
    oof = label_issue_scores(LogisticRegression(), X, y, method="oof_loss", random_state=0)
    np.testing.assert_array_equal(auto, combined)
    assert not np.allclose(auto, oof)


def test_rank_average_is_the_mean_rank_share():
    np.testing.assert_allclose(rank_average([0.1, 5.0, 2.0], [3.0, 1.0, 2.0]),
                               [(1 / 3 + 1) / 2, (1 + 1 / 3) / 2, 2 / 3])


def test_groups_are_the_mean_of_their_members():
    X, y, _ = flipped_problem()
    groups = np.random.RandomState(1).choice(["b", "a", "c", "d"], len(y))
    rows = label_issue_scores(LogisticRegression(), X, y, method="oof_loss", random_state=0)
    per_group = label_issue_scores(LogisticRegression(), X, y, method="oof_loss",
                                   random_state=0, groups=groups)
    expected = [rows[groups == g].mean() for g in ("a", "b", "c", "d")]  # sorted labels
    np.testing.assert_allclose(per_group, expected, rtol=1e-12)


def test_cv_is_used():
    X, y, _ = flipped_problem()
    two = label_issue_scores(LogisticRegression(), X, y, method="oof_loss", cv=2, random_state=0)
    five = label_issue_scores(LogisticRegression(), X, y, method="oof_loss", random_state=0)
    assert not np.allclose(two, five)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(method="cleanlab"), InvalidParameterError, "method"),
    (dict(cv="folds"), InvalidParameterError, "cv"),
    (dict(groups=np.zeros(5)), ValueError, "groups must have one label per row"),
])
def test_bad_arguments(kwargs, error, match):
    X, y, _ = flipped_problem(n=40)
    with pytest.raises(error, match=match):
        label_issue_scores(LogisticRegression(), X, y, **kwargs)


def test_bad_data():
    X, y, _ = flipped_problem(n=40)
    with pytest.raises(ValueError, match="one label per row"):
        label_issue_scores(LogisticRegression(), X, y[:-1])
    with pytest.raises(ValueError, match="single class"):
        label_issue_scores(LogisticRegression(), X, np.zeros(40, dtype=int))
    with pytest.raises(InvalidParameterError, match="estimator"):
        label_issue_scores(LinearSVC(), X, y)  # no predict_proba
