"""Removal-based evaluation: retrain without the points an attribution singles out.

* :func:`retraining_score` -- remove the *most* important 1/5/10/20% and
  retrain: a good attribution makes accuracy drop (lower is better);
* :func:`pruning_score` -- remove the *least* important 25/50/75% and
  retrain: a good attribution keeps accuracy (higher is better).

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
from sklearn.base import clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state

from ._noisy_labels import check_finite_scores

_SEED_MAX = np.iinfo(np.int32).max


def removal_order(scores, labels, *, most_important=True, random_state=None):
    """Training points in removal order: whole groups by score, random order inside a group.

    Parameters
    ----------
    scores : array-like of shape (n_groups,)
    labels : array-like of shape (n_samples,)
        Group of every training point.
    most_important : bool, default=True
        Highest scores first (retraining score); ``False``: lowest first (pruning).
    random_state : int, RandomState instance or None, default=None
        Order inside groups (and among tied groups).

    Returns
    -------
    order : ndarray of shape (n_samples,)

    Examples
    --------
    >>> from skggda.metrics import removal_order
    >>> removal_order([0.1, 0.9], [0, 0, 1], random_state=0)[0]  # group 1 goes first
    np.int64(2)
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    check_finite_scores(scores)
    rng = check_random_state(random_state)
    tiebreak = rng.permutation(len(scores))
    rank = np.lexsort((tiebreak, -scores if most_important else scores))
    position = np.empty(len(scores), dtype=np.int64)
    position[rank] = np.arange(len(scores))
    inside = rng.permutation(len(labels))
    return np.lexsort((inside, position[labels]))


def points_to_remove(scores, labels, fraction, *, most_important=True, stratify=None,
                     random_state=None):
    """Indices of the ``fraction`` of training points removed first.

    Whole groups in score order; the last group partially, its points at
    random. ``round(fraction * n)`` points are returned (with ``stratify``,
    ``round(fraction * n_c)`` of every class ``c``).

    Parameters
    ----------
    scores : array-like of shape (n_groups,)
    labels : array-like of shape (n_samples,)
        Group of every training point.
    fraction : float in [0, 1]
    most_important : bool, default=True
        Highest scores first; ``False``: lowest first (pruning).
    stratify : array-like of shape (n_samples,), default=None
        Class of every training point: remove ``round(fraction * n_c)``
        points of each class ``c``, each class in the score order of its
        points' groups (as ``train_test_split(stratify=y)`` keeps class
        proportions). A group holding several classes is split between them.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    removed : ndarray, sorted

    Examples
    --------
    >>> from skggda.metrics import points_to_remove
    >>> sorted(points_to_remove([5.0, 1.0], [0, 0, 1, 1], 0.5).tolist())
    [0, 1]
    >>> sorted(points_to_remove([5.0, 1.0], [0, 0, 1, 1], 0.5, stratify=[0, 1, 0, 1]).tolist())
    [0, 1]
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}.")
    labels = np.asarray(labels)
    if stratify is None:
        order = removal_order(scores, labels, most_important=most_important,
                              random_state=random_state)
        return np.sort(order[: int(round(fraction * len(order)))])
    stratify = np.asarray(stratify)
    if stratify.shape != labels.shape:
        raise ValueError(f"stratify has shape {stratify.shape}; expected one class per "
                         f"training point, shape {labels.shape}.")
    rng = check_random_state(random_state)
    removed = []
    for members in _class_members(stratify):
        order = removal_order(scores, labels[members], most_important=most_important,
                              random_state=rng)
        removed.append(members[order[: int(round(fraction * len(members)))]])
    return np.sort(np.concatenate(removed))


#: Pruning orders of :func:`removal_score` (``most_important=False``).
PRUNING_ORDERS = ("score", "harmful-then-random")


def harmful_then_random(scores, labels, fraction, strata, *, max_harmful=0.05,
                        random_state=None):
    """Pruning that starts with the harmful points and leaves the rest to chance.

    The points of groups with a negative score -- predicted to *lower* the
    property's badness when removed -- go first, lowest score first (whole
    groups, the last one partially at random), up to ``max_harmful`` of the
    training set; the remainder of the ``round(fraction * n)`` points is
    drawn at random class by class, topping every class up towards its share
    ``fraction * n_c`` (largest remainders), so the kept set keeps the class
    proportions as far as the harmful removals allow.

    Pruning the lowest scores all the way removes whole classes and falls
    below random removal (see ``benchmarks/REPRODUCTION.md``); this order
    uses the attribution only where it predicts a gain.

    Parameters
    ----------
    scores : array-like of shape (n_groups,)
    labels : array-like of shape (n_samples,)
        Group of every training point.
    fraction : float in [0, 1]
    strata : array-like of shape (n_samples,)
        Class of every training point.
    max_harmful : float in [0, 1], default=0.05
        At most this share of the training set is removed for its score.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    removed : ndarray, sorted

    Examples
    --------
    >>> from skggda.metrics import harmful_then_random
    >>> removed = harmful_then_random([-1.0, 2.0, 3.0, 1.0], [0, 1, 2, 3], 0.5,
    ...                               [0, 0, 1, 1], max_harmful=0.25, random_state=0)
    >>> removed.tolist()  # the harmful point 0, then one point of class 1 at random
    [0, 2]
    """
    labels, strata = np.asarray(labels), np.asarray(strata)
    scores = np.asarray(scores, dtype=float)
    rng = check_random_state(random_state)
    n = len(labels)
    n_removed = int(round(fraction * n))
    order = removal_order(scores, labels, most_important=False, random_state=rng)
    n_harmful = int(min((scores[labels] < 0).sum(), n_removed, round(max_harmful * n)))
    harmful = order[:n_harmful]
    rest = np.setdiff1d(np.arange(n), harmful)
    classes = np.unique(strata)
    taken = np.array([(strata[harmful] == c).sum() for c in classes])
    available = np.array([(strata[rest] == c).sum() for c in classes])
    wanted = np.array([fraction * (strata == c).sum() for c in classes]) - taken
    counts = _largest_remainders(n_removed - n_harmful, np.clip(wanted, 0, None), available)
    drawn = [rng.permutation(rest[strata[rest] == c])[:k] for c, k in zip(classes, counts)]
    return np.sort(np.concatenate([harmful, *drawn]).astype(np.int64))


def _largest_remainders(total, weights, caps):
    """Integers summing to ``total`` in proportion to ``weights``, each at most its cap.

    Shares a capped entry cannot take go to the others in proportion to
    their room (zero weights everywhere: in proportion to the caps).
    """
    weights = np.asarray(weights, dtype=float)
    caps = np.asarray(caps)
    counts = np.zeros(len(caps), dtype=int)
    while counts.sum() < total:
        room = caps - counts
        w = np.where(room > 0, weights if weights[room > 0].sum() > 0 else room, 0.0)
        share = (total - counts.sum()) * w / w.sum()
        add = np.minimum(np.floor(share).astype(int), room)
        left = total - counts.sum() - add.sum()
        for i in np.argsort(-(share - np.floor(share)))[:max(left, 0)]:
            if add[i] < room[i]:
                add[i] += 1
        if not add.any():  # every share below one and its remainder at a cap
            add[np.argmax(np.where(room > 0, w, -1))] = 1
        counts += add
    return counts


def _class_members(strata):
    """Indices of the points of each class of ``strata``, classes in sorted order."""
    return [np.flatnonzero(strata == value) for value in np.unique(strata)]


def _random_removal(n, fraction, strata, seed):
    """The random-removal baseline: as many points as :func:`points_to_remove`
    removes, at random (of every class, with ``strata``)."""
    rng = np.random.RandomState(seed)
    if strata is None:
        return rng.permutation(n)[: int(round(fraction * n))]
    return np.concatenate([rng.permutation(members)[: int(round(fraction * len(members)))]
                           for members in _class_members(strata)])


@dataclass
class RemovalResult:
    """Accuracies after removal, with baselines, as means and standard errors over seeds.

    Attributes
    ----------
    fractions : ndarray of shape (n_fractions,)
    accuracy, accuracy_sem : ndarray of shape (n_fractions,)
        Test accuracy after removing by score.
    random_accuracy, random_accuracy_sem : ndarray of shape (n_fractions,)
        Test accuracy after removing the same number of points at random.
    full_accuracy, full_accuracy_sem : float
        Test accuracy with all training points.
    kept_class_share : ndarray of shape (n_fractions, n_classes)
        Class proportions of the training points kept (removal by score).
    n_seeds : int
    most_important : bool
        What was removed first.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics import RemovalResult
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

    def as_table(self) -> str:
        """A plain-text table, one row per fraction."""
        what = "most" if self.most_important else "least"
        lines = [f"removed ({what} important)  accuracy        random removal",
                 f"{'none':>26}  {_pm(self.full_accuracy, self.full_accuracy_sem)}"]
        for f, a, s, r, rs in zip(self.fractions, self.accuracy, self.accuracy_sem,
                                  self.random_accuracy, self.random_accuracy_sem):
            lines.append(f"{f:>25.0%}  {_pm(a, s)}  {_pm(r, rs)}")
        return "\n".join(lines)


def _pm(mean, sem):
    return f"{100 * mean:5.1f} ± {100 * sem:4.1f}%"


def _encode(y, y_test):
    """Training and test labels as ``0 .. n_classes - 1``, and the classes."""
    encoder = LabelEncoder().fit(np.concatenate([np.asarray(y), np.asarray(y_test)]))
    return encoder.transform(y), encoder.transform(y_test), encoder.classes_


def _sem(values, axis=0):
    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    return values.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(
        np.delete(values.shape, axis))


def retraining_clone(estimator, seed, n_classes):
    """An unfitted clone seeded with ``seed`` that keeps an output for every class.

    A kept subset may lack a class (Grad-K-Means groups are often
    class-pure); a skorch net would then infer a smaller head from it. Its
    ``classes`` parameter, when unset, is fixed to all ``n_classes``
    encoded labels.
    """
    net = clone(estimator)
    params = net.get_params(deep=False)
    if "random_state" in params:
        net.set_params(random_state=int(seed))
    if "classes" in params and params["classes"] is None:
        net.set_params(classes=np.arange(n_classes))
    return net


def _fit_and_score(estimator, X, y, X_test, y_test, keep, seed, n_classes):
    """Train a clone on ``X[keep]`` with ``seed`` and return its test accuracy (a joblib job)."""
    net = retraining_clone(estimator, seed, n_classes)
    net.fit(X[keep], y[keep])
    return float(np.mean(np.asarray(net.predict(X_test)) == y_test))


def _removed(setup, scores, labels, fraction, most_important, order, seed):
    """The points a scored removal takes out, for one seed and fraction."""
    if order == "harmful-then-random":
        return harmful_then_random(scores, labels, fraction, setup.y, random_state=seed)
    return points_to_remove(scores, labels, fraction, most_important=most_important,
                            stratify=setup.strata, random_state=seed)


def removal_score(estimator, X, y, X_test, y_test, scores, labels, fractions, *,
                  most_important, stratify=False, order="score", n_seeds=3, n_jobs=None,
                  random_state=None, baselines=None):
    """Retrain without the points ranked first by ``scores``; see the module docstring.

    Parameters
    ----------
    estimator : classifier
        The training recipe (cloned for every retraining; a ``random_state``
        parameter is set per seed).
    X, y : array-like
        The training data the scores refer to.
    X_test, y_test : array-like
        Where accuracy is measured.
    scores : array-like of shape (n_groups,)
        Group scores (higher = more helpful).
    labels : array-like of shape (n_samples,)
        Group of every training point.
    fractions : sequence of float
    most_important : bool
        Remove the highest-scoring points first (``True``) or the lowest.
    stratify : bool, default=False
        Remove the same share of every class of ``y`` (see
        :func:`points_to_remove`); the random baseline is then stratified too.
    order : {"score", "harmful-then-random"}, default="score"
        ``"score"``: whole groups in score order. ``"harmful-then-random"``
        (pruning only): the negatively scored points first, at most 5% of
        the training set, then a class-stratified random remainder (see
        :func:`harmful_then_random`).
    n_seeds : int, default=3
    n_jobs : int, default=None
    random_state : int, RandomState instance or None, default=None
    baselines : RemovalBaselines, default=None
        The no-removal and random-removal retrainings, from
        :func:`removal_baselines` with the same data, ``fractions``,
        ``stratify``, ``n_seeds`` and ``random_state``; computed here when
        ``None``.

    Returns
    -------
    RemovalResult

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics import removal_score
    >>> from skggda.models import make_classifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(80, 3)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> scores = rng.normal(size=80)  # an attribution, one group per point
    >>> result = removal_score(make_classifier((4,), max_epochs=2), X, y, X, y, scores,
    ...     np.arange(80), [0.25], most_important=True, n_seeds=1, random_state=0)
    >>> result.accuracy.shape, result.random_accuracy.shape
    ((1,), (1,))
    """
    setup = _RetrainingSetup.build(X, y, X_test, y_test, fractions, stratify, n_seeds,
                                   random_state)
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
    shares = np.array([
        np.bincount(setup.y[keep], minlength=setup.n_classes) / max(len(keep), 1)
        for keep, _ in by_score
    ]).reshape(n_seeds, len(setup.fractions), -1).mean(0)
    return RemovalResult(
        fractions=setup.fractions,
        accuracy=removal.mean(0), accuracy_sem=_sem(removal),
        random_accuracy=baselines.random.mean(0), random_accuracy_sem=_sem(baselines.random),
        full_accuracy=float(baselines.full.mean()), full_accuracy_sem=float(_sem(baselines.full)),
        kept_class_share=shares, n_seeds=n_seeds, most_important=most_important,
        classes=setup.classes_,
    )


@dataclass
class RemovalBaselines:
    """The retrainings of a removal evaluation that do not depend on the scores.

    Test accuracy without removal and after random removal, per retraining
    seed; :func:`removal_baselines` computes them once, and every
    :func:`removal_score` call with the same data, fractions, seeds and
    ``stratify`` can reuse them (``baselines=``) instead of retraining them.

    Attributes
    ----------
    seeds : ndarray of shape (n_seeds,)
    fractions : ndarray of shape (n_fractions,)
    stratify : bool
    full : ndarray of shape (n_seeds,)
    random : ndarray of shape (n_seeds, n_fractions)
    n_samples : tuple of int
        Training and test points they were measured on.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics import removal_baselines
    >>> from skggda.models import make_classifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(60, 3)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> shared = removal_baselines(make_classifier((4,), max_epochs=1), X, y, X, y,
    ...                            [0.25, 0.5], n_seeds=2, random_state=0)
    >>> shared.full.shape, shared.random.shape, shared.n_samples
    ((2,), (2, 2), (60, 60))
    """

    seeds: np.ndarray
    fractions: np.ndarray
    stratify: bool
    full: np.ndarray
    random: np.ndarray
    n_samples: tuple


def removal_baselines(estimator, X, y, X_test, y_test, fractions, *, stratify=False, n_seeds=3,
                      n_jobs=None, random_state=None):
    """No-removal and random-removal retrainings, to share between :func:`removal_score` calls.

    Parameters are those of :func:`removal_score`; pass the result as its
    ``baselines`` to skip these ``n_seeds * (1 + n_fractions)`` retrainings.

    Returns
    -------
    RemovalBaselines

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics import removal_baselines, pruning_score
    >>> from skggda.models import make_classifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(80, 3)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> net = make_classifier((4,), max_epochs=2)
    >>> shared = removal_baselines(net, X, y, X, y, [0.25], n_seeds=1, random_state=0)
    >>> for scores in (rng.normal(size=80), rng.normal(size=80)):  # two attributions
    ...     result = pruning_score(net, X, y, X, y, scores, np.arange(80), fractions=[0.25],
    ...                            n_seeds=1, random_state=0, baselines=shared)
    >>> result.random_accuracy[0] == shared.random[0, 0]
    np.True_
    """
    setup = _RetrainingSetup.build(X, y, X_test, y_test, fractions, stratify, n_seeds,
                                   random_state)
    return setup.baselines_from(setup.retrain(estimator, setup.baseline_jobs(), n_jobs))


@dataclass
class _RetrainingSetup:
    """Encoded data, seeds and fractions shared by score and baseline retrainings."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes_: np.ndarray
    fractions: np.ndarray
    stratify: bool
    seeds: np.ndarray

    @classmethod
    def build(cls, X, y, X_test, y_test, fractions, stratify, n_seeds, random_state):
        if not isinstance(stratify, (bool, np.bool_)):
            raise TypeError(f"stratify must be True or False (the classes are y), got "
                            f"{type(stratify).__name__}.")
        y, y_test, classes = _encode(y, y_test)
        seeds = check_random_state(random_state).randint(_SEED_MAX, size=n_seeds)
        return cls(np.asarray(X), y, np.asarray(X_test), y_test, classes,
                   np.asarray(fractions, dtype=float), bool(stratify), seeds)

    @property
    def n(self):
        return len(self.y)

    @property
    def n_classes(self):
        return len(self.classes_)

    @property
    def strata(self):
        """Per-point classes to stratify by, or ``None``."""
        return self.y if self.stratify else None

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
                                per_seed[:, 1:], (len(self.y), len(self.y_test)))

    def check(self, baselines):
        """Refuse baselines computed for other data, seeds, fractions or stratification."""
        same = (tuple(baselines.n_samples) == (len(self.y), len(self.y_test))
                and np.array_equal(baselines.seeds, self.seeds)
                and np.array_equal(baselines.fractions, self.fractions)
                and baselines.stratify == self.stratify)
        if not same:
            raise ValueError(
                "baselines were computed for other data, seeds, fractions or stratify; "
                "call removal_baselines with the same data, fractions, stratify, n_seeds "
                "and random_state as this call."
            )

    def retrain(self, estimator, jobs, n_jobs):
        """Test accuracy of a clone trained on ``X[keep]`` with ``seed``, per job."""
        return Parallel(n_jobs=n_jobs)(
            delayed(_fit_and_score)(estimator, self.X, self.y, self.X_test, self.y_test, keep,
                                    int(seed), self.n_classes)
            for keep, seed in jobs
        )


def retraining_score(estimator, X, y, X_test, y_test, scores, labels, *,
                     fractions=(0.01, 0.05, 0.10, 0.20), stratify=False, n_seeds=3,
                     n_jobs=None, random_state=None, baselines=None):
    """Test accuracy after removing the *most* important points (lower is better).

    See :func:`removal_score` for the parameters.

    Returns
    -------
    RemovalResult

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics import retraining_score
    >>> from skggda.models import make_classifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(80, 3)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> scores = rng.normal(size=80)  # an attribution, one group per point
    >>> result = retraining_score(make_classifier((4,), max_epochs=2), X, y, X, y, scores,
    ...     np.arange(80), fractions=[0.25], n_seeds=1, random_state=0)
    >>> result.accuracy.shape, result.random_accuracy.shape
    ((1,), (1,))
    """
    return removal_score(estimator, X, y, X_test, y_test, scores, labels, fractions,
                         most_important=True, stratify=stratify, n_seeds=n_seeds,
                         n_jobs=n_jobs, random_state=random_state, baselines=baselines)


def pruning_score(estimator, X, y, X_test, y_test, scores, labels, *,
                  fractions=(0.25, 0.50, 0.75), stratify=False, order="score", n_seeds=3,
                  n_jobs=None, random_state=None, baselines=None):
    """Test accuracy after removing the *least* important points (higher is better).

    See :func:`removal_score` for the parameters; ``order="harmful-then-random"``
    removes only the harmful points by score and the rest at random, an order
    that does not fall below random removal where plain score order does.

    Returns
    -------
    RemovalResult

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics import pruning_score
    >>> from skggda.models import make_classifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(80, 3)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> scores = rng.normal(size=80)  # an attribution, one group per point
    >>> result = pruning_score(make_classifier((4,), max_epochs=2), X, y, X, y, scores,
    ...     np.arange(80), fractions=[0.25], n_seeds=1, random_state=0)
    >>> result.accuracy.shape, result.random_accuracy.shape
    ((1,), (1,))
    """
    return removal_score(estimator, X, y, X_test, y_test, scores, labels, fractions,
                         most_important=False, stratify=stratify, order=order,
                         n_seeds=n_seeds, n_jobs=n_jobs, random_state=random_state,
                         baselines=baselines)
