"""Removal-based evaluation: retrain without the points an attribution singles out.

:func:`removal_score` runs the paper's two tasks:

* retraining (``most_important=True``) -- remove the *most* important
  1/5/10/20% and retrain: a good attribution makes accuracy drop (lower is
  better);
* pruning (``most_important=False``) -- remove the *least* important
  25/50/75% and retrain: a good attribution keeps accuracy (higher is
  better).

Classifiers are measured by test accuracy; regressors by test RMSE (the
default) or R^2 (``metric=``), where a good attribution makes the RMSE rise
in the retraining score and stay low when pruning.

Points are removed by whole groups in score order; the last group needed is
removed partially, its points chosen at random (paper section 5.4.1); with
``stratify`` the same share of every class goes, each class in the score
order of its points' groups. Every
result carries the mean and standard error over retraining seeds, a
random-removal baseline trained on the same seeds, the accuracy with no
removal, and the class balance of what was kept; :func:`removal_baselines`
computes the retrainings that do not depend on the scores once, for every
attribution compared on the same data. Retrainings are independent
joblib jobs, so ``joblib.parallel_config(backend="dask")`` spreads them over
a Dask cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from joblib import Parallel, delayed
from sklearn.utils._param_validation import validate_params

from ..utils._seeding import derive_seeds
from ._docs import fill_retraining_doc
from ._orders import (
    PRUNING_ORDERS,
    _random_removal,
    harmful_then_random,
    points_to_remove,
)
from ._retraining import (
    METRICS,
    RETRAINING_PARAMS,
    SCORED_PARAMS,
    _encode,
    _sem,
    fit_subset,
    resolve_metric,
    test_score,
)


#: The paper's removal fractions, by ``most_important``.
PAPER_FRACTIONS = {True: (0.01, 0.05, 0.10, 0.20), False: (0.25, 0.50, 0.75)}


@dataclass
class RemovalResult:
    """Test scores after removal, with baselines, as means and standard errors over seeds.

    The fields are named after accuracy, the metric of classifiers; for a
    regressor they hold the test RMSE or R^2, as ``metric`` says. Every
    parameter is kept as the attribute of the same name.

    Parameters
    ----------
    fractions : ndarray of shape (n_fractions,)
        Shares of the training points removed.
    accuracy : ndarray of shape (n_fractions,)
        Test ``metric`` after removing by score, mean over seeds.
    accuracy_sem : ndarray of shape (n_fractions,)
        Its standard error over seeds.
    random_accuracy : ndarray of shape (n_fractions,)
        Test ``metric`` after removing the same number of points at random,
        mean over seeds.
    random_accuracy_sem : ndarray of shape (n_fractions,)
        Its standard error over seeds.
    full_accuracy : float
        Test ``metric`` with all training points, mean over seeds.
    full_accuracy_sem : float
        Its standard error over seeds.
    kept_class_share : ndarray of shape (n_fractions, n_classes)
        Class proportions of the training points kept (removal by score);
        ``n_classes`` is 0 for a regressor.
    n_seeds : int
        Retraining seeds the means are taken over.
    most_important : bool
        What was removed first: the highest scores (``True``) or the lowest.
    classes : ndarray of shape (n_classes,) or None, default=None
        The classes of ``kept_class_share``; ``None`` for a regressor.
    metric : {"accuracy", "rmse", "r2"}, default="accuracy"
        What the scores measure.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics._removal import RemovalResult
    >>> result = RemovalResult(np.array([0.5]), np.array([0.7]), np.array([0.01]),
    ...                        np.array([0.72]), np.array([0.01]), 0.74, 0.0,
    ...                        np.array([[0.5, 0.5]]), 2, False)
    >>> print(result.as_table().splitlines()[2])
                          50%   70.0 ±  1.0%   72.0 ±  1.0%
    """

    fractions: np.ndarray
    accuracy: np.ndarray
    accuracy_sem: np.ndarray
    random_accuracy: np.ndarray
    random_accuracy_sem: np.ndarray
    full_accuracy: float
    full_accuracy_sem: float
    kept_class_share: np.ndarray
    n_seeds: int
    most_important: bool
    classes: np.ndarray = field(repr=False, default=None)
    metric: str = "accuracy"

    def as_table(self) -> str:
        """A plain-text table, one row per fraction (``mean ± s.e.``; no ± for 1 seed).

        Returns
        -------
        table : str
            A header, the no-removal row, then removal by score and random
            removal at every fraction.
        """
        what = "most" if self.most_important else "least"
        seeds = "  (1 seed)" if self.n_seeds == 1 else ""
        lines = [f"removed ({what} important)  {self.metric:<14}  random removal{seeds}",
                 f"{'none':>26}  {self._pm(self.full_accuracy, self.full_accuracy_sem)}"]
        for f, a, s, r, rs in zip(self.fractions, self.accuracy, self.accuracy_sem,
                                  self.random_accuracy, self.random_accuracy_sem):
            lines.append(f"{f:>25.0%}  {self._pm(a, s)}  {self._pm(r, rs)}")
        return "\n".join(line.rstrip() for line in lines)

    def _pm(self, mean, sem):
        """``mean ± s.e.``, in percent for accuracy; the mean alone for a single seed."""
        if self.metric == "accuracy":
            value, spread = f"{100 * mean:5.1f}", f" ± {100 * sem:4.1f}%"
        else:
            value, spread = f"{mean:6.4g}", f" ± {sem:<6.2g}"
        if self.n_seeds == 1:  # no standard error: "± 0.0" would claim a precision never measured
            unit = "%" if self.metric == "accuracy" else ""
            return (value + unit).ljust(len(value + spread))
        return value + spread


def _fit_and_score(estimator, X, y, X_test, y_test, keep, seed, n_classes, metric):
    """Train a clone on ``X[keep]`` with ``seed`` and return its test ``metric`` (a joblib job)."""
    return test_score(fit_subset(estimator, X, y, keep, seed, n_classes), X_test, y_test, metric)


def _removed(setup, scores, labels, fraction, most_important, order, seed):
    """The points a scored removal takes out, for one seed and fraction."""
    if order == "harmful-then-random":
        # a regressor's targets have no classes: one stratum
        strata = setup.y if setup.classes_ is not None else np.zeros(setup.n, dtype=int)
        return harmful_then_random(scores, labels, fraction, strata, random_state=seed)
    return points_to_remove(scores, labels, fraction, most_important=most_important,
                            stratify=setup.strata, random_state=seed)


@validate_params(
    {
        **SCORED_PARAMS,
        "fractions": ["array-like", None],
        "most_important": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
@fill_retraining_doc
def removal_score(estimator, X, y, X_test, y_test, scores, labels, *, most_important,
                  fractions=None, stratify=False, order="score", n_seeds=3, n_jobs=None,
                  random_state=None, baselines=None, metric=None):
    """Test accuracy after retraining without the points an attribution ranks first.

    The paper's two removal tasks:

    * ``most_important=True`` (retraining): remove the *most* helpful
      points; a good attribution makes accuracy drop (lower is better);
    * ``most_important=False`` (pruning): remove the *least* helpful
      points; a good attribution keeps accuracy (higher is better).

    For a regressor the test RMSE (it rises when the most helpful points
    go) or R^2 (``metric="r2"``, read as accuracy). See the module
    docstring for how points are removed.

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
    most_important : bool
        Remove the highest-scoring points first (``True``, the retraining
        task) or the lowest-scoring ones (``False``, pruning).
    fractions : sequence of float, default=None
        Shares of the training points removed, one evaluation each.
        ``None`` takes the paper's: 1, 5, 10 and 20% when removing the
        most important points, 25, 50 and 75% when pruning.
    stratify : bool, default=False
        %(stratify)s
    order : {"score", "harmful-then-random"}, default="score"
        %(order)s
    n_seeds : int, default=3
        Retraining seeds; results are means and standard errors over them.
    n_jobs : int, default=None
        %(n_jobs)s
    random_state : int, RandomState instance or None, default=None
        Draws the retraining seeds; each seed also drives the random
        choices of its removal (the points taken from the last, partly
        removed group; with ``order="harmful-then-random"``, the random
        remainder) and, when ``baselines`` is ``None``, of the random
        baseline.
    baselines : RemovalBaselines, default=None
        %(baselines)s
    metric : {"accuracy", "rmse", "r2"}, default=None
        %(metric)s

    Returns
    -------
    result : RemovalResult
        Test ``metric`` after removal by score at every fraction, with the
        baselines.

    Examples
    --------
    Eight groups of ten points, the two highest-scoring ones removed first:

    >>> import numpy as np
    >>> from sklearn.datasets import make_blobs
    >>> from skggda.metrics import removal_score
    >>> from skggda.models import make_classifier
    >>> X, y = make_blobs(80, 3, centers=2, random_state=0)
    >>> labels, group_scores = np.arange(80) % 8, np.random.RandomState(0).normal(size=8)
    >>> result = removal_score(make_classifier((4,), max_epochs=2), X, y, X, y,
    ...     group_scores, labels, most_important=True, fractions=[0.25], n_seeds=1,
    ...     random_state=0)
    >>> result.accuracy.shape, result.kept_class_share.shape
    ((1,), (1, 2))

    Pruning the harmful points by score, the rest at random, at the
    paper's three fractions:

    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(80, 3))
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> result = removal_score(make_classifier((4,), max_epochs=2), X, y, X, y,
    ...     rng.normal(size=80), np.arange(80), most_important=False,
    ...     order="harmful-then-random", n_seeds=1, random_state=0)
    >>> result.fractions.tolist()
    [0.25, 0.5, 0.75]
    """
    if fractions is None:
        fractions = PAPER_FRACTIONS[most_important]
    setup = _RetrainingSetup.build(X, y, X_test, y_test, fractions, stratify, n_seeds,
                                   random_state, resolve_metric(metric, estimator))
    if baselines is None:
        baseline_jobs = setup.baseline_jobs()
    else:
        setup.check(baselines)
        baseline_jobs = []
    if order not in PRUNING_ORDERS or (order != "score" and most_important):
        raise ValueError(f"order must be one of {PRUNING_ORDERS}, and 'score' when removing "
                         f"the most important points; got {order!r}.")
    everything = np.arange(setup.n)
    by_score = [  # (keep, seed) per seed and fraction
        (np.setdiff1d(everything, _removed(setup, scores, labels, fraction, most_important,
                                           order, seed)), seed)
        for seed in setup.seeds for fraction in setup.fractions
    ]
    accuracies = setup.retrain(estimator, by_score + baseline_jobs, n_jobs)
    removal = np.asarray(accuracies[:len(by_score)]).reshape(n_seeds, len(setup.fractions))
    if baselines is None:
        baselines = setup.baselines_from(accuracies[len(by_score):])
    shares = setup.kept_class_share([keep for keep, _ in by_score])
    return RemovalResult(
        fractions=setup.fractions,
        accuracy=removal.mean(0), accuracy_sem=_sem(removal),
        random_accuracy=baselines.random.mean(0), random_accuracy_sem=_sem(baselines.random),
        full_accuracy=float(baselines.full.mean()), full_accuracy_sem=float(_sem(baselines.full)),
        kept_class_share=shares, n_seeds=n_seeds, most_important=most_important,
        classes=setup.classes_, metric=setup.metric,
    )


@dataclass
class RemovalBaselines:
    """The retrainings of a removal evaluation that do not depend on the scores.

    Test ``metric`` without removal and after random removal, per retraining
    seed; :func:`removal_baselines` computes them once, and every
    :func:`removal_score` call with the same data, fractions, seeds and
    ``stratify`` can reuse them (``baselines=``) instead of retraining them.
    Every parameter is kept as the attribute of the same name.

    Parameters
    ----------
    seeds : ndarray of shape (n_seeds,)
        The retraining seeds.
    fractions : ndarray of shape (n_fractions,)
        Shares of the training points removed at random.
    stratify : bool
        Whether random removal took the same share of every class.
    full : ndarray of shape (n_seeds,)
        Test ``metric`` with all training points, per seed.
    random : ndarray of shape (n_seeds, n_fractions)
        Test ``metric`` after random removal, per seed and fraction.
    n_samples : tuple of int
        Training and test points they were measured on.
    metric : {"accuracy", "rmse", "r2"}, default="accuracy"
        The test metric of ``full`` and ``random``.

    Examples
    --------
    Two seeds, two fractions: a full and two random-removal retrainings each:

    >>> from sklearn.datasets import make_classification
    >>> from skggda.metrics import removal_baselines
    >>> from skggda.models import make_classifier
    >>> X, y = make_classification(60, 3, n_informative=2, n_redundant=0, random_state=0)
    >>> shared = removal_baselines(make_classifier((4,), max_epochs=1), X, y, X, y,
    ...                            fractions=[0.25, 0.5], n_seeds=2, random_state=0)
    >>> shared.full.shape, shared.random.shape, shared.n_samples
    ((2,), (2, 2), (60, 60))
    """

    seeds: np.ndarray
    fractions: np.ndarray
    stratify: bool
    full: np.ndarray
    random: np.ndarray
    n_samples: tuple
    metric: str = "accuracy"


@validate_params(
    {
        **RETRAINING_PARAMS,
        "fractions": ["array-like"],
    },
    prefer_skip_nested_validation=True,
)
@fill_retraining_doc
def removal_baselines(estimator, X, y, X_test, y_test, *, fractions, stratify=False, n_seeds=3,
                      n_jobs=None, random_state=None, metric=None):
    """No-removal and random-removal retrainings, to share between :func:`removal_score` calls.

    Pass the result as the ``baselines`` of :func:`removal_score` to skip
    these ``n_seeds * (1 + n_fractions)`` retrainings there.

    Parameters
    ----------
    estimator : classifier or regressor
        %(estimator)s
    X : array-like of shape (n_samples, ...)
        Training inputs, retrained on whole and after random removal.
    y : array-like of shape (n_samples,)
        Training labels (or regression targets).
    X_test : array-like of shape (n_test, ...)
        Test inputs, where the ``metric`` is measured.
    y_test : array-like of shape (n_test,)
        Labels (or regression targets) of ``X_test``.
    fractions : sequence of float
        Shares of the training points removed, one evaluation each.
    stratify : bool, default=False
        %(stratify)s
    n_seeds : int, default=3
        Retraining seeds; results are means and standard errors over them.
    n_jobs : int, default=None
        %(n_jobs)s
    random_state : int, RandomState instance or None, default=None
        Draws the retraining seeds and the random choices of removal.
    metric : {"accuracy", "rmse", "r2"}, default=None
        %(metric)s

    Returns
    -------
    baselines : RemovalBaselines
        Test ``metric`` per seed with no removal and after random removal.

    Examples
    --------
    Two attributions judged against the same baselines:

    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> from skggda.metrics import removal_baselines, removal_score
    >>> from skggda.models import make_classifier
    >>> X, y = make_classification(80, 3, n_informative=2, n_redundant=0, random_state=1)
    >>> rng, net = np.random.RandomState(0), make_classifier((4,), max_epochs=2)
    >>> shared = removal_baselines(net, X, y, X, y, fractions=[0.25], n_seeds=1,
    ...                            random_state=0)
    >>> for scores in (rng.normal(size=80), rng.normal(size=80)):  # two attributions
    ...     result = removal_score(net, X, y, X, y, scores, np.arange(80),
    ...                            most_important=False, fractions=[0.25], n_seeds=1,
    ...                            random_state=0, baselines=shared)
    >>> result.random_accuracy[0] == shared.random[0, 0]
    np.True_
    """
    setup = _RetrainingSetup.build(X, y, X_test, y_test, fractions, stratify, n_seeds,
                                   random_state, resolve_metric(metric, estimator))
    return setup.baselines_from(setup.retrain(estimator, setup.baseline_jobs(), n_jobs))


@dataclass
class _RetrainingSetup:
    """Encoded data, seeds and fractions shared by score and baseline retrainings."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes_: np.ndarray | None
    fractions: np.ndarray
    stratify: bool
    seeds: np.ndarray
    metric: str

    @classmethod
    def build(cls, X, y, X_test, y_test, fractions, stratify, n_seeds, random_state, metric):
        if not isinstance(stratify, (bool, np.bool_)):
            raise TypeError(f"stratify must be True or False (the classes are y), got "
                            f"{type(stratify).__name__}.")
        regression = METRICS[metric][1] == "regression"
        if regression and stratify:
            raise ValueError("stratify=True keeps class shares; a regressor's targets have "
                             "no classes.")
        y, y_test, classes = _encode(y, y_test, regression)
        seeds = derive_seeds(random_state, n_seeds)
        return cls(np.asarray(X), y, np.asarray(X_test), y_test, classes,
                   np.asarray(fractions, dtype=float), bool(stratify), seeds, metric)

    @property
    def n(self):
        return len(self.y)

    @property
    def n_classes(self):
        """Number of classes; ``None`` for a regressor."""
        return None if self.classes_ is None else len(self.classes_)

    @property
    def strata(self):
        """Per-point classes to stratify by, or ``None``."""
        return self.y if self.stratify else None

    def kept_class_share(self, kept):
        """``(n_fractions, n_classes)`` class shares of the kept points, mean over seeds."""
        if self.classes_ is None:
            return np.zeros((len(self.fractions), 0))
        shares = [np.bincount(self.y[keep], minlength=self.n_classes) / max(len(keep), 1)
                  for keep in kept]
        return np.array(shares).reshape(len(self.seeds), len(self.fractions), -1).mean(0)

    def baseline_jobs(self):
        """``(keep, seed)`` per seed: everything, then random removal at every fraction."""
        everything = np.arange(self.n)
        jobs = []
        for seed in self.seeds:
            jobs.append((everything, seed))
            for fraction in self.fractions:
                removed = _random_removal(self.n, fraction, self.strata, seed)
                jobs.append((np.setdiff1d(everything, removed), seed))
        return jobs

    def baselines_from(self, accuracies):
        per_seed = np.asarray(accuracies).reshape(len(self.seeds), 1 + len(self.fractions))
        return RemovalBaselines(self.seeds, self.fractions, self.stratify, per_seed[:, 0],
                                per_seed[:, 1:], (len(self.y), len(self.y_test)), self.metric)

    def check(self, baselines):
        """Refuse baselines computed for other data, seeds, fractions or stratification."""
        same = (tuple(baselines.n_samples) == (len(self.y), len(self.y_test))
                and np.array_equal(baselines.seeds, self.seeds)
                and np.array_equal(baselines.fractions, self.fractions)
                and baselines.stratify == self.stratify
                and baselines.metric == self.metric)
        if not same:
            raise ValueError(
                "baselines were computed for other data, seeds, fractions, stratify or "
                "metric; call removal_baselines with the same data, fractions, stratify, "
                "n_seeds, random_state and metric as this call."
            )

    def retrain(self, estimator, jobs, n_jobs):
        """Test metric of a clone trained on ``X[keep]`` with ``seed``, per job."""
        return Parallel(n_jobs=n_jobs)(
            delayed(_fit_and_score)(estimator, self.X, self.y, self.X_test, self.y_test, keep,
                                    int(seed), self.n_classes, self.metric)
            for keep, seed in jobs
        )
