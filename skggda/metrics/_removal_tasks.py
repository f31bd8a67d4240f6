"""The paper's two removal tasks, as functions of an attribution's scores.

* :func:`retraining_score` -- remove the *most* important 1/5/10/20% and
  retrain: a good attribution makes accuracy drop (lower is better);
* :func:`pruning_score` -- remove the *least* important 25/50/75% and
  retrain: a good attribution keeps accuracy (higher is better).

Both are :func:`~skggda.metrics.removal_score` with the paper's fractions
and direction (see :mod:`._removal` for how points are removed).
"""

from __future__ import annotations

from sklearn.utils._param_validation import validate_params

from ._docs import fill_retraining_doc
from ._removal import removal_score
from ._retraining import REMOVAL_PARAMS


@validate_params(REMOVAL_PARAMS, prefer_skip_nested_validation=True)
@fill_retraining_doc
def retraining_score(estimator, X, y, X_test, y_test, scores, labels, *,
                     fractions=(0.01, 0.05, 0.10, 0.20), stratify=False, n_seeds=3,
                     n_jobs=None, random_state=None, baselines=None, metric=None):
    """Test accuracy after removing the *most* important points (lower is better).

    For a regressor the test RMSE (higher is better: the attribution found
    the points the model needs) or R^2 (``metric="r2"``, lower is better).
    :func:`removal_score` with ``most_important=True``.

    Parameters
    ----------
    estimator : classifier or regressor
        %(estimator)s
    X : array-like of shape (n_samples, ...)
        Training inputs, those the scores and ``labels`` refer to.
    y : array-like of shape (n_samples,)
        Training labels (or regression targets).
    X_test : array-like of shape (n_test, ...)
        Test inputs, where the ``metric`` is measured.
    y_test : array-like of shape (n_test,)
        Labels (or regression targets) of ``X_test``.
    scores : array-like of shape (n_groups,)
        Group scores of an attribution (higher = more helpful).
    labels : array-like of shape (n_samples,)
        Group of every training point, in ``0..n_groups-1``.
    fractions : sequence of float, default=(0.01, 0.05, 0.10, 0.20)
        Shares of the training points removed, one evaluation each (the
        paper's).
    stratify : bool, default=False
        %(stratify)s
    n_seeds : int, default=3
        Retraining seeds; results are means and standard errors over them.
    n_jobs : int, default=None
        %(n_jobs)s
    random_state : int, RandomState instance or None, default=None
        Draws the retraining seeds and the random choices of removal.
    baselines : RemovalBaselines, default=None
        %(baselines)s
    metric : {"accuracy", "rmse", "r2"}, default=None
        %(metric)s

    Returns
    -------
    result : RemovalResult
        Test ``metric`` after removing the most important points, with the
        baselines.

    Examples
    --------
    Eight groups of ten points, the two highest-scoring ones removed first:

    >>> import numpy as np
    >>> from sklearn.datasets import make_blobs
    >>> from skggda.metrics import retraining_score
    >>> from skggda.models import make_classifier
    >>> X, y = make_blobs(80, 3, centers=2, random_state=0)
    >>> labels, group_scores = np.arange(80) % 8, np.random.RandomState(0).normal(size=8)
    >>> result = retraining_score(make_classifier((4,), max_epochs=2), X, y, X, y,
    ...     group_scores, labels, fractions=[0.25], n_seeds=1, random_state=0)
    >>> result.most_important, result.kept_class_share.shape
    (True, (1, 2))
    """
    return removal_score(estimator, X, y, X_test, y_test, scores, labels, fractions=fractions,
                         most_important=True, stratify=stratify, n_seeds=n_seeds,
                         n_jobs=n_jobs, random_state=random_state, baselines=baselines,
                         metric=metric)


@validate_params(REMOVAL_PARAMS, prefer_skip_nested_validation=True)
@fill_retraining_doc
def pruning_score(estimator, X, y, X_test, y_test, scores, labels, *,
                  fractions=(0.25, 0.50, 0.75), stratify=False, order="score", n_seeds=3,
                  n_jobs=None, random_state=None, baselines=None, metric=None):
    """Test accuracy after removing the *least* important points (higher is better).

    For a regressor the test RMSE (lower is better) or R^2 (``metric="r2"``,
    higher is better). :func:`removal_score` with ``most_important=False``.

    Parameters
    ----------
    estimator : classifier or regressor
        %(estimator)s
    X : array-like of shape (n_samples, ...)
        Training inputs, those the scores and ``labels`` refer to.
    y : array-like of shape (n_samples,)
        Training labels (or regression targets).
    X_test : array-like of shape (n_test, ...)
        Test inputs, where the ``metric`` is measured.
    y_test : array-like of shape (n_test,)
        Labels (or regression targets) of ``X_test``.
    scores : array-like of shape (n_groups,)
        Group scores of an attribution (higher = more helpful).
    labels : array-like of shape (n_samples,)
        Group of every training point, in ``0..n_groups-1``.
    fractions : sequence of float, default=(0.25, 0.50, 0.75)
        Shares of the training points pruned, one evaluation each (the
        paper's).
    stratify : bool, default=False
        %(stratify)s
    order : {"score", "harmful-then-random"}, default="score"
        ``"score"``: whole groups from the lowest score up.
        ``"harmful-then-random"`` removes only the harmful points by score
        and the rest at random (see :func:`harmful_then_random`), an order
        that does not fall below random removal where plain score order
        does.
    n_seeds : int, default=3
        Retraining seeds; results are means and standard errors over them.
    n_jobs : int, default=None
        %(n_jobs)s
    random_state : int, RandomState instance or None, default=None
        Draws the retraining seeds and the random choices of removal.
    baselines : RemovalBaselines, default=None
        %(baselines)s
    metric : {"accuracy", "rmse", "r2"}, default=None
        %(metric)s

    Returns
    -------
    result : RemovalResult
        The test ``metric`` once the least important points are pruned (and baselines).

    Examples
    --------
    Pruning the harmful points by score, the rest at random:

    >>> import numpy as np
    >>> from skggda.metrics import pruning_score
    >>> from skggda.models import make_classifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(80, 3))
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> result = pruning_score(make_classifier((4,), max_epochs=2), X, y, X, y,
    ...     rng.normal(size=80), np.arange(80), fractions=[0.5],
    ...     order="harmful-then-random", n_seeds=1, random_state=0)
    >>> result.most_important, result.fractions.tolist()
    (False, [0.5])
    """
    return removal_score(estimator, X, y, X_test, y_test, scores, labels, fractions=fractions,
                         most_important=False, stratify=stratify, order=order,
                         n_seeds=n_seeds, n_jobs=n_jobs, random_state=random_state,
                         baselines=baselines, metric=metric)
