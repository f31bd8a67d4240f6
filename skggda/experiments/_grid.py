"""Run a grid of GGDA experiments: the paper's evaluation protocol as data.

One *cell* is (task, attributor, grouper, group size, seed). For each seed
and task the net is trained once and shared, frozen, by every attributor and
grouper of the grid, so cells differ only in what GGDA does: grouping and
attribution, whose runtimes are recorded separately next to the metric.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from time import perf_counter

import numpy as np
from sklearn.frozen import FrozenEstimator
from tqdm.auto import tqdm

from ..attribution import InfluenceAttributor, TracInAttributor, TRAKAttributor
from ..datasets import (
    load_heloc,
    load_mnist,
    load_qnli_dev,
    load_tabular_fallback,
)
from ..datasets._fallbacks import make_cifar_like, make_heloc_like
from ..metrics import (
    flip_labels,
    noisy_label_auc,
    removal_baselines,
    removal_score,
)
from ..metrics._orders import PRUNING_ORDERS
from ._baselines import CLEANLAB_MISSING, cleanlab_label_quality
from ..utils import record_timings
from ..models import (
    TEXT_LAST_BLOCK,
    PairTokenizer,
    make_classifier,
    make_resnet_classifier,
    make_text_classifier,
)
from ._checks import ConfigError, check_names, check_recipe, check_values
from ._config import (  # noqa: F401 - the grid's names, importable from here too
    ATTRIBUTORS,
    DATASETS,
    DETECTORS,
    GROUPERS,
    MODELS,
    SELF_INFLUENCE_COMPONENTS,
    SHORT_RECIPE,
    TASKS,
    GridConfig,
)


def load_dataset(config):
    """The grid's training and test data, as float32 / int64 arrays.

    Parameters
    ----------
    config : GridConfig
        Names the data set (``dataset``, ``data_home``, ``n_train``) and
        the model it must go with (``model``, ``max_length``).

    Returns
    -------
    data : tuple of ndarray
        ``(X_train, y_train, X_test, y_test)``; the text model's pairs come
        tokenized.

    Raises
    ------
    ConfigError
        When the data set is unknown, does not go with the model, or needs
        a file or an optional package that is missing.

    Examples
    --------
    >>> from skggda.experiments import GridConfig
    >>> from skggda.experiments._grid import load_dataset
    >>> X, y, X_test, y_test = load_dataset(GridConfig(dataset="breast_cancer"))
    >>> X.shape, X_test.shape
    ((455, 30), (114, 30))
    """
    name = config.dataset
    check_names("dataset", [name], DATASETS)
    if (name == "qnli") != (config.model == "text"):
        raise ConfigError("The qnli data set goes with model='text' and only with it.")
    if config.model == "resnet18" and name not in ("mnist", "cifar_like"):
        raise ConfigError(f"model='resnet18' needs images: dataset 'mnist' or 'cifar_like', "
                          f"not {name!r}.")
    try:
        return _read_dataset(config)
    except (FileNotFoundError, ImportError) as error:
        # a file missing from the data folder or an optional package not installed:
        # the message says how to fix it (data_home, pip install)
        raise ConfigError(str(error)) from error


def _read_dataset(config):
    name, images = config.dataset, config.model == "resnet18"
    if name == "heloc":
        data = load_heloc(data_home=config.data_home)
    elif name == "heloc_like":
        data = make_heloc_like()
    elif name == "mnist":
        n_test = None if config.n_train is None else max(1000, config.n_train // 6)
        data = load_mnist(data_home=config.data_home, n_train=config.n_train, n_test=n_test,
                          flatten=not images)
    elif name == "cifar_like":
        data = make_cifar_like(n_samples=config.n_train or 2000, flatten=not images)
    elif name == "qnli":
        data = load_qnli_dev(data_home=config.data_home)
    else:
        data = load_tabular_fallback(name)
    X, y, X_test = data.X_train, data.y_train, data.X_test
    if config.n_train is not None and name not in ("mnist", "cifar_like") and config.n_train < len(y):
        keep = np.random.RandomState(0).permutation(len(y))[: config.n_train]
        X, y = X[keep], y[keep]
    if config.model == "text":
        tokenizer = PairTokenizer(max_length=config.max_length).fit(X)
        X, X_test = tokenizer.transform(X), tokenizer.transform(X_test)
    return X, y, X_test, data.y_test


def make_net(config, seed):
    check_recipe(config.recipe)
    spec = MODELS[config.model]
    defaults = spec if config.recipe == "paper" else SHORT_RECIPE[config.model]
    recipe = dict(lr=defaults["lr"] if config.lr is None else config.lr,
                  max_epochs=defaults["epochs"] if config.epochs is None else config.epochs,
                  weight_decay=spec["weight_decay"],
                  batch_size=spec["batch_size"] if config.batch_size is None else config.batch_size,
                  device=config.device, random_state=seed)
    if config.model == "resnet18":
        return make_resnet_classifier(width=config.resnet_width, **recipe)
    if config.model == "text":
        return make_text_classifier(**recipe)
    return make_classifier(spec["hidden"], **recipe)


def param_subset(config):
    """``"auto"``: the last block and the head for the text encoder, everything otherwise."""
    if config.param_subset != "auto":
        return config.param_subset
    return list(TEXT_LAST_BLOCK) if config.model == "text" else "all"


def make_attributor(name, net, grouper, config, seed):
    common = dict(grouper=grouper, param_subset=param_subset(config), random_state=seed)
    if name == "tracin":
        checkpoints = dict(checkpoints="all") if config.checkpoints == "all" else {}
        # all checkpoints need the training run: a clone of the recipe, same seed
        return TracInAttributor(make_net(config, seed) if checkpoints else net,
                                n_components=config.tracin_components, **checkpoints,
                                **common)
    common["damping"] = config.damping
    if name == "fisher":
        return InfluenceAttributor(net, n_components=config.n_components, **common)
    if name == "lissa":
        return InfluenceAttributor(net, solver="lissa", lissa_depth=config.lissa_depth,
                                   lissa_repeat=config.lissa_repeat, **common)
    if name in ("cg", "exact"):
        return InfluenceAttributor(net, solver=name, **common)
    if name == "trak":
        return TRAKAttributor(net, n_models=config.trak_models, n_components=config.n_components,
                              n_jobs=config.n_jobs, warm_start=True, **common)
    check_names("attributor", [name], ATTRIBUTORS)


def make_grouper(name, group_size, seed):
    if group_size == 1:
        return None  # singletons: classical per-point attribution
    check_names("grouper", [name], sorted(GROUPERS))
    return GROUPERS[name](group_size=group_size, random_state=seed)


@dataclass
class GridRecord:
    """One grid cell's result (a row of the CSV).

    Parameters
    ----------
    task : str
        The task, from :data:`TASKS`.
    dataset : str
        The data set, from :data:`DATASETS`.
    model : str
        The model, a key of :data:`MODELS`.
    attributor : str
        The attribution method, from :data:`ATTRIBUTORS` (or a baseline
        such as ``"cleanlab"``).
    grouper : str
        The grouping method, a key of :data:`GROUPERS` (``"none"`` for
        group size 1).
    group_size : int
        Samples per group.
    seed : int
        The seed of the run.
    metric : str
        What ``value`` measures (``"auc"``, ``"accuracy@10%"``, ...).
    value : float
        The metric's value.
    n_groups : int
        Number of groups formed.
    grouping_s : float
        Seconds spent grouping.
    attribution_s : float
        Seconds spent attributing.
    training_s : float
        Seconds spent training the shared net (not part of ``runtime_s``).
    baseline : float, default=nan
        The metric of the random baseline (removal tasks).
    full_accuracy : float, default=nan
        Test accuracy of the net trained on all the data.
    kept_class_share : str, default=""
        Removal tasks: the share of every class left after removal.
    stratified : bool, default=False
        Removal tasks: whether the same share of every class was removed.

    Examples
    --------
    >>> from skggda.experiments import GridRecord
    >>> r = GridRecord("noisy", "digits", "ann-s", "tracin", "grad", 16, 0, "auc", 0.8, 90,
    ...            grouping_s=0.5, attribution_s=0.25, training_s=3.0)
    >>> r.runtime_s
    0.75
    """

    task: str
    dataset: str
    model: str
    attributor: str
    grouper: str
    group_size: int
    seed: int
    metric: str
    value: float
    n_groups: int
    grouping_s: float
    attribution_s: float
    training_s: float
    baseline: float = float("nan")
    full_accuracy: float = float("nan")
    kept_class_share: str = ""
    stratified: bool = False  # removal tasks: the same share of every class removed

    @property
    def runtime_s(self):
        """GGDA's cost: grouping plus attribution (training is shared)."""
        return self.grouping_s + self.attribution_s

    def as_dict(self):
        """The record as a row of ``records.csv``.

        Returns
        -------
        row : dict
            Every field, and ``runtime_s``.
        """
        return {**asdict(self), "runtime_s": self.runtime_s}


def check_config(config):
    """Raise :class:`ConfigError` for the first name or value of ``config`` that cannot run.

    Parameters
    ----------
    config : GridConfig
        The configuration to check. Data files and optional packages are
        checked when :func:`load_dataset` reads the data.

    Examples
    --------
    >>> from skggda.experiments import GridConfig
    >>> from skggda.experiments._grid import check_config
    >>> check_config(GridConfig(group_sizes=(1, 16)))
    >>> check_config(GridConfig(damping=-1.0))
    Traceback (most recent call last):
    ...
    skggda.experiments.ConfigError: damping must be a number >= 0, got -1.0.
    """
    check_names("model", [config.model], tuple(MODELS))
    check_names("attributor", config.attributors, ATTRIBUTORS)
    check_names("grouper", config.groupers, sorted(GROUPERS))
    check_names("task", config.tasks, TASKS)
    check_names("detector", [config.detector], DETECTORS)
    check_names("checkpoints", [config.checkpoints], ("auto", "last", "all"))
    check_names("pruning order", [config.pruning_order], PRUNING_ORDERS)
    check_recipe(config.recipe)
    check_values(config)


def _cells(config):
    for attributor in config.attributors:
        for group_size in config.group_sizes:
            groupers = ("none",) if group_size == 1 else config.groupers
            for grouper in groupers:
                yield attributor, grouper, group_size


def run_grid(config: GridConfig, *, progress=True):
    """Run every cell of the grid.

    Parameters
    ----------
    config : GridConfig
        The grid: data, model, methods, tasks and seeds.
    progress : bool, default=True
        Show a progress bar over the cells.

    Returns
    -------
    records : list of GridRecord
        One record per cell, task, seed and metric.

    Examples
    --------
    >>> from skggda.experiments import GridConfig, run_grid
    >>> config = GridConfig(group_sizes=(1, 32), groupers=("random",), epochs=2,
    ...                     n_train=100, cleanlab_folds=0)
    >>> records = run_grid(config, progress=False)
    >>> [(r.grouper, r.group_size, r.n_groups) for r in records]
    [('none', 1, 100), ('random', 32, 4)]
    """
    check_config(config)
    X, y, X_test, y_test = load_dataset(config)
    cells = list(_cells(config))
    total = len(cells) * len(config.seeds) * len(config.tasks)
    records = []
    with tqdm(total=total, desc="experiments", disable=not progress) as bar:
        for seed in config.seeds:
            for task in config.tasks:
                records += _run_task(task, config, seed, X, y, X_test, y_test, cells, bar)
    return records


def task_config(config, task):
    """``config`` with TracIn's ``"auto"`` checkpoints and projection resolved for ``task``.

    Examples
    --------
    >>> from skggda.experiments import GridConfig
    >>> from skggda.experiments._grid import task_config
    >>> noisy = task_config(GridConfig(), "noisy")
    >>> noisy.checkpoints, noisy.tracin_components
    ('all', 1024)
    >>> pruning = task_config(GridConfig(), "pruning")
    >>> pruning.checkpoints, pruning.tracin_components
    ('last', None)
    """
    best = task == "noisy" and config.detector == "self"
    values = {}
    if config.checkpoints == "auto":
        values["checkpoints"] = "all" if best else "last"
    if config.tracin_components == "auto":
        values["tracin_components"] = SELF_INFLUENCE_COMPONENTS if best else None
    return replace(config, **values)


def _run_task(task, config, seed, X, y, X_test, y_test, cells, bar):
    config = task_config(config, task)
    y_train, flipped = (flip_labels(y, config.noise, random_state=seed) if task == "noisy"
                        else (y, None))
    net = make_net(config, seed)
    start = perf_counter()
    net.fit(X, y_train)
    training_s = perf_counter() - start
    if task == "noisy":  # how good the net trained on the flipped labels is
        # (the removal tasks measure their own no-removal accuracy by retraining)
        test_accuracy = float(np.mean(np.asarray(net.predict(X_test)) == y_test))
    out, ensembles = [], {}
    # no removal and random removal do not depend on the scores: once per seed and task
    baselines = None if task == "noisy" else removal_baselines(
        net, X, y_train, X_test, y_test, fractions=config.fractions[task], stratify=config.stratify,
        n_seeds=config.retrain_seeds, n_jobs=config.n_jobs, random_state=seed)
    for attributor, grouper, group_size in cells:
        bar.set_postfix_str(f"{task} {attributor} {grouper} {group_size}")
        groups = make_grouper(grouper, group_size, seed)
        attr = ensembles.get(attributor)
        reused = attr is not None  # TRAK: one ensemble per seed, warm-started per grouping
        if reused:
            attr.set_params(grouper=groups)
        else:
            attr = make_attributor(attributor, FrozenEstimator(net), groups, config, seed)
        attr.fit(X, y_train)
        if attributor == "trak":
            ensembles[attributor] = attr
        if task == "noisy":
            scores, scoring_s = _detection_scores(attr, config.detector, X_test, y_test)
        else:
            with record_timings() as scoring:
                scores = attr.score_groups(X_test, y_test)
            scoring_s = scoring["scoring"]
        t = attr.timings_
        attribution_s = t["gradients"] + scoring_s
        if reused:  # the ensemble's (wall-clock) training is part of every TRAK cell's cost
            attribution_s += attr.training_seconds_
        base = dict(task=task, dataset=config.dataset, model=config.model, attributor=attributor,
                    grouper=grouper, group_size=group_size, seed=seed, n_groups=attr.n_groups_,
                    grouping_s=t["grouping"], training_s=training_s,
                    attribution_s=attribution_s)
        if task == "noisy":
            auc = noisy_label_auc(scores, attr.labels_, flipped)
            out.append(GridRecord(metric="auc", value=auc, baseline=0.5,
                              full_accuracy=test_accuracy, **base))
        else:
            out += _removal_records(task, config, net, X, y_train, X_test, y_test, scores,
                                    attr.labels_, seed, base, baselines)
        bar.update()
    if task == "noisy" and config.cleanlab_folds:
        out += _cleanlab_records(config, seed, X, y_train, flipped, training_s, test_accuracy)
    return out


def _detection_scores(attr, detector, X_test, y_test):
    """``(scores, seconds)``: what the noisy-label task ranks groups by (lowest first)."""
    start = perf_counter()
    if detector == "self":
        # A large self-influence marks a suspicious group, per member squared:
        # the squared norm of the group's mean gradient. A group's own
        # self-influence grows with the square of its size when its members'
        # gradients align, so the largest K-Means groups of clean points came
        # first (breast_cancer, Grad-K-Means groups of 16: AUC 0.35, 0.87
        # per member squared); groups of one are unchanged.
        sizes = np.bincount(attr.labels_, minlength=attr.n_groups_).astype(np.float64)
        scores = -attr.self_influence() / sizes**2
    else:
        scores = attr.score_groups(*((X_test, y_test) if detector == "test-loss" else ()))
    return scores, perf_counter() - start


def _cleanlab_records(config, seed, X, y_noisy, flipped, training_s, test_accuracy):
    """The cleanlab row: label quality from K-fold probabilities of the same recipe."""
    try:
        quality, seconds = cleanlab_label_quality(make_net(config, seed), X, y_noisy,
                                                  n_folds=config.cleanlab_folds,
                                                  random_state=seed)
    except ImportError:
        print(CLEANLAB_MISSING)
        return []
    auc = noisy_label_auc(quality, np.arange(len(y_noisy)), flipped)
    return [GridRecord("noisy", config.dataset, config.model, "cleanlab", "none", 1, seed, "auc",
                   auc, len(y_noisy), grouping_s=0.0, attribution_s=seconds,
                   training_s=training_s, baseline=0.5, full_accuracy=test_accuracy)]


def _removal_records(task, config, net, X, y, X_test, y_test, scores, labels, seed, base,
                     baselines):
    kwargs = dict(fractions=config.fractions[task], stratify=config.stratify,
                  n_seeds=config.retrain_seeds, n_jobs=config.n_jobs, random_state=seed,
                  baselines=baselines)
    if task == "pruning":
        kwargs["order"] = config.pruning_order
    result = removal_score(net, X, y, X_test, y_test, scores, labels,
                           most_important=task != "pruning", **kwargs)
    return [
        GridRecord(metric=f"accuracy@{fraction:.0%}", value=float(acc), baseline=float(rand),
               full_accuracy=result.full_accuracy,
               kept_class_share="/".join(f"{share:.2f}" for share in shares),
               stratified=config.stratify, **base)
        for fraction, acc, rand, shares in zip(result.fractions, result.accuracy,
                                               result.random_accuracy, result.kept_class_share)
    ]
