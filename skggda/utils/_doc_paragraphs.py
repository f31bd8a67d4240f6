"""The shared docstring paragraphs that :func:`~skggda.utils._docs.fill_doc` substitutes.

Each family is one text: a line ``.. key`` opens a paragraph, whose text runs
to the next such line (surrounding blank lines dropped). Keys are
``family.name``; a block joins several paragraphs under a key of its own.
"""

from __future__ import annotations

import re

_KEY = re.compile(r"^\.\. (\S+)$", re.MULTILINE)


def _parse(family, text):
    """``{family.key: paragraph}`` from ``.. key`` sections of ``text``."""
    parts = _KEY.split(text)
    return {f"{family}.{key}": body.strip("\n") for key, body in zip(parts[1::2], parts[2::2])}


def _blocks(paragraphs, **blocks):
    """Add each block ``key=[member keys]`` as the member paragraphs joined."""
    for key, members in blocks.items():
        paragraphs[key.replace("__", ".")] = "\n".join(paragraphs[m] for m in members)


_ATTRIBUTOR = """
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
    than 1), or with a Dask array ``X``, the training-set passes are split
    over the workers, with the same result as in this process; see the
    user guide's "Running on a Dask cluster". A grouper whose own
    ``n_jobs`` is ``None`` inherits it.

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

_GROUPER = """
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

_KMEANS = """
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
    than 1), or with a Dask array ``X``, the training-set passes and
    ``predict`` are split over the workers, with the same labels as in
    this process; see the user guide's "Running on a Dask cluster".
    Inside an attributor, ``None`` takes the attributor's.

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

_MODEL_GROUPER = """
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

_SEEDED = """
.. module
module : torch.nn.Module class or instance
    The network. A class whose constructor takes ``n_features``,
    ``n_classes`` or ``in_channels`` gets them from the training data
    unless they are set with ``module__...``.

.. args
*args
    Further positional parameters of the skorch net class, after
    ``module``.

.. random_state
random_state : int, RandomState instance or None, default=None
    Seeds weight initialisation, batch shuffling and dropout inside
    :func:`torch.random.fork_rng`, leaving the global torch RNG as it
    was. ``None`` uses the global RNG, as skorch does.

.. kwargs
**kwargs
    Any other parameter of the skorch net class (``criterion``, ``lr``,
    ``max_epochs``, ``callbacks``, ``module__...``, ...).

.. X
X : array-like of shape (n_samples, ...), dict or Dataset
    Inputs, as skorch takes them; pandas objects become numpy arrays.

.. y
y : array-like of shape (n_samples,) or (n_samples, n_targets), default=None
    Targets (``None`` when ``X`` is a Dataset that holds them).

.. fit_params
**fit_params
    Passed on to skorch (e.g. to the module's ``forward``).
"""

_RECIPE = """
.. device
device : str, default="cpu"
    Torch device of training (``"cuda"`` trains on the GPU; attribution
    then runs there too).

.. random_state
random_state : int, RandomState instance or None, default=None
    Makes training repeatable without touching the global torch RNG.

.. verbose
verbose : int, default=0
    skorch's per-epoch log when positive.

.. lr
lr : float, default=1e-3
    Peak learning rate of the one-cycle schedule.

.. max_epochs
max_epochs : int, default=30
    Passes over the training data.

.. batch_size
batch_size : int, default=128
    Samples per optimisation step.

.. weight_decay
weight_decay : float, default=4e-4
    Adam's L2 weight decay.
"""

_CALLBACK = """
.. net
net : skorch.NeuralNet
    The net being trained.

.. X
X : array-like, default=None
    The training inputs passed to ``fit``.

.. y
y : array-like, default=None
    The training targets passed to ``fit``.

.. training
training : bool, default=None
    Whether the batch is a training batch (not a validation batch).

.. kwargs
**kwargs
    The other arguments skorch passes to the hook; unused.
"""

_CONVERTED = """
.. X
X : array-like of shape (n_samples, n_features)
    Samples, as the scikit-learn model takes them.
"""

_RETRAINING = """
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

.. n_subsets
n_subsets : int, default=20
    Random subsets of groups trained on.

.. subset_fraction
subset_fraction : float, default=0.5
    Fraction of the groups every subset keeps.
"""

_ORDER = """
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

_NOISY = """
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

_SCORER = """
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

_PROPERTY = """
.. output
output : torch.Tensor of shape (batch, ...)
    The net's outputs on a batch of evaluation samples.

.. y
y : torch.Tensor of shape (batch,)
    Their labels as class indices (a regressor's float targets).

.. loss_fn
loss_fn : callable
    The net's per-sample training loss, ``loss_fn(output, y) -> (batch,)``.

.. terms
terms : torch.Tensor of shape (batch,)
    The per-sample term ``h`` of every sample of the batch.

.. data
data : EvaluationData
    The evaluation data the property is computed on.

.. weights
weights : ndarray of shape (n_samples,)
    The weight ``w_i`` of every evaluation sample's term.
"""

_REPORT = """
.. records
records : list of Record
    The grid's results, one per cell and seed (from :func:`run_grid`).

.. summary
summary : list of dict
    The output of :func:`summarize`.

.. folder
folder : str or path-like
    Folder the files are written to (created if missing).
"""

PARAGRAPHS = {
    **_parse("attributor", _ATTRIBUTOR),
    **_parse("grouper", _GROUPER),
    **_parse("kmeans", _KMEANS),
    **_parse("model_grouper", _MODEL_GROUPER),
    **_parse("seeded", _SEEDED),
    **_parse("recipe", _RECIPE),
    **_parse("callback", _CALLBACK),
    **_parse("converted", _CONVERTED),
    **_parse("retraining", _RETRAINING),
    **_parse("order", _ORDER),
    **_parse("noisy", _NOISY),
    **_parse("scorer", _SCORER),
    **_parse("property", _PROPERTY),
    **_parse("report", _REPORT),
}

_blocks(
    PARAGRAPHS,
    # fitted state every attributor has (estimator_ and timings_ vary)
    attributor__fitted=["attributor.grouper_", "attributor.labels_", "attributor.groups_",
                        "attributor.n_groups_", "attributor.classes_",
                        "attributor.n_features_in_"],
    grouper__fitted=["grouper.labels_", "grouper.n_groups_"],
    kmeans__fitting=["kmeans.algorithm", "kmeans.max_iter", "kmeans.tol"],
    kmeans__fitted=["kmeans.inertia_", "kmeans.n_iter_"],
    model_grouper__parameters=[
        "grouper.group_size", "grouper.n_groups", "model_grouper.estimator",
        "kmeans.fitting", "model_grouper.batch_size", "kmeans.verbose",
        "model_grouper.random_state"],
    model_grouper__attributes=[
        "grouper.fitted", "model_grouper.cluster_centers_", "model_grouper.estimator_",
        "model_grouper.classes_", "kmeans.fitted", "model_grouper.fit_time_",
        "grouper.n_features_in_"],
    grouper__data=["grouper.X", "grouper.y"],
    seeded__parameters=["seeded.module", "seeded.args", "seeded.random_state",
                        "seeded.kwargs"],
    recipe__run=["recipe.device", "recipe.random_state", "recipe.verbose"],
    recipe__training=["recipe.lr", "recipe.max_epochs", "recipe.batch_size",
                      "recipe.weight_decay"],
    callback__train_begin=["callback.net", "callback.X", "callback.y", "callback.kwargs"],
    retraining__training_data=["retraining.estimator", "retraining.X", "retraining.y"],
    retraining__removal_test=["retraining.removal_X_test", "retraining.y_test"],
    retraining__property_test=["retraining.property_X_test", "retraining.y_test"],
    retraining__groups=["retraining.scores", "retraining.labels"],
    retraining__seeds=["retraining.n_seeds", "retraining.n_jobs", "retraining.random_state"],
    retraining__datamodel_seeds=["retraining.loo_seeds", "retraining.n_jobs",
                                 "retraining.datamodel_random_state"],
    retraining__subsets=["retraining.n_subsets", "retraining.subset_fraction"],
    order__groups=["order.scores", "order.labels"],
    noisy__inputs=["noisy.scores", "noisy.labels", "noisy.is_noisy"],
    property__terms_parameters=["property.output", "property.y", "property.loss_fn"],
)
