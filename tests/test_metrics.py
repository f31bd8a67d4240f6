"""Metric functions against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from skggda.metrics import detection_curve, noisy_label_auc

from conftest import tiny_net


def test_perfect_ordering_of_singletons():
    # two noisy points out of four, scored lowest: found 1/2 after 1/4, all after 1/2
    scores = [-2.0, -1.0, 1.0, 2.0]
    auc = noisy_label_auc(scores, np.arange(4), [True, True, False, False])
    assert auc == pytest.approx(0.5 * (0.25 * 0.5) + 0.25 * (0.5 + 1) / 2 + 0.5)


def test_worst_ordering_and_random_baseline():
    labels = np.arange(10)
    noisy = np.zeros(10, dtype=bool)
    noisy[0] = True
    assert noisy_label_auc(-np.arange(10.0), labels, noisy) == pytest.approx(0.05)
    # one group holding everything: the expected curve is the diagonal
    assert noisy_label_auc([0.0], np.zeros(10, dtype=int), noisy) == pytest.approx(0.5)


def test_groups_are_inspected_whole_in_score_order():
    inspected, found = detection_curve([3.0, -1.0, 0.0], [0, 0, 1, 2, 2, 2],
                                       [False, True, True, False, False, True])
    # order: group 1 (1 point, 1 noisy), group 2 (3 points, 1 noisy), group 0 (2, 1)
    np.testing.assert_allclose(inspected, [0, 1 / 6, 4 / 6, 1])
    np.testing.assert_allclose(found, [0, 1 / 3, 2 / 3, 1])


def test_nothing_noisy_is_an_error():
    with pytest.raises(ValueError, match="is_noisy marks no sample"):
        noisy_label_auc([1.0], [0, 0], [False, False])


def test_tied_scores_give_the_expected_curve_whatever_the_group_ids():
    # all scores equal: inspecting in random order, the expected AUC is the diagonal's
    noisy = np.zeros(10, dtype=bool)
    noisy[0] = True
    assert noisy_label_auc(np.zeros(10), np.arange(10), noisy) == pytest.approx(0.5)
    # ties between two of three groups are merged, the third stays apart
    inspected, found = detection_curve([1.0, 1.0, -5.0], [0, 1, 2, 2], [True, False, False, True])
    np.testing.assert_allclose(inspected, [0, 0.5, 1])
    np.testing.assert_allclose(found, [0, 0.5, 1])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_scores_are_rejected(bad):
    from skggda.metrics._orders import points_to_remove

    with pytest.raises(ValueError, match="1 NaN or infinite values"):
        noisy_label_auc([0.0, bad], [0, 1], [True, False])
    with pytest.raises(ValueError, match="cannot be ranked"):
        points_to_remove([0.0, bad], [0, 1], 0.5)


def _hand_made_retrainings():
    from skggda.metrics._datamodels import DatamodelRetrainings

    # four subsets of three groups; two evaluation samples
    kept = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 0, 0]], dtype=bool)
    actual = np.array([[0.3, 0.5], [0.2, 0.1], [0.1, 0.2], [0.4, 0.3]])  # test losses
    return DatamodelRetrainings(kept, actual, np.array([0.05, 0.05]))


def test_lds_of_a_hand_made_attribution_on_a_hand_made_table():
    from skggda.metrics import lds_from_retrainings

    scores = np.array([[1.0, 2.0, 3.0], [3.0, 0.0, -1.0]])
    result = lds_from_retrainings(scores, _hand_made_retrainings())
    # sample 0: removed-score sums 3, 2, 1, 5 rank as the losses 0.3, 0.2, 0.1, 0.4: rho = 1
    # sample 1: sums -1, 0, 3, -1 -> ranks 1.5, 3, 4, 1.5; losses rank 4, 1, 2, 3:
    #   rho = -3.5 / sqrt(4.5 * 5)
    rho_1 = -3.5 / np.sqrt(4.5 * 5)
    assert result.score == pytest.approx((1 + rho_1) / 2)
    assert result.score_sem == pytest.approx((1 - rho_1) / 2)
    np.testing.assert_allclose(result.predicted[:, 0], 0.05 + np.array([3, 2, 1, 5]))


def test_lds_matches_the_kept_sum_against_negative_loss_convention():
    # dattri / TRAK: Spearman of the summed scores of the kept points with -loss
    from scipy.stats import spearmanr

    from skggda.metrics import lds_from_retrainings

    table = _hand_made_retrainings()
    scores = np.random.RandomState(0).normal(size=(2, 3))
    theirs = [spearmanr(table.subsets @ scores[i], -table.actual[:, i])[0] for i in range(2)]
    assert lds_from_retrainings(scores, table).score == pytest.approx(np.mean(theirs))


def test_lds_refuses_scores_of_another_shape():
    from skggda.metrics import lds_from_retrainings

    with pytest.raises(ValueError, match="do not match"):
        lds_from_retrainings(np.zeros((3, 3)), _hand_made_retrainings())
    with pytest.raises(ValueError, match="scores have 2 groups"):
        lds_from_retrainings(np.zeros((2, 2)), _hand_made_retrainings())


def _harmful_case():
    # ten singletons: six of class 0, four of class 1; points 0 and 1 are harmful
    scores = np.array([-2.0, -1.0, 1, 2, 3, 4, 5, 6, 7, 8])
    classes = np.array([0] * 6 + [1] * 4)
    return scores, np.arange(10), classes


@pytest.mark.parametrize("seed", range(5))
def test_harmful_then_random_removes_the_harmful_then_tops_up_each_class(seed):
    from skggda.metrics._orders import harmful_then_random

    scores, labels, classes = _harmful_case()
    removed = harmful_then_random(scores, labels, 0.5, classes, max_harmful=1.0,
                                  random_state=seed)
    # 5 points: both harmful ones (class 0), then class 0 up to its share 3 (one more,
    # at random among 2..5) and class 1 up to its share 2 (two of 6..9)
    assert len(removed) == 5 and {0, 1} <= set(removed)
    assert len(set(removed) & {2, 3, 4, 5}) == 1 and len(set(removed) & {6, 7, 8, 9}) == 2


def test_harmful_then_random_caps_the_harmful_share():
    from skggda.metrics._orders import harmful_then_random

    scores, labels, classes = _harmful_case()
    picks = [set(harmful_then_random(scores, labels, 0.5, classes, max_harmful=0.1,
                                     random_state=seed)) for seed in range(20)]
    # only the most harmful point goes by score (10% of 10); the other harmful one
    # is just one of class 0's five candidates for its two random places
    assert all(0 in p and len(p & {1, 2, 3, 4, 5}) == 2 and len(p & {6, 7, 8, 9}) == 2
               for p in picks)
    assert any(1 not in p for p in picks)


def test_harmful_then_random_stops_at_the_fraction():
    from skggda.metrics._orders import harmful_then_random

    scores, labels, classes = _harmful_case()
    removed = harmful_then_random(scores, labels, 0.1, classes, max_harmful=1.0)
    assert removed.tolist() == [0]  # one point: the most harmful
    # nothing harmful: the order is class-stratified random removal
    removed = harmful_then_random(np.abs(scores), labels, 0.5, classes, random_state=0)
    assert np.bincount(classes[removed]).tolist() == [3, 2]


def test_pruning_orders_are_checked(problem):
    from skggda.metrics import removal_score

    X, y, X_test, y_test = problem
    for order, most_important in (("best-first", False), ("harmful-then-random", True)):
        with pytest.raises(ValueError, match="order must be one of"):
            removal_score(tiny_net(), X, y, X_test, y_test, np.zeros(len(y)),
                          np.arange(len(y)), fractions=[0.5], most_important=most_important,
                          order=order)


def test_public_metrics_validate_their_parameters():
    # scikit-learn's validate_params: a value of the wrong kind is named before any work
    from sklearn.utils._param_validation import InvalidParameterError

    from skggda.metrics import linear_datamodeling_score, removal_score

    with pytest.raises(InvalidParameterError, match="'scores' parameter of noisy_label_auc"):
        noisy_label_auc(0.5, np.arange(3), np.ones(3, dtype=bool))
    X, y = np.zeros((4, 2)), np.arange(4) % 2
    with pytest.raises(InvalidParameterError, match="'n_subsets' parameter"):
        linear_datamodeling_score(tiny_net(), X, y, X, y, np.zeros(4), np.arange(4), n_subsets=0)
    with pytest.raises(TypeError, match="positional"):  # options are keyword-only
        removal_score(tiny_net(), X, y, X, y, np.zeros(4), np.arange(4), [0.5], True)


# -- noisy-label helpers, value by value (mutation testing: benchmarks/TESTING.md) --------


def test_detection_curve_reads_its_inputs_as_floats_and_booleans():
    expected = detection_curve([0.5, -1.0], [0, 0, 1, 1], [True, False, True, False])
    # scores from an object column, is_noisy as truthy integers (a 3 is one noisy point)
    got = detection_curve(np.array([0.5, -1.0], dtype=object), [0, 0, 1, 1], [1, 0, 3, 0])
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    # a group without members (the third score) adds nothing to the curve
    inspected, found = detection_curve([0.5, -1.0, 0.2], [0, 0, 1, 1], [0, 0, 1, 0])
    np.testing.assert_array_equal(inspected, [0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(found, [0, 1, 1, 1])


def test_detection_curve_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"^labels and is_noisy must have the same shape, got "
                                         r"\(2,\) and \(3,\)\.$"):
        detection_curve([0.0], [0, 0], [True, False, False])
    with pytest.raises(ValueError, match=r"^is_noisy marks no sample: there is nothing to "
                                         r"detect\.$"):
        detection_curve([0.0], [0, 0], [False, False])
    with pytest.raises(ValueError, match="they cannot be ranked"):
        detection_curve([np.nan], [0, 0], [True, False])


def test_flip_labels_moves_each_flipped_label_to_a_random_other_class():
    from skggda.metrics import flip_labels

    y = np.arange(3000) % 3
    y_noisy, flipped = flip_labels(y, random_state=0)  # 10% by default
    assert 0.08 < flipped.mean() < 0.12
    assert (y_noisy[flipped] != y[flipped]).all() and (y_noisy[~flipped] == y[~flipped]).all()
    assert set(y_noisy[flipped & (y == 0)]) == {1, 2}  # every other class, none outside
    binary = np.arange(100) % 2
    y_noisy, flipped = flip_labels(binary, 1.0, random_state=0)  # all of them
    assert flipped.all() and (y_noisy == 1 - binary).all()
    y_noisy, flipped = flip_labels(binary, 0.0, random_state=0)
    assert not flipped.any() and (y_noisy == binary).all()
    y_noisy, flipped = flip_labels(np.array([], dtype=int), 0.5, random_state=0)
    assert y_noisy.shape == flipped.shape == (0,)
    with pytest.raises(ValueError, match=r"^fraction must be in \[0, 1\], got 1\.5\.$"):
        flip_labels(binary, 1.5)


def test_corrupt_targets_shifts_by_scale_standard_deviations_either_way():
    from skggda.metrics import corrupt_targets

    y = np.arange(200)  # integers: the corrupted copy is float64
    std = y.std()
    both, chosen = corrupt_targets(y, 0.5, random_state=0)
    assert both.dtype == np.float64 and chosen.sum() == 100
    np.testing.assert_allclose(np.abs(both - y)[chosen], 3 * std)
    assert set(np.sign(both - y)[chosen]) == {-1.0, 1.0}
    up, chosen = corrupt_targets(y, 1.0, direction="up", scale=2.0, random_state=0)
    assert chosen.all()
    np.testing.assert_allclose(up - y, 2 * std)
    down, chosen = corrupt_targets(y, 0.0, direction="down", random_state=0)
    assert not chosen.any() and (down == y).all()
