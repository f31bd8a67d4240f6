"""Scorers for ``GridSearchCV``: judge a fitted attributor on the validation fold.

Each scorer is called as ``scorer(attributor, X_val, y_val)`` on an
attributor (or a pipeline ending in one) fitted on the training fold. The
validation fold is the property's evaluation data: the scorer attributes the
property on it, removes training points by score, retrains the attributor's
net recipe on what is left and measures accuracy (a regressor: RMSE or R^2)
on the validation fold. Greater is better for every scorer, as
``GridSearchCV`` expects: an RMSE is returned negated.
"""

from __future__ import annotations

from numbers import Integral, Real

from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ..utils._targets import encode_targets
from ._datamodels import linear_datamodeling_score
from ._removal import removal_score
from ._retraining import METRICS

#: The fraction a removal scorer removes by default, by ``most_important``.
_DEFAULT_FRACTION = {True: 0.1, False: 0.5}


def _fold(estimator, X_val, y_val):
    """``(attributor, X, y, X_val, y_val, scores)``: the attributor, its training fold, the
    validation fold as its model sees it (encoded labels) and the fold's group scores.

    ``estimator`` is an attributor or a :class:`~sklearn.pipeline.Pipeline`
    ending in one, whose other steps then transform ``X_val`` first.
    """
    attributor = estimator
    if hasattr(estimator, "steps"):
        X_val, attributor = estimator[:-1].transform(X_val), estimator[-1]
    scores = attributor.score_groups(X_val, y_val)
    X, y = attributor._training_data()
    # an estimator that is a pipeline preprocesses the fold for its last step too
    return (attributor, X, y, attributor._model_input(X_val),
            encode_targets(y_val, getattr(attributor, "classes_", None)), scores)


def _greater_is_better(result):
    """``result``'s test values oriented so that greater is better (an RMSE negated)."""
    sign = 1.0 if METRICS[result.metric][0] else -1.0
    return sign * result.accuracy[0], sign * result.full_accuracy


@validate_params(
    {
        "fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "most_important": ["boolean"],
        "stratify": ["boolean"],
        "n_seeds": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "metric": [StrOptions(set(METRICS)), None],
    },
    prefer_skip_nested_validation=True,
)
def make_removal_scorer(fraction=None, *, most_important, stratify=False, n_seeds=1,
                        random_state=0, metric=None):
    """A ``GridSearchCV`` scorer: retrain without ``fraction`` of the fold, by group score.

    ``most_important=True`` scores the validation accuracy *drop* after
    removing the most important points, against retraining on all training
    points with the same seeds: a larger drop means the attribution found
    the points that matter (a regressor: the RMSE rise, or the R^2 drop).
    ``most_important=False`` scores the validation accuracy after pruning
    the least important points (a regressor: the negated RMSE, or the R^2).

    Parameters
    ----------
    fraction : float in (0, 1), default=None
        Share of the training fold removed. ``None`` removes 10% of the
        most important points, or prunes 50% of the least important.
    most_important : bool
        Remove the highest-scoring points (the retraining task) or prune
        the lowest-scoring ones.
    stratify : bool, default=False
        Remove the same share of every class (see :func:`points_to_remove`).
    n_seeds : int, default=1
        Retrainings averaged per evaluation.
    random_state : int, default=0
        Seeds the retrainings: fixed, so that every candidate of a grid search
        is judged on the same retraining seeds.
    metric : {"accuracy", "rmse", "r2"}, default=None
        As for :func:`removal_score`: accuracy, or RMSE for a regressor.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X_val, y_val) -> float``, greater is better;
        ``estimator`` is an attributor, or a pipeline ending in one. Named
        after its task and share: ``retraining_10``, ``pruning_25``.

    Examples
    --------
    >>> from skggda.metrics import make_removal_scorer
    >>> make_removal_scorer(most_important=True).__name__
    'retraining_10'
    >>> make_removal_scorer(0.25, most_important=False).__name__
    'pruning_25'
    """
    if fraction is None:
        fraction = _DEFAULT_FRACTION[most_important]

    def scorer(estimator, X_val, y_val):
        attributor, X, y, X_val, y_val, scores = _fold(estimator, X_val, y_val)
        result = removal_score(attributor.estimator_, X, y, X_val, y_val, scores,
                               attributor.labels_, most_important=most_important,
                               fractions=[fraction], stratify=stratify, n_seeds=n_seeds,
                               random_state=random_state, metric=metric)
        value, full = _greater_is_better(result)
        return float(full - value) if most_important else float(value)

    kind = "retraining" if most_important else "pruning"
    scorer.__name__ = f"{kind}_{round(100 * fraction)}"
    return scorer


@validate_params(
    {
        "n_subsets": [Interval(Integral, 1, None, closed="left")],
        "subset_fraction": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_lds_scorer(n_subsets=10, *, subset_fraction=0.5, random_state=0):
    """Linear datamodeling score of the attributor's group scores on the validation fold.

    Parameters
    ----------
    n_subsets : int, default=10
        Random subsets of groups the attributor's net is retrained on.
    subset_fraction : float, default=0.5
        Fraction of the groups every subset keeps.
    random_state : int, default=0
        Seeds the retrainings: fixed, so that every candidate of a grid search
        is judged on the same retraining seeds.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X_val, y_val) -> float``, greater is better;
        ``estimator`` is an attributor, or a pipeline ending in one.

    Examples
    --------
    >>> from skggda.metrics import make_lds_scorer
    >>> make_lds_scorer().__name__
    'lds'
    """
    def scorer(estimator, X_val, y_val):
        attributor, X, y, X_val, y_val, scores = _fold(estimator, X_val, y_val)
        result = linear_datamodeling_score(
            attributor.estimator_, X, y, X_val, y_val, scores, attributor.labels_,
            property=attributor.property, n_subsets=n_subsets,
            subset_fraction=subset_fraction, random_state=random_state,
        )
        return result.score

    scorer.__name__ = "lds"
    return scorer
