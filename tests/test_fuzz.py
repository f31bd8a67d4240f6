"""Fuzzed inputs: every call works with the identities intact or fails cleanly.

Property-based tests (hypothesis, fixed seed, bounded examples) feed the
public estimators inputs of odd shapes and dtypes (float16/32/64, ints,
bools, objects), NaN and inf at random positions, labels and group labels
of mixed and odd types, tiny data (one to a few rows, one class, one group,
as many groups as rows) and ``group_size`` / ``n_groups`` at their edges.
Each call either

* works, and the result keeps the contract: labels in ``0..k-1`` with no
  empty group, ``k`` as asked, finite scores, a group's score the sum of
  its members' scores (methods linear in the gradient), the rows of
  ``attribute`` averaging to ``score_groups``; or
* raises scikit-learn's error types (``ValueError`` / ``TypeError``, which
  ``NotFittedError`` and ``InvalidParameterError`` derive from) with a
  message, and leaves the estimator exactly as it was (a deep comparison of
  everything it holds, arrays and nets included).

Clean refusals prove only that bad input is refused; they are counted apart
from successes (``FUZZED_CALLS``, printed per estimator at the end of the
run). Two tests feed only *valid* input and require every call to succeed
(a refusal there is a failure), checking an identity on each result:

* ``test_valid_input_fits_and_scores``: training data of any valid dtype,
  layout, label type and grouping (labels, a grouper, or none) fits, and
  ``score_groups`` / ``attribute`` give finite results whose rows average to
  the scores;
* ``test_group_scores_are_sums_of_member_scores``: on 8 to 40 rows, a
  grouping's scores (training property and a held-out one) are the sums of
  the per-point scores of its members, a grouping into singletons gives the
  per-point scores, one group their total. Mostly non-trivial groupings
  (neither one group nor all singletons), counted (``FUZZED_GROUPINGS``).

Each of these tests counts its own successful calls and non-trivial
groupings and asserts a minimum, so a subset of the tests cannot pass on
fewer; the minima add up to at least :data:`TARGET_SUCCESSES` successful,
identity-checked calls per run. One trained tiny net, frozen, is reused for
most of them, so a call costs a pass over a few rows.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections import Counter

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator

from skggda import (GradKMeansGrouper, InfluenceAttributor, KMeansGrouper, RandomGrouper,
                    ReprKMeansGrouper, TracInAttributor, TRAKAttributor)

from conftest import FUZZED_CALLS, FUZZED_GROUPINGS, deep_state, make_problem, tiny_net
from fuzz_inputs import (N_CLASSES, N_FEATURES, arrays, group_counts, group_labels, targets,
                         valid_grouping, valid_training_data)

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning",
                                        "ignore::sklearn.exceptions.DataConversionWarning")

#: Fuzz tests that have finished; the count is checked only after all of them.
FINISHED = set()

#: Messages of errors from deep inside torch or NumPy: not a message for a user.
INTERNAL_MESSAGES = ("mat1 and mat2", "out of bounds for dimension", "must match the size",
                     "Expected all tensors", "could not broadcast", "has no len()",
                     "not supported between instances")


# -- the contract ---------------------------------------------------------------------


#: Methods that only read the fitted state.
READ_ONLY = {"score_groups", "attribute", "predict", "transform"}


def checked_call(estimator, method, *args, **kwargs):
    """Call ``estimator.method``; return its result, or ``None`` after a clean failure."""
    name = type(estimator).__name__
    before = deep_state(estimator)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            result = getattr(estimator, method)(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert message.strip(), f"{method} raised {type(exc).__name__} without a message"
        assert not any(text in message for text in INTERNAL_MESSAGES), (
            f"{method} raised an internal error: {message}")
        assert deep_state(estimator) == before, (
            f"{method} failed ({message[:120]}) and changed the estimator")
        FUZZED_CALLS[name, "refusal"] += 1
        return None
    if method in READ_ONLY:
        assert deep_state(estimator) == before, f"{method} changed the fitted state"
    FUZZED_CALLS[name, "success"] += 1
    return result


def required_call(estimator, method, *args, check_state=True, **kwargs):
    """Call ``estimator.method`` on valid input: any exception fails the test.

    A read-only method must leave the estimator as it was (unless not
    ``check_state``: the deep comparison costs more than a call on a few rows).
    """
    before = deep_state(estimator) if method in READ_ONLY and check_state else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            result = getattr(estimator, method)(*args, **kwargs)
    except Exception as exc:
        pytest.fail(f"{type(estimator).__name__}.{method} refused valid input: "
                    f"{type(exc).__name__}: {exc}")
    if before is not None:
        assert deep_state(estimator) == before, f"{method} changed the fitted state"
    FUZZED_CALLS[type(estimator).__name__, "required"] += 1
    return result


def check_partition(estimator, n_samples, n_groups=None):
    labels = estimator.labels_
    assert labels.shape == (n_samples,) and labels.dtype.kind == "i"
    k = estimator.n_groups_
    if n_groups is not None:
        assert k == n_groups
    assert labels.min() >= 0 and labels.max() == k - 1
    assert (np.bincount(labels, minlength=k) > 0).all(), "an empty group"


def expected_n_groups(params, n_samples):
    if params.get("n_groups") is not None:
        return params["n_groups"]
    return math.ceil(n_samples / params["group_size"])


# -- strategies -----------------------------------------------------------------------

# -- the estimators under test --------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained():
    """A tiny net trained on ``N_FEATURES`` features and ``N_CLASSES`` classes."""
    X, y, _, _ = make_problem(n=60, n_features=N_FEATURES, n_classes=N_CLASSES, seed=21)
    return tiny_net(hidden=(3,), epochs=1, batch_size=16).fit(X, y)


def recipe():
    """A net trained in ``fit``: one epoch, any number of features."""
    return tiny_net(hidden=(2,), epochs=1, batch_size=4)


def net_for(use_frozen, pretrained):
    return FrozenEstimator(pretrained) if use_frozen else recipe()


GROUPERS = {
    "random": lambda net: RandomGrouper(random_state=0),
    "kmeans": lambda net: KMeansGrouper(random_state=0, max_iter=5),
    "repr": lambda net: ReprKMeansGrouper(estimator=net, random_state=0, max_iter=5),
    "grad": lambda net: GradKMeansGrouper(estimator=net, random_state=0, max_iter=5),
}

#: Attributors, each linear in the training gradients (group score = sum of members').
ATTRIBUTORS = {
    "tracin": lambda net: TracInAttributor(net, random_state=0),
    "tracin-projected": lambda net: TracInAttributor(net, n_components=3, random_state=0),
    "influence-empirical": lambda net: InfluenceAttributor(net, fisher="empirical",
                                                           random_state=0),
    "influence-exact": lambda net: InfluenceAttributor(net, solver="exact", damping=0.1),
    "trak": lambda net: TRAKAttributor(net, n_models=1, random_state=0),
}

#: Attributors whose curvature is not fixed: fuzzed for errors and state, not for sums.
OTHER_ATTRIBUTORS = {
    "influence-batched": lambda net: InfluenceAttributor(net, n_components=3, random_state=0),
    "influence-cg": lambda net: InfluenceAttributor(net, solver="cg", cg_max_iter=2),
    "influence-lissa": lambda net: InfluenceAttributor(net, solver="lissa", lissa_depth=2,
                                                       lissa_repeat=1, random_state=0),
}


def prefitted(estimator):
    """``estimator`` fitted on clean data, so that a failed refit has a fit to keep."""
    X, y, _, _ = make_problem(n=12, n_features=N_FEATURES, n_classes=N_CLASSES, seed=5)
    return estimator.fit(X, y)


def finished(request):
    FINISHED.add(request.node.originalname)


# -- groupers ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", GROUPERS)
@settings(max_examples=110)
@given(data=st.data())
def test_grouper_fit_predict_transform(request, pretrained, name, data):
    use_frozen = data.draw(st.booleans())
    grouper = prefitted(GROUPERS[name](net_for(use_frozen, pretrained)))
    X = data.draw(arrays())
    y = data.draw(targets(len(X)))
    params = data.draw(group_counts(len(X)))
    grouper.set_params(**params)
    if checked_call(grouper, "fit", X, y) is not None:
        check_partition(grouper, len(X), expected_n_groups(params, len(X)))
        if hasattr(grouper, "predict"):
            X_new = data.draw(arrays())
            labels = checked_call(grouper, "predict", X_new)
            if labels is not None:
                assert labels.shape == (len(X_new),)
                assert ((0 <= labels) & (labels < grouper.n_groups_)).all()
            distances = checked_call(grouper, "transform", X_new)
            if distances is not None:
                assert distances.shape == (len(X_new), grouper.n_groups_)
                assert (distances >= 0).all()
    finished(request)


# -- attributors: fit on fuzzed data and groups ----------------------------------------------


@pytest.mark.parametrize("name", {**ATTRIBUTORS, **OTHER_ATTRIBUTORS})
@settings(max_examples=45)
@given(data=st.data())
def test_attributor_fit(request, pretrained, name, data):
    make = {**ATTRIBUTORS, **OTHER_ATTRIBUTORS}[name]
    attr = prefitted(make(net_for(data.draw(st.booleans()), pretrained)))
    X = data.draw(arrays())
    y = data.draw(targets(len(X)))
    groups, grouper = None, None
    how = data.draw(st.sampled_from(["points", "groups", "grouper", "both"]))
    if how in ("groups", "both"):
        groups = data.draw(group_labels(len(X)))
    if how in ("grouper", "both"):
        grouper = RandomGrouper(random_state=0, **data.draw(group_counts(len(X))))
    attr.set_params(grouper=grouper)
    if checked_call(attr, "fit", X, y, groups=groups) is not None:
        n_groups = len(set(groups)) if groups is not None else (
            expected_n_groups(grouper.get_params(), len(X)) if grouper else len(X))
        check_partition(attr, len(X), n_groups)
        if groups is not None:
            assert [attr.groups_[k] for k in attr.labels_] == list(groups)
        scores = checked_call(attr, "score_groups")
        assert scores is None or (scores.shape == (n_groups,) and np.isfinite(scores).all()) \
            or name == "influence-lissa"
    finished(request)


# -- valid input: every call must succeed, every result keeps an identity --------------

#: Successful, identity-checked calls on valid input per run, at least (by construction:
#: each test below asserts its share).
TARGET_SUCCESSES = 1000

#: Examples of ``test_valid_input_fits_and_scores`` per attributor; four calls each.
VALID_EXAMPLES, VALID_CALLS = 12, 4

#: Examples of ``test_group_scores_are_sums_of_member_scores`` per attributor, the
#: groupings scored in each (fit, score_groups on the training and on held-out data:
#: three calls each, beside the three per-point calls), and how many of all its
#: groupings must be non-trivial.
SUM_EXAMPLES, GROUPINGS_PER_EXAMPLE = 10, 4
SUM_CALLS = 3 + 3 * GROUPINGS_PER_EXAMPLE
MIN_NONTRIVIAL = 25

ALL_ATTRIBUTORS = {**ATTRIBUTORS, **OTHER_ATTRIBUTORS}
assert (VALID_EXAMPLES * VALID_CALLS * len(ALL_ATTRIBUTORS)
        + SUM_EXAMPLES * SUM_CALLS * len(ATTRIBUTORS)) >= TARGET_SUCCESSES


def required_calls():
    return sum(count for (_, outcome), count in FUZZED_CALLS.items() if outcome == "required")


@pytest.mark.parametrize("name", ALL_ATTRIBUTORS)
def test_valid_input_fits_and_scores(request, pretrained, name):
    """Valid training data, labels and groupings: fit and every scoring call succeed."""
    make = ALL_ATTRIBUTORS[name]

    @seed(zlib.crc32(name.encode()))  # other data for each attributor, the same every run
    @settings(max_examples=VALID_EXAMPLES)
    @given(data=st.data())
    def run(data):
        frozen = data.draw(st.sampled_from([True, True, False]))
        X, y, X_eval, y_eval = data.draw(valid_training_data(frozen))
        n = len(X)
        groups, grouper, n_groups = data.draw(valid_grouping(n))
        attr = make(net_for(frozen, pretrained)).set_params(grouper=grouper)
        required_call(attr, "fit", X, y, groups=groups)
        check_partition(attr, n, n_groups)
        if groups is not None:
            assert [attr.groups_[k] for k in attr.labels_] == list(groups)
        scores = required_call(attr, "score_groups")
        assert scores.shape == (n_groups,) and np.isfinite(scores).all()
        eval_scores = required_call(attr, "score_groups", X_eval, y_eval)
        rows = required_call(attr, "attribute", X_eval, y_eval)
        assert eval_scores.shape == (n_groups,) and np.isfinite(eval_scores).all()
        assert rows.shape == (len(X_eval), n_groups) and np.isfinite(rows).all()
        if name != "influence-cg":  # CG stopped early is not linear in the property
            # float32 rows; large inputs (saturated softmax) cost digits: the tolerance
            # is relative to the rows, whose mean may be far smaller
            np.testing.assert_allclose(rows.mean(0), eval_scores, rtol=1e-3,
                                       atol=1e-3 * max(1e-12, np.abs(rows).max()))

    before = required_calls()
    run()
    assert required_calls() - before >= VALID_EXAMPLES * VALID_CALLS
    finished(request)


def assert_group_sums(scores, labels, n_groups, per_point):
    """``scores`` of the groups ``labels`` are the sums of their members' ``per_point``.

    To 1e-4 of the total absolute score: the kernels of TRAK and the Fisher are
    float32, solved in an order that follows the grouping, and large inputs (a
    saturated softmax) amplify the rounding (TRAK: 7e-6 of the total seen). A
    member missing or counted twice moves its group by its own score, and the
    largest of ``n`` scores is at least ``1/n`` (here 1/40) of the total.
    """
    sums = np.bincount(labels, weights=per_point, minlength=n_groups)
    np.testing.assert_allclose(scores, sums, rtol=1e-4,
                               atol=1e-4 * max(1e-12, np.abs(per_point).sum()))


@pytest.mark.parametrize("name", ATTRIBUTORS)
def test_group_scores_are_sums_of_member_scores(request, pretrained, name):
    """8 to 40 rows, mostly non-trivial groupings: a group's score is its members' sum."""
    make = ATTRIBUTORS[name]
    groupings = Counter()

    @seed(zlib.crc32(name.encode()))  # other data for each attributor, the same every run
    @settings(max_examples=SUM_EXAMPLES)
    @given(data=st.data())
    def run(data):
        frozen = data.draw(st.sampled_from([True, True, True, False]))
        X, y, X_eval, y_eval = data.draw(valid_training_data(frozen, 8, 40))
        n = len(X)
        points = required_call(make(net_for(frozen, pretrained)), "fit", X, y)
        # the state is checked by the other tests: here it would double the time
        per_point = required_call(points, "score_groups", check_state=False)
        per_point_eval = required_call(points, "score_groups", X_eval, y_eval,
                                       check_state=False)
        assert per_point.shape == per_point_eval.shape == (n,)
        assert np.isfinite(per_point).all() and np.isfinite(per_point_eval).all()
        for _ in range(GROUPINGS_PER_EXAMPLE):
            groups, grouper, n_groups = data.draw(
                valid_grouping(n, nontrivial_weight=10, allow_none=False))
            grouped = make(net_for(frozen, pretrained)).set_params(grouper=grouper)
            required_call(grouped, "fit", X, y, groups=groups)
            check_partition(grouped, n, n_groups)
            assert_group_sums(required_call(grouped, "score_groups", check_state=False),
                              grouped.labels_, n_groups, per_point)
            assert_group_sums(required_call(grouped, "score_groups", X_eval, y_eval,
                                            check_state=False),
                              grouped.labels_, n_groups, per_point_eval)
            kind = "one group" if n_groups == 1 else "singletons" if n_groups == n \
                else "non-trivial"
            groupings[kind] += 1
            FUZZED_GROUPINGS[kind] += 1

    before = required_calls()
    run()
    assert required_calls() - before >= SUM_EXAMPLES * SUM_CALLS
    print(f"{name}: groupings {dict(groupings)}")
    assert groupings["non-trivial"] >= MIN_NONTRIVIAL, dict(groupings)
    finished(request)


# -- attributors: scoring fuzzed evaluation data ---------------------------------------------


@pytest.fixture(scope="module")
def fitted_attributors(pretrained):
    return {name: prefitted(make(FrozenEstimator(pretrained)).set_params(
        grouper=RandomGrouper(n_groups=4, random_state=0)))
        for name, make in {**ATTRIBUTORS, **OTHER_ATTRIBUTORS}.items()}


@pytest.mark.parametrize("name", {**ATTRIBUTORS, **OTHER_ATTRIBUTORS})
@settings(max_examples=45)
@given(data=st.data())
def test_scoring_fuzzed_evaluation_data(request, fitted_attributors, name, data):
    attr = fitted_attributors[name]
    X = data.draw(arrays())
    y = data.draw(targets(len(X)))
    scores = checked_call(attr, "score_groups", X, y)
    rows = checked_call(attr, "attribute", X, y)
    for result in (scores, rows):
        # LiSSA alone reports a diverged recursion with NaN (and a ConvergenceWarning)
        assert result is None or np.isfinite(result).all() or name == "influence-lissa"
    if scores is not None and rows is not None and name != "influence-cg" \
            and np.isfinite(scores).all() and np.isfinite(rows).all():
        # mean loss: the rows average to the scores (CG stopped early is not linear)
        assert rows.shape == (len(X), attr.n_groups_)
        np.testing.assert_allclose(rows.mean(0), scores, rtol=1e-3,
                                   atol=1e-4 * max(1e-12, np.abs(scores).max()))
    finished(request)


def test_fuzzed_calls_reach_the_target(request):
    """At least ``TARGET_SUCCESSES`` successful calls on valid input, when every fuzz
    test above ran (each of the two valid-input tests also checks its own share)."""
    fuzz_tests = {item.originalname for item in request.session.items
                  if getattr(item, "module", None) is request.module
                  and item.originalname != request.node.name}
    if not fuzz_tests <= FINISHED:
        pytest.skip(f"only {sorted(FINISHED)} of the fuzz tests ran")
    outcomes = Counter()
    for (_, outcome), count in FUZZED_CALLS.items():
        outcomes[outcome] += count
    print(f"fuzzed calls: {dict(outcomes)}; groupings: {dict(FUZZED_GROUPINGS)}")
    assert outcomes["required"] >= TARGET_SUCCESSES
    assert FUZZED_GROUPINGS["non-trivial"] >= MIN_NONTRIVIAL * len(ATTRIBUTORS)
    assert outcomes["refusal"] > 0 and outcomes["success"] > 0
