"""Shared docstring paragraphs of the attributors (TracIn, influence functions, TRAK)."""

ATTRIBUTOR = """
.. estimator
estimator : skorch net, scikit-learn model, Pipeline or FrozenEstimator, default=None
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

.. grouper
grouper : estimator, default=None
    Forms the groups in ``fit`` (e.g. :class:`~skggda.RandomGrouper`). Its
    ``random_state`` and, for model-based groupers, its ``estimator`` are
    filled in from this attributor when left at ``None``. ``None`` (and no
    ``groups`` passed to ``fit``) makes every sample its own group.

.. property
property : {"loss", "margin", "accuracy", "prediction"}, Property or callable, default="loss"
    What is attributed: the mean loss, the mean margin or a smooth
    accuracy (classifiers), the mean prediction (regressors) on the
    evaluation data, any :mod:`skggda.properties` object (per-class loss,
    fairness gap, ...) or ``fn(module, X, y) -> scalar`` (treated as
    lower-is-better; see :func:`~skggda.properties.make_property`).
    ``"margin"`` and ``"accuracy"`` raise ``ValueError`` in ``fit`` for
    a regressor.

.. param_subset
param_subset : "all", "last" or list of str, default="all"
    Parameters to differentiate: all trainable ones, those of the last
    layer, or the named parameters / modules (e.g.
    :data:`~skggda.models.LAST_BLOCK` for the text classifier).

.. batch_size
batch_size : int or "auto", default="auto"
    Samples per batch in the gradient passes; bounds memory. ``"auto"``
    takes the largest power of two whose activations, their gradients
    and the pass's per-sample buffers fit 256 MiB on the CPU (a quarter
    of the free GPU memory, at most 4 GiB, on CUDA): large batches for
    tiny nets, small ones for big nets.

.. n_jobs
n_jobs : int, default=None
    With a Dask joblib backend active
    (``joblib.parallel_config(backend="dask")``) and ``n_jobs`` set (other
    than 1), the training-set passes are split over the workers: row blocks
    whose group sums are added in float64, with the same result as in this
    process. A Dask array ``X`` is always split by its row chunks (on the
    active ``distributed`` client, else Dask's default scheduler); other
    joblib backends leave the passes in this process. See the user guide's
    "Running on a Dask cluster". A grouper whose own ``n_jobs`` is
    ``None`` inherits it.

.. verbose
verbose : int, default=0
    Progress bars over the gradient passes when positive.

.. random_state
random_state : int, RandomState instance or None, default=None
    Seeds the net's training (when the net's own ``random_state`` is
    ``None``) and the grouper (likewise).

.. estimator_
estimator_ : skorch net or ConvertedModel
    The trained (or frozen) model that is attributed (a Pipeline's last
    step).

.. grouper_
grouper_ : estimator
    The fitted grouper, when ``grouper`` was given (absent otherwise).

.. labels_
labels_ : ndarray of shape (n_samples,)
    Group of every training sample, in ``0..n_groups_-1``.

.. groups_
groups_ : ndarray of shape (n_groups,)
    Original label of each group (the values passed as ``groups``; with
    a grouper or singletons, ``0..n_groups_-1``).

.. n_groups_
n_groups_ : int
    Number of groups: the length of every score vector.

.. classes_
classes_ : ndarray of shape (n_classes,)
    Class labels (classifiers only: a regressor has none).

.. timings_
timings_ : dict of str to float
    Seconds ``fit`` spent per stage: ``training``, ``grouping`` and
    ``gradients`` (the training-side state), with dotted sub-stages.
    Scoring methods leave the fitted estimator unchanged: collect their
    times with :func:`skggda.utils.record_timings`.

.. n_features_in_
n_features_in_ : int
    Number of features seen during ``fit``.
"""
