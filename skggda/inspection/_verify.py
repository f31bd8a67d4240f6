"""Check an attribution by retraining: does removing its most harmful groups help?

:func:`verify_removal` retrains a fitted attributor's model without its
lowest-scoring groups, and as a control without random groups of the same
total size, and measures the validation metric beside the model retrained on
everything. The retrainings are the jobs of :mod:`skggda.metrics`' removal
evaluation (:func:`~skggda.metrics.removal_score`): independent joblib jobs,
so ``joblib.parallel_config(backend="dask")`` spreads them over a cluster.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import HasMethods, validate_params
from sklearn.utils.validation import check_is_fitted

from ..metrics._docs import fill_retraining_doc
from ..metrics._orders import points_to_remove
from ..metrics._removal import _RetrainingSetup
from ..metrics._retraining import SEEDING_PARAMS, _sem
from ..metrics._scorers import _fold
from ..utils._targets import is_regression

#: What each record's ``removed`` says was left out of the retraining.
REMOVED = ("none", "harmful", "random")


@validate_params(
    {
        "attributor": [HasMethods(["fit"])],
        "X_valid": ["array-like"],
        "y_valid": ["array-like"],
        "fractions": ["array-like"],
        **SEEDING_PARAMS,
    },
    prefer_skip_nested_validation=True,
)
@fill_retraining_doc
def verify_removal(attributor, X_valid, y_valid, *, fractions=(0.05, 0.1), n_seeds=3,
                   n_jobs=None, random_state=0):
    """Retrain without the most harmful groups, and without random ones: which does better?

    The attribution's claim is checked by what it predicts: the groups with
    the lowest scores for the validation property hurt the model, so a model
    retrained without them should do better on the validation data than one
    retrained without as many rows chosen at random. For every seed the
    attributor's model recipe is retrained (a clone of ``estimator_``, seeded)
    on all training rows (``removed="none"``), without the ``fraction`` of
    rows in the lowest-scoring groups (``"harmful"``: whole groups in score
    order, the last one partially, as
    :func:`~skggda.metrics.removal_score` removes them) and without random
    groups of the same total row count (``"random"``). Each seed trains
    ``1 + 2 * len(fractions)`` models.

    Parameters
    ----------
    attributor : fitted attributor
        E.g. a fitted :class:`~skggda.TracInAttributor`, or a Pipeline ending
        in one. Its training data, groups and model recipe are retrained.
    X_valid : array-like of shape (n_valid, ...)
        Validation inputs: the property is attributed on them
        (``score_groups(X_valid, y_valid)``) and the retrained models are
        measured on them.
    y_valid : array-like of shape (n_valid,)
        Their labels (or regression targets).
    fractions : sequence of float, default=(0.05, 0.1)
        Shares of the training rows removed, each in ``(0, 1)``.
    n_seeds : int, default=3
        Retraining seeds; the summaries are means and standard errors over
        them.
    n_jobs : int, default=None
        %(n_jobs)s
    random_state : int, RandomState instance or None, default=0
        Draws the retraining seeds, the random groups and the order of rows
        inside the last, partially removed group.

    Returns
    -------
    result : Bunch
        With keys

        - ``table``: list of dict, one record per retraining with
          ``removed`` (``"none"``, ``"harmful"`` or ``"random"``),
          ``fraction`` (0.0 for ``"none"``), ``seed`` and ``metric`` (its
          value);
        - ``metric``: ``"accuracy"`` for a classifier, ``"r2"`` for a
          regressor (greater is better for both);
        - ``fractions``: ndarray of shape (n_fractions,);
        - ``baseline``, ``baseline_sem``: float, the metric with no removal,
          mean and standard error over seeds;
        - ``harmful``, ``harmful_sem``, ``random``, ``random_sem``: ndarray
          of shape (n_fractions,), the same after removing the harmful or
          random groups;
        - ``scores``: ndarray of shape (n_groups,), the group scores the
          removal followed.

    See Also
    --------
    skggda.metrics.removal_score : Remove the most or least important points by score.
    group_report : The groups and their scores, described.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from skggda import RandomGrouper, TracInAttributor
    >>> from skggda.inspection import verify_removal
    >>> from skggda.models import make_classifier
    >>> X, y = make_classification(120, 4, random_state=0)
    >>> X = X.astype("float32")
    >>> attributor = TracInAttributor(make_classifier((8,), max_epochs=2),
    ...     grouper=RandomGrouper(group_size=10), random_state=0).fit(X[:80], y[:80])
    >>> result = verify_removal(attributor, X[80:], y[80:], fractions=[0.1], n_seeds=1)
    >>> [(r["removed"], r["fraction"]) for r in result.table]
    [('none', 0.0), ('harmful', 0.1), ('random', 0.1)]
    """
    fractions = np.asarray(fractions, dtype=float).reshape(-1)
    if fractions.size == 0 or not np.all((fractions > 0) & (fractions < 1)):
        raise ValueError(f"fractions must be a non-empty sequence of shares in (0, 1), got "
                         f"{fractions.tolist()}.")
    fitted = attributor[-1] if hasattr(attributor, "steps") else attributor
    check_is_fitted(fitted)
    model, X, y, X_valid, y_valid, scores = _fold(attributor, X_valid, y_valid)
    metric = "r2" if is_regression(model.estimator_) else "accuracy"
    setup = _RetrainingSetup.build(X, y, X_valid, y_valid, fractions, False, n_seeds,
                                   random_state, metric)
    labels = model.labels_
    everything = np.arange(setup.n)
    jobs, records = [], []
    for seed in setup.seeds:
        seed = int(seed)
        shuffled = check_random_state(seed).permutation(len(scores)).astype(float)
        jobs.append((everything, seed))
        records.append(dict(removed="none", fraction=0.0, seed=seed))
        for fraction in setup.fractions:
            for removed, order in (("harmful", scores), ("random", shuffled)):
                gone = points_to_remove(order, labels, fraction, most_important=False,
                                        random_state=seed)
                jobs.append((np.setdiff1d(everything, gone), seed))
                records.append(dict(removed=removed, fraction=float(fraction), seed=seed))
    values = setup.retrain(model.estimator_, jobs, n_jobs)
    for record, value in zip(records, values):
        record["metric"] = float(value)
    return _summary(records, setup.fractions, metric, scores)


def _summary(records, fractions, metric, scores):
    """The Bunch of :func:`verify_removal`: the records, and means with standard errors."""

    def values(removed, fraction=None):
        return np.array([r["metric"] for r in records if r["removed"] == removed
                         and (fraction is None or r["fraction"] == fraction)])

    baseline = values("none")
    out = Bunch(table=records, metric=metric, fractions=fractions, scores=np.asarray(scores),
                baseline=float(baseline.mean()), baseline_sem=float(_sem(baseline)))
    for removed in ("harmful", "random"):
        per = [values(removed, f) for f in fractions]
        out[removed] = np.array([v.mean() for v in per])
        out[f"{removed}_sem"] = np.array([_sem(v) for v in per], dtype=float)
    return out
