"""The grid's names and its configuration: :class:`GridConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..grouping import GradKMeansGrouper, KMeansGrouper, RandomGrouper, ReprKMeansGrouper
from ..metrics._removal import PAPER_FRACTIONS

#: The paper's models (appendix B.1.2): learning rate, epochs, weight decay, batch size,
#: and for MLPs the hidden layers. ResNet-18 takes images, "text" tokenized pairs.
MODELS = {
    "lr": dict(hidden=(), lr=0.1, epochs=200, weight_decay=0.0, batch_size=128),
    "ann-s": dict(hidden=(50, 50), lr=1e-3, epochs=300, weight_decay=4e-4, batch_size=128),
    "ann-m": dict(hidden=(200, 50), lr=5e-4, epochs=400, weight_decay=4e-4, batch_size=128),
    "mlp": dict(hidden=(150, 150, 150), lr=1e-3, epochs=50, weight_decay=0.0, batch_size=512),
    "resnet18": dict(lr=1e-2, epochs=50, weight_decay=0.0, batch_size=512),
    "text": dict(lr=2e-5, epochs=3, weight_decay=0.0, batch_size=32),
}
#: Short runs (``recipe="short"``): fewer epochs at a higher peak learning rate for
#: the models trained from scratch; the pretrained encoder keeps a fine-tuning rate
#: (a rate like 1e-2 destroys its pretrained weights).
SHORT_RECIPE = {name: dict(epochs=40, lr=1e-2) for name in MODELS}
SHORT_RECIPE["text"] = dict(epochs=2, lr=5e-5)
#: "cg" and "exact" are influence with conjugate gradients and with the explicit
#: Hessian (small models): ground truth for the Fisher and LiSSA approximations.
ATTRIBUTORS = ("tracin", "fisher", "lissa", "trak", "cg", "exact")
GROUPERS = {"random": RandomGrouper, "kmeans": KMeansGrouper, "repr": ReprKMeansGrouper,
            "grad": GradKMeansGrouper}
TASKS = ("noisy", "retraining", "pruning")
#: What the noisy-label task ranks training points by: the attribution of the test
#: loss (the paper's), of the training loss, or minus each group's self-influence
#: over its size squared (the squared norm of its mean gradient).
DETECTORS = ("test-loss", "train-loss", "self")
#: TracIn's projection for the default noisy-label detector (self-influence over all
#: checkpoints): exact self-influence forms every checkpoint's per-sample gradients.
SELF_INFLUENCE_COMPONENTS = 1024
DATASETS = ("breast_cancer", "digits", "heloc_like", "heloc", "mnist", "cifar_like", "qnli")
#: Fractions removed per task (paper sections 5.4.1 and 5.4.2).
FRACTIONS = {"retraining": PAPER_FRACTIONS[True], "pruning": PAPER_FRACTIONS[False]}



@dataclass
class GridConfig:
    """Everything an experiment grid depends on (defaults: a short run on bundled data).

    Parameters
    ----------
    dataset : str, default="breast_cancer"
        One of :data:`DATASETS`. ``"heloc"``, ``"mnist"`` and ``"qnli"``
        read the data folder (``data_home``); the others need no file.
    model : str, default="ann-s"
        One of the paper's models, the keys of :data:`MODELS`.
        ``"resnet18"`` takes images (``"mnist"``, ``"cifar_like"``),
        ``"text"`` the ``"qnli"`` pairs.
    attributors : tuple of str, default=("tracin",)
        Attribution methods, from :data:`ATTRIBUTORS`.
    groupers : tuple of str, default=("grad", "random")
        Grouping methods, keys of :data:`GROUPERS`; used for every group
        size above 1.
    group_sizes : tuple of int, default=(1, 4, 16, 64)
        Samples per group; 1 is per-point attribution.
    tasks : tuple of str, default=("noisy",)
        Evaluation tasks, from :data:`TASKS`.
    seeds : tuple of int, default=(0,)
        One run of every task per seed (training, noise, grouping).
    epochs : int, default=None
        Training epochs; ``None`` takes the value of ``recipe`` for ``model``.
    lr : float, default=None
        Peak learning rate; ``None`` takes the value of ``recipe`` for ``model``.
    batch_size : int, default=None
        Training batch size; ``None`` is the paper's for ``model``.
    recipe : {"short", "paper"}, default="short"
        Where ``epochs`` and ``lr`` of ``None`` come from: ``"short"``
        (:data:`SHORT_RECIPE`: 40 epochs at a peak of 1e-2 for the models
        trained from scratch, 2 epochs at 5e-5 for the pretrained text
        encoder) or ``"paper"`` (:data:`MODELS`, appendix B).
    noise : float, default=0.1
        Fraction of training labels flipped for the noisy-label task.
    detector : str, default="self"
        What the noisy-label task ranks training points by, from
        :data:`DETECTORS` (default: minus the self-influence, a group's
        over its size squared).
    checkpoints : {"auto", "last", "all"}, default="auto"
        TracIn's checkpoints; ``"all"`` retrains the net with the same seed
        to record them (that training is not counted in its runtime).
        ``"auto"``: every epoch's for the noisy task with
        ``detector="self"`` (the best detector measured,
        ``benchmarks/FIDELITY.md``), the last otherwise.
    tracin_components : int, None or "auto", default="auto"
        TracIn's projection; ``"auto"``:
        :data:`SELF_INFLUENCE_COMPONENTS` dimensions where
        ``checkpoints="auto"`` picks every epoch's, exact (``None``)
        otherwise.
    cleanlab_folds : int, default=5
        Folds of the noisy task's cleanlab baseline row (0: no row).
    n_components : int or None, default=16
        Projection of Fisher influence and TRAK (``None``: none).
    damping : float, default=1e-3
        Added to the curvature by the influence solvers and TRAK.
    trak_models : int, default=10
        Models TRAK ensembles.
    lissa_depth : int, default=200
        Recursion depth of the LiSSA solver.
    lissa_repeat : int, default=20
        Repetitions of the LiSSA solver.
    retrain_seeds : int, default=1
        Retrainings per removal in the removal tasks.
    stratify : bool, default=False
        The removal tasks remove the same share of every class (and
        stratify the random baseline too).
    pruning_order : str, default="score"
        The ``order`` of :func:`~skggda.metrics.removal_score` when pruning.
    n_train : int, default=None
        Subsample the training set to this many samples.
    resnet_width : int, default=64
        Channels of ResNet-18's first stage.
    max_length : int, default=64
        Tokens per text pair for ``model="text"``.
    param_subset : "auto", "all", "last" or list of str, default="auto"
        Parameters attributed; ``"auto"``: the last block and the head for
        the text encoder, everything otherwise.
    data_home : str, default=None
        Folder holding ``heloc/`` and ``mnist/`` (default: the
        ``SKGGDA_DATA`` environment variable or ``~/skggda_data``).
    device : str, default="cpu"
        Torch device of training and attribution.
    n_jobs : int, default=None
        Parallel retrainings and TRAK models (joblib semantics).
    fractions : dict of str to tuple of float, default=FRACTIONS
        The fractions removed, per removal task.

    Examples
    --------
    >>> from skggda.experiments import GridConfig
    >>> config = GridConfig(dataset="digits", attributors=("tracin", "fisher"))
    >>> config.tasks, config.group_sizes
    (('noisy',), (1, 4, 16, 64))
    """

    dataset: str = "breast_cancer"
    model: str = "ann-s"
    attributors: tuple = ("tracin",)
    groupers: tuple = ("grad", "random")
    group_sizes: tuple = (1, 4, 16, 64)
    tasks: tuple = ("noisy",)
    seeds: tuple = (0,)
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    recipe: str = "short"
    noise: float = 0.1
    detector: str = "self"
    checkpoints: str = "auto"
    tracin_components: object = "auto"
    cleanlab_folds: int = 5
    n_components: int | None = 16
    damping: float = 1e-3
    trak_models: int = 10
    lissa_depth: int = 200
    lissa_repeat: int = 20
    retrain_seeds: int = 1
    stratify: bool = False
    pruning_order: str = "score"
    n_train: int | None = None
    resnet_width: int = 64
    max_length: int = 64
    param_subset: object = "auto"
    data_home: str | None = None
    device: str = "cpu"
    n_jobs: int | None = None
    fractions: dict = field(default_factory=lambda: dict(FRACTIONS))
