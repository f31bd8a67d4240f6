"""The retraining metrics' shared parameter descriptions, one entry a name.

Filled by ``skggda.utils._docstrings.fill_doc`` where an entry's body is
``%(name)s``: the removal metrics (:func:`removal_score`,
:func:`removal_baselines`) and the datamodels (:func:`group_leave_one_out`,
:func:`datamodel_retrainings`, :func:`linear_datamodeling_score`) describe
these alike; a function whose description differs writes its own.
"""

from ..utils._docstrings import fill_doc

RETRAINING_DOCS = {
    "estimator": """
    The training recipe, cloned for every retraining (a ``random_state``
    parameter is set per seed): a skorch net, or an attributor's
    ``estimator_`` (a converted scikit-learn model is refitted by
    scikit-learn).
    """,
    "stratify": """
    Remove the same share of every class of ``y`` (see
    :func:`points_to_remove`); the random baseline is then stratified too.
    Classifiers only.
    """,
    "order": """
    ``"score"``: whole groups in score order. ``"harmful-then-random"``
    (pruning only): the negatively scored points first, at most 5% of
    the training set, then a class-stratified random remainder (see
    :func:`harmful_then_random`).
    """,
    "n_jobs": """
    Retrainings run in parallel (joblib semantics: ``None`` is 1, ``-1``
    all cores; a Dask joblib backend spreads them over a cluster).
    """,
    "baselines": """
    The no-removal and random-removal retrainings, from
    :func:`removal_baselines` with the same data, ``fractions``,
    ``stratify``, ``n_seeds``, ``random_state`` and ``metric``; computed
    here when ``None``.
    """,
    "metric": """
    The test metric: accuracy for a classifier; RMSE (``None``) or R^2
    for a regressor.
    """,
    # the datamodels' (the removal metrics write their own n_seeds)
    "property": """
    The property whose badness is measured, as the attributors'
    ``property`` parameter.
    """,
    "n_seeds": """
    Trainings per subset of groups, with the same seeds for every subset;
    the effects are averaged over them.
    """,
}

fill_retraining_doc = fill_doc(RETRAINING_DOCS)
