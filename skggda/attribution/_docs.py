"""The attributors' shared parameter and attribute descriptions, one entry a name.

Filled into the docstrings of :class:`~skggda.TracInAttributor`,
:class:`~skggda.InfluenceAttributor` and :class:`~skggda.TRAKAttributor` by
``skggda.utils._docstrings.fill_doc``, where each entry's body is
``%(name)s``: a change to a shared description is made once.
"""

from ..utils._docstrings import fill_doc

ATTRIBUTOR_DOCS = {
    "estimator": """
    The model to attribute, a classifier or a regressor. A skorch net is
    cloned and trained in ``fit``; a
    :class:`~sklearn.frozen.FrozenEstimator` wrapping a fitted net is used
    as is. scikit-learn's ``LogisticRegression``, ``SGDClassifier``,
    ``SGDRegressor``, ``LinearRegression``, ``Ridge``, ``MLPClassifier``
    and ``MLPRegressor`` are converted to equivalent torch modules with
    their L2 penalty (:class:`~skggda.models.ConvertedModel`): an unfitted
    one is fitted by scikit-learn in ``fit``, a fitted one is used as is.
    A :class:`~sklearn.pipeline.Pipeline` ending in any of these is
    attributed through its last step; its first steps preprocess the
    training and the property data. ``None`` trains
    :func:`~skggda.models.make_classifier`'s default (two hidden layers
    of 50).
    """,
    "grouper": """
    Forms the groups in ``fit`` (e.g. :class:`~skggda.RandomGrouper`). Its
    ``random_state`` and, for model-based groupers, its ``estimator`` are
    filled in from this attributor when left at ``None``. ``None`` (and no
    ``groups`` passed to ``fit``) makes every sample its own group.
    """,
    "property": """
    What is attributed: the mean loss, the mean margin or a smooth
    accuracy (classifiers), the mean prediction (regressors) on the
    evaluation data, any :mod:`skggda.properties` object (per-class loss,
    fairness gap, ...) or ``fn(module, X, y) -> scalar`` (treated as
    lower-is-better; see :func:`~skggda.properties.make_property`).
    ``"margin"`` and ``"accuracy"`` raise ``ValueError`` in ``fit`` for
    a regressor.
    """,
    "param_subset": """
    Parameters to differentiate: all trainable ones, those of the last
    layer, or the named parameters / modules (e.g.
    :data:`~skggda.models.TEXT_LAST_BLOCK` for the text classifier).
    """,
    "batch_size": """
    Samples per batch in the gradient passes; bounds memory. ``"auto"``
    takes the largest power of two whose activations, their gradients
    and the pass's per-sample buffers fit 32 MiB on the CPU (a quarter
    of the free GPU memory, at most 4 GiB, on CUDA): large batches for
    tiny nets, small ones for big nets.
    """,
    "memory": """
    A folder for the group store (see the user guide's "Explaining
    predictions"), as scikit-learn's ``memory=``: ``fit`` writes the
    store there as a ``.npy`` file and the fitted estimator holds a
    handle to it (read as a memory map, in row blocks), so a store of
    any size is kept and ``attribute`` stays a matrix product. ``None``
    keeps the store in memory when it fits 256 MiB, and otherwise streams
    the training data per call. :mod:`skggda.io` saves the handle (the
    file's name and SHA-256), not the data: the folder must stay with
    the saved file. Every ``fit`` writes a new file and leaves the older
    ones (a saved estimator may refer to them): clear the folder when
    they are no longer needed.
    """,
    "n_jobs": """
    With a Dask joblib backend active
    (``joblib.parallel_config(backend="dask")``) and ``n_jobs`` set (other
    than 1), the training-set passes are split over the workers: row blocks
    whose group sums are added in float64, with the same result as in this
    process. A Dask array ``X`` is always split by its row chunks (on the
    active ``distributed`` client, else Dask's default scheduler); other
    joblib backends leave the passes in this process. See the user guide's
    "Running on a Dask cluster". A grouper whose own ``n_jobs`` is
    ``None`` inherits it.
    """,
    "groups_": """
    Original label of each group (the values passed as ``groups``; with
    a grouper or singletons, ``0..n_groups_-1``).
    """,
    "timings_": """
    Seconds ``fit`` spent per stage: ``training``, ``grouping`` and
    ``gradients`` (the training-side state), with dotted sub-stages.
    Scoring methods leave the fitted estimator unchanged: collect their
    times with :func:`skggda.utils.record_timings`.
    """,
}

fill_attributor_doc = fill_doc(ATTRIBUTOR_DOCS)
