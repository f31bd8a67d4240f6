"""Shared docstring paragraphs of the groupers (random and K-Means)."""

GROUPER = """
.. group_size
group_size : int, default=64
    Target number of samples per group; the number of groups is
    ``ceil(n_samples / group_size)``. ``group_size=1`` gives singletons.

.. n_groups
n_groups : int, default=None
    Number of groups; when set it wins over ``group_size``.

.. labels_
labels_ : ndarray of shape (n_samples,)
    Group of every training sample, in ``0..n_groups_-1``; no group is
    empty. The smallest signed integer dtype that holds ``n_groups_``.

.. n_groups_
n_groups_ : int
    Number of groups formed.

.. fit_time_
fit_time_ : float
    Seconds spent in ``fit``.

.. n_features_in_
n_features_in_ : int
    Number of features seen during ``fit``.

.. X
X : array-like of shape (n_samples, ...)
    Samples, in memory or streamed (a memmap, h5py/zarr/Dask array, or a
    torch Dataset of ``(x, y)`` items).

.. y
y : array-like of shape (n_samples,), default=None
    Labels, which Grad-K-Means reads its features at (without them: at
    the net's predicted labels); the other groupers ignore them.
"""

KMEANS = """
.. algorithm
algorithm : {"auto", "lloyd", "hierarchical"}, default="auto"
    ``"lloyd"``: k-means++ and Lloyd over all clusters. ``"hierarchical"``:
    coarse-to-fine (about ``sqrt(k)`` regions, then K-Means inside each),
    whose cost grows like ``sqrt(k)`` instead of ``k``. ``"auto"`` uses
    Lloyd up to 128 groups.

.. max_iter
max_iter : int, default=60
    Maximum Lloyd iterations (paper: 60).

.. tol
tol : float, default=1e-3
    Tolerance on the squared center shift, relative to the mean feature
    variance (paper: 1e-3).

.. n_jobs
n_jobs : int, default=None
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

.. verbose
verbose : int, default=0
    Progress bars over the row blocks of long passes when positive.

.. random_state
random_state : int, RandomState instance or None, default=None
    Seeds the sample the centers are fitted on and K-Means.

.. inertia_
inertia_ : float
    Sum of squared distances of the training samples to their centers,
    in the whitened space.

.. n_iter_
n_iter_ : int
    Lloyd iterations run (coarse plus fine level for ``"hierarchical"``).

.. distances
distances : ndarray of shape (n_samples, n_groups), float32
    Euclidean distance of every sample to every center, in the whitened
    feature space.
"""

MODEL_GROUPER = """
.. estimator
estimator : skorch net, scikit-learn model, Pipeline or FrozenEstimator, default=None
    The model (classifier or regressor) whose features are clustered. A
    plain net is cloned and trained in ``fit``; ``FrozenEstimator(net)``
    is used as is; scikit-learn's models and pipelines as for
    :class:`~skggda.TracInAttributor`; ``None`` trains the default MLP.
    Inside an attributor (``grouper=``) it is filled in with the
    attributor's fitted model, so nothing is trained twice.

.. batch_size
batch_size : int or "auto", default="auto"
    Samples per forward pass when computing features; ``"auto"`` sizes
    it from the net's activations (as the attributors do).

.. random_state
random_state : int, RandomState instance or None, default=None
    Seeds the sample the centers are fitted on, K-Means and, when the
    net is trained here, its training.

.. cluster_centers_
cluster_centers_ : ndarray of shape (n_groups, n_hidden)
    Centers in the (unwhitened) feature space, whose width ``n_hidden``
    is that of the net's features.

.. estimator_
estimator_ : skorch net or ConvertedModel
    The model the features come from.

.. classes_
classes_ : ndarray of shape (n_classes,)
    Class labels (classifiers only).

.. fit_time_
fit_time_ : float
    Seconds spent in ``fit``, including training the net when it was
    trained here.
"""
