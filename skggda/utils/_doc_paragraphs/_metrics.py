"""Shared docstring paragraphs of the metrics: retraining, removal orders, noisy labels, scorers."""

RETRAINING = """
.. estimator
estimator : classifier or regressor
    The training recipe, cloned for every retraining (a ``random_state``
    parameter is set per seed): a skorch net, or an attributor's
    ``estimator_`` (a converted scikit-learn model is refitted by
    scikit-learn).

.. X
X : array-like of shape (n_samples, ...)
    Training inputs, those the scores and ``labels`` refer to.

.. y
y : array-like of shape (n_samples,)
    Training labels (or regression targets).

.. removal_X_test
X_test : array-like of shape (n_test, ...)
    Test inputs, where the ``metric`` is measured.

.. property_X_test
X_test : array-like of shape (n_test, ...)
    Evaluation inputs of the property.

.. y_test
y_test : array-like of shape (n_test,)
    Labels (or regression targets) of ``X_test``.

.. scores
scores : array-like of shape (n_groups,)
    Group scores of an attribution (higher = more helpful).

.. labels
labels : array-like of shape (n_samples,)
    Group of every training point, in ``0..n_groups-1``.

.. fractions
fractions : sequence of float
    Shares of the training points removed, one evaluation each.

.. stratify
stratify : bool, default=False
    Remove the same share of every class of ``y`` (see
    :func:`points_to_remove`); the random baseline is then stratified too.
    Classifiers only.

.. n_seeds
n_seeds : int, default=3
    Retraining seeds; results are means and standard errors over them.

.. n_jobs
n_jobs : int, default=None
    Retrainings run in parallel (joblib semantics: ``None`` is 1, ``-1``
    all cores; a Dask joblib backend spreads them over a cluster).

.. random_state
random_state : int, RandomState instance or None, default=None
    Draws the retraining seeds and the random choices of removal.

.. baselines
baselines : RemovalBaselines, default=None
    The no-removal and random-removal retrainings, from
    :func:`removal_baselines` with the same data, ``fractions``,
    ``stratify``, ``n_seeds``, ``random_state`` and ``metric``; computed
    here when ``None``.

.. metric
metric : {"accuracy", "rmse", "r2"}, default=None
    The test metric: accuracy for a classifier; RMSE (``None``) or R^2
    for a regressor.

.. property
property : str, Property or callable, default="loss"
    The property whose badness is measured, as the attributors'
    ``property`` parameter.

.. loo_seeds
n_seeds : int, default=1
    Trainings per subset of groups, with the same seeds for every subset;
    the effects are averaged over them.

.. datamodel_random_state
random_state : int, RandomState instance or None, default=None
    Draws the training seeds (and, for the LDS, the random subsets).

.. lds_result
result : LDSResult
    The score, with the predicted and actual badness per subset.

.. n_subsets
n_subsets : int, default=20
    Random subsets of groups trained on.

.. subset_fraction
subset_fraction : float, default=0.5
    Fraction of the groups every subset keeps.
"""

ORDER = """
.. scores
scores : array-like of shape (n_groups,)
    Group scores (higher = more helpful).

.. labels
labels : array-like of shape (n_samples,)
    Group of every training point, in ``0..n_groups-1``.

.. fraction
fraction : float in [0, 1]
    Share of the training points removed.

.. random_state
random_state : int, RandomState instance or None, default=None
    Order of the points inside a group (and among tied groups).

.. removed
removed : ndarray of shape (round(fraction * n_samples),), sorted
    Indices of the training points removed.
"""

NOISY = """
.. scores
scores : array-like of shape (n_groups,)
    Group scores (higher = more helpful): groups are inspected from the
    lowest score up.

.. labels
labels : array-like of shape (n_samples,)
    Group of every training sample, in ``0..n_groups-1``.

.. is_noisy
is_noisy : array-like of shape (n_samples,), bool
    Which training labels were flipped (or targets corrupted, see
    :func:`corrupt_targets`).
"""

SCORER = """
.. stratify
stratify : bool, default=False
    Remove the same share of every class (see :func:`points_to_remove`).

.. n_seeds
n_seeds : int, default=1
    Retrainings averaged per evaluation.

.. random_state
random_state : int, default=0
    Seeds the retrainings: fixed, so that every candidate of a grid search
    is judged on the same retraining seeds.

.. metric
metric : {"accuracy", "rmse", "r2"}, default=None
    As for :func:`removal_score`: accuracy, or RMSE for a regressor.

.. scorer
scorer : callable
    ``scorer(estimator, X_val, y_val) -> float``, greater is better;
    ``estimator`` is an attributor, or a pipeline ending in one.
"""
