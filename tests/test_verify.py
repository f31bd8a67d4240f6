"""``skggda.inspection.verify_removal``: retrain without the harmful groups, and random ones."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from conftest import tiny_net
from skggda import TracInAttributor
from skggda.inspection import verify_removal


def region_flip(seed=0, n=300):
    """Training rows whose labels are all flipped in one region, grouped by tens.

    The ``x1 > 0.85`` region (55 of 300 rows at seed 0) has every label
    flipped; its rows fill the first groups, so the harmful groups are known.
    The validation rows are clean.
    """
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(2 * n, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    X, X_valid, y, y_valid = X[:n], X[n:], y[:n], y[n:]
    bad = X[:, 1] > 0.85
    groups = np.empty(n, dtype=int)
    groups[np.argsort(~bad, kind="stable")] = np.arange(n) // 10
    return X, np.where(bad, 1 - y, y), groups, bad, X_valid, y_valid


@pytest.fixture(scope="module")
def fitted():
    X, y, groups, bad, X_valid, y_valid = region_flip()
    attributor = TracInAttributor(tiny_net(epochs=20), random_state=0)
    return attributor.fit(X, y, groups=groups), X_valid, y_valid


def test_removing_the_known_harmful_groups_beats_random_removal(fitted):
    attributor, X_valid, y_valid = fitted
    result = verify_removal(attributor, X_valid, y_valid, fractions=[0.2], n_seeds=2)
    # measured: no removal 0.815, harmful 0.983, random 0.865 (two seeds)
    assert result.harmful[0] > result.random[0] + 0.05
    assert result.harmful[0] > result.baseline + 0.05
    assert result.metric == "accuracy"
    assert result.scores.shape == (attributor.n_groups_,)


def test_table_has_a_record_per_retraining(fitted):
    attributor, X_valid, y_valid = fitted
    result = verify_removal(attributor, X_valid, y_valid, fractions=(0.05, 0.1), n_seeds=2,
                            random_state=1)
    table = result.table
    assert len(table) == 2 * (1 + 2 * 2)
    assert [r["removed"] for r in table[:5]] == ["none", "harmful", "random", "harmful",
                                                  "random"]
    assert [r["fraction"] for r in table[:5]] == [0.0, 0.05, 0.05, 0.1, 0.1]
    assert len({r["seed"] for r in table}) == 2
    assert set(table[0]) == {"removed", "fraction", "seed", "metric"}
    for removed in ("harmful", "random"):
        per_fraction = [np.mean([r["metric"] for r in table
                                 if r["removed"] == removed and r["fraction"] == f])
                        for f in (0.05, 0.1)]
        np.testing.assert_allclose(result[removed], per_fraction)
    baseline = [r["metric"] for r in table if r["removed"] == "none"]
    assert result.baseline == pytest.approx(np.mean(baseline))
    assert result.baseline_sem == pytest.approx(np.std(baseline, ddof=1) / np.sqrt(2))


def test_bad_fractions_and_unfitted_attributor(fitted):
    attributor, X_valid, y_valid = fitted
    for fractions in ([0.0], [1.0], []):
        with pytest.raises(ValueError, match="fractions"):
            verify_removal(attributor, X_valid, y_valid, fractions=fractions)
    with pytest.raises(NotFittedError):
        verify_removal(TracInAttributor(tiny_net()), X_valid, y_valid)


def test_a_regressor_is_measured_by_r2():
    from sklearn.metrics import r2_score

    from skggda.models import make_regressor

    rng = np.random.RandomState(0)
    X = rng.normal(size=(160, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=160)).astype(np.float32)
    attributor = TracInAttributor(make_regressor((8,), max_epochs=40, lr=0.05, random_state=0),
                                  random_state=0).fit(X[:120], y[:120])
    result = verify_removal(attributor, X[120:], y[120:], fractions=[0.1], n_seeds=1)
    assert result.metric == "r2"
    net = attributor.estimator_
    # the no-removal retraining is a clone with its own seed: an R^2 near the fitted
    # net's (measured 0.969 and 0.949); an accuracy of regression targets would be 0
    fitted_r2 = r2_score(y[120:], net.predict(X[120:]).reshape(-1))
    assert result.baseline > 0.9 and abs(result.baseline - fitted_r2) < 0.05


def test_a_pipeline_ending_in_an_attributor():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, groups, _, X_valid, y_valid = region_flip(n=100)
    pipeline = make_pipeline(StandardScaler(), TracInAttributor(tiny_net(epochs=3),
                                                                random_state=0))
    pipeline.fit(X, y, tracinattributor__groups=groups)
    result = verify_removal(pipeline, X_valid, y_valid, fractions=[0.1], n_seeds=1)
    np.testing.assert_allclose(result.scores, pipeline[-1].score_groups(
        pipeline[:-1].transform(X_valid), y_valid))
    assert len(result.table) == 3
