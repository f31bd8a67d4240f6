"""The groupers' shared parameter and attribute descriptions, one entry a name.

Filled into the groupers' docstrings by ``skggda.utils._docstrings.fill_doc``
where an entry's body is ``%(name)s``: a description the K-Means groupers (or
all groupers) share word for word is written once. A grouper whose
description differs writes its own.
"""

from ..utils._docstrings import fill_doc

GROUPER_DOCS = {
    "group_size": """
    Target number of samples per group; the number of groups is
    ``ceil(n_samples / group_size)``. ``group_size=1`` gives singletons.
    """,
    "algorithm": """
    ``"lloyd"``: k-means++ and Lloyd over all clusters. ``"hierarchical"``:
    coarse-to-fine (about ``sqrt(k)`` regions, then K-Means inside each),
    whose cost grows like ``sqrt(k)`` instead of ``k``. ``"auto"`` uses
    Lloyd up to 128 groups.
    """,
    "tol": """
    Tolerance on the squared center shift, relative to the mean feature
    variance (paper: 1e-3).
    """,
    "n_jobs": """
    With a Dask joblib backend active
    (``joblib.parallel_config(backend="dask")``) and ``n_jobs`` set (other
    than 1), the training-set passes (the features of the rows the centers
    are fitted on, then the assignment of every row) and ``predict`` are
    split over the workers, with the same labels as in this process; a
    model grouper ships its net to every worker once. A Dask array ``X``
    is always split by its row chunks (on the active ``distributed``
    client, else Dask's default scheduler). See the user guide's "Running
    on a Dask cluster". Inside an attributor, ``None`` takes the
    attributor's.
    """,
    "estimator": """
    The model (classifier or regressor) whose features are clustered. A
    plain net is cloned and trained in ``fit``; ``FrozenEstimator(net)``
    is used as is; scikit-learn's models and pipelines as for
    :class:`~skggda.TracInAttributor`; ``None`` trains the default MLP.
    Inside an attributor (``grouper=``) it is filled in with the
    attributor's fitted model, so nothing is trained twice.
    """,
    # the net groupers' (KMeansGrouper and RandomGrouper write their own)
    "random_state": """
    Seeds the sample the centers are fitted on, K-Means and, when the
    net is trained here, its training.
    """,
    "labels_": """
    Group of every training sample, in ``0..n_groups_-1``; no group is
    empty. The smallest signed integer dtype that holds ``n_groups_``.
    """,
    "cluster_centers_": """
    Centers in the (unwhitened) feature space, whose width ``n_hidden``
    is that of the net's features.
    """,
    "inertia_": """
    Sum of squared distances of the training samples to their centers,
    in the whitened space.
    """,
    "fit_time_": """
    Seconds spent in ``fit``, including training the net when it was
    trained here.
    """,
}

fill_grouper_doc = fill_doc(GROUPER_DOCS)
