"""Counterfactual ground truth: group leave-one-out and the linear datamodeling score.

Both retrain the model on subsets of the training groups and compare the
*actual* change of the property with what the group scores predict. With
skggda's sign convention a group's score is the predicted increase of the
property's badness (loss up / accuracy down) when the group is removed, so:

* group leave-one-out gives, per group, ``badness(without j) - badness(all)``:
  the quantity the scores estimate (good scores correlate positively);
* the linear datamodeling score (LDS, Park et al. 2023) trains on random
  subsets ``S`` holding ``subset_fraction`` of the groups and rank-correlates
  the predicted badness ``badness(all) + sum_{j not in S} score_j`` with the
  actual one. :func:`datamodel_retrainings` records those retrainings once
  (a :class:`DatamodelRetrainings` table, cacheable on disk) and
  :func:`lds_from_retrainings` scores any attribution against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import spearmanr
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from ..properties import property_terms, resolve_property
from ..utils._seeding import derive_seeds
from ..utils._targets import is_regression
from ._docs import fill_retraining_doc
from ._retraining import RETRAINING_PARAMS, SCORED_PARAMS, _encode, _sem, fit_subset

#: ``validate_params`` constraints of the retrainings on subsets of the groups ...
_GROUPED_PARAMS = {**RETRAINING_PARAMS, "labels": ["array-like"]}
#: ... and of the random subsets an LDS draws.
_SUBSET_PARAMS = {
    "n_subsets": [Interval(Integral, 1, None, closed="left")],
    "subset_fraction": [Interval(Real, 0, 1, closed="neither")],
}


def _fit_and_measure(estimator, X, y, keep, seed, X_test, y_test, prop, classes):
    """Retrain on ``keep``; return the badness and per-sample badness terms (a joblib job)."""
    net = fit_subset(estimator, X, y, keep, seed, None if classes is None else len(classes))
    value, terms = property_terms(prop, net, X_test, y_test, classes)
    return prop.sign * value, None if terms is None else prop.sign * terms


def _retrain(estimator, X, y, X_test, y_test, keeps, seeds, prop, n_jobs, per_sample=False):
    """The badness of a net retrained on every ``keep`` with every seed, in parallel.

    An array of shape ``(n_seeds, len(keeps))``, or with ``per_sample`` the
    badness terms of every evaluation sample, ``(n_seeds, len(keeps), n_test)``.
    """
    X, X_test = np.asarray(X), np.asarray(X_test)
    y, y_test, classes = _encode(y, y_test, is_regression(estimator))
    results = Parallel(n_jobs=n_jobs)(
        delayed(_fit_and_measure)(estimator, X, y, keep, seed, X_test, y_test, prop, classes)
        for seed in seeds for keep in keeps
    )
    values = np.array([terms if per_sample else value for value, terms in results], dtype=float)
    return values.reshape(len(seeds), len(keeps), *values.shape[1:])


@dataclass
class GroupLOOResult:
    """Actual effect of removing each group.

    Every parameter is kept as the attribute of the same name.

    Parameters
    ----------
    effect : ndarray of shape (n_groups,)
        ``badness(without group j) - badness(all)``, mean over seeds.
    effect_sem : ndarray of shape (n_groups,)
        Its standard error over seeds.
    full_badness : float
        Badness with all groups (mean over seeds).
    n_seeds : int
        Training seeds the means are taken over.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics._datamodels import GroupLOOResult
    >>> result = GroupLOOResult(np.array([0.1, -0.2, 0.05]), np.zeros(3), 0.5, 1)
    >>> result.correlation([1.0, -1.0, 0.0])
    1.0
    """

    effect: np.ndarray
    effect_sem: np.ndarray
    full_badness: float
    n_seeds: int

    def correlation(self, scores):
        """Spearman correlation of group scores with the actual effects.

        Parameters
        ----------
        scores : array-like of shape (n_groups,)
            Group scores of an attribution (the predicted effects).

        Returns
        -------
        rho : float
            Between -1 and 1; good scores correlate positively.
        """
        return float(spearmanr(scores, self.effect)[0])


@validate_params(_GROUPED_PARAMS, prefer_skip_nested_validation=True)
@fill_retraining_doc
def group_leave_one_out(estimator, X, y, X_test, y_test, labels, *, property="loss",
                        n_seeds=1, n_jobs=None, random_state=None):
    """Retrain without each group in turn (``n_groups + 1`` trainings per seed).

    Parameters
    ----------
    estimator : classifier or regressor
        %(estimator)s
    X : array-like of shape (n_samples, ...)
        Training inputs, grouped by ``labels``.
    y : array-like of shape (n_samples,)
        Training labels (or regression targets).
    X_test : array-like of shape (n_test, ...)
        Evaluation inputs of the property.
    y_test : array-like of shape (n_test,)
        Labels (or regression targets) of ``X_test``.
    labels : array-like of shape (n_samples,)
        Group of every training point, in ``0..n_groups-1``.
    property : str, Property or callable, default="loss"
        %(property)s
    n_seeds : int, default=1
        %(n_seeds)s
    n_jobs : int, default=None
        %(n_jobs)s
    random_state : int, RandomState instance or None, default=None
        Draws the training seeds.

    Returns
    -------
    result : GroupLOOResult
        The actual effect of removing each group, to correlate with scores.

    Examples
    --------
    Three groups of twenty points, each left out once:

    >>> import numpy as np
    >>> from skggda.metrics import group_leave_one_out
    >>> from skggda.models import make_classifier
    >>> X = np.random.RandomState(0).normal(size=(60, 3)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> loo = group_leave_one_out(make_classifier((4,), max_epochs=2), X, y, X, y,
    ...                           np.arange(60) % 3, random_state=0)
    >>> loo.effect.shape
    (3,)
    """
    labels = np.asarray(labels)
    seeds = derive_seeds(random_state, n_seeds)
    keeps = [np.arange(len(y))] + [np.flatnonzero(labels != j)
                                   for j in range(int(labels.max()) + 1)]
    badness = _retrain(estimator, X, y, X_test, y_test, keeps, seeds,
                       resolve_property(property), n_jobs)
    effect = badness[:, 1:] - badness[:, :1]
    return GroupLOOResult(effect.mean(0), _sem(effect), float(badness[:, 0].mean()), n_seeds)


@dataclass
class LDSResult:
    """Linear datamodeling score of group attributions.

    Every parameter is kept as the attribute of the same name.

    Parameters
    ----------
    score : float
        Mean Spearman correlation between predicted and actual badness (over
        evaluation samples when the scores are per sample, else the one
        correlation of the aggregate property).
    score_sem : float
        Standard error over evaluation samples (0 for an aggregate property).
    predicted : ndarray of shape (n_subsets,) or (n_subsets, n_samples)
        Badness the scores predict for the net trained on each subset.
    actual : ndarray of shape (n_subsets,) or (n_subsets, n_samples)
        Badness of the net retrained on each subset.
    subsets : ndarray of shape (n_subsets, n_groups), bool
        Which groups every subset kept.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics._datamodels import LDSResult
    >>> LDSResult(0.4, 0.0, np.zeros(3), np.zeros(3), np.ones((3, 2), bool)).score
    0.4
    """

    score: float
    score_sem: float
    predicted: np.ndarray
    actual: np.ndarray
    subsets: np.ndarray


@dataclass
class DatamodelRetrainings:
    """The retrainings behind an LDS: which groups each subset kept, and what came out.

    They do not depend on the scores, so one table serves every attribution
    compared on the same data (see :func:`datamodel_retrainings`), and it can
    be saved (``numpy.savez(path, **vars(table))``) and reloaded
    (``DatamodelRetrainings(**numpy.load(path))``). Every parameter is kept
    as the attribute of the same name.

    Parameters
    ----------
    subsets : ndarray of shape (n_subsets, n_groups), bool
        Which groups every subset kept.
    actual : ndarray of shape (n_subsets,) or (n_subsets, n_samples)
        The property's badness (e.g. test loss) of the net retrained on each
        subset: the aggregate, or one column per evaluation sample.
    full : float or ndarray of shape (n_samples,)
        The same with every group kept.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics._datamodels import DatamodelRetrainings
    >>> table = DatamodelRetrainings(np.array([[True, False], [False, True]]),
    ...                              np.array([0.3, 0.5]), 0.2)
    >>> table.n_subsets, table.n_groups
    (2, 2)
    """

    subsets: np.ndarray
    actual: np.ndarray
    full: object

    @property
    def n_subsets(self):
        """Number of subsets retrained on (``int``)."""
        return self.subsets.shape[0]

    @property
    def n_groups(self):
        """Number of groups the subsets are drawn from (``int``)."""
        return self.subsets.shape[1]


def random_subsets(n_groups, n_subsets, subset_fraction=0.5, random_state=None):
    """Random subsets of groups, each keeping a fixed share of them.

    Parameters
    ----------
    n_groups : int
        Number of groups to draw from.
    n_subsets : int
        Number of subsets.
    subset_fraction : float, default=0.5
        Share of the groups every subset keeps: ``round(subset_fraction *
        n_groups)`` groups (at least one), drawn without replacement.
    random_state : int, RandomState instance or None, default=None
        Draws the subsets.

    Returns
    -------
    subsets : ndarray of shape (n_subsets, n_groups), bool
        Which groups every subset keeps.

    Examples
    --------
    >>> from skggda.metrics._datamodels import random_subsets
    >>> random_subsets(4, 3, 0.5, random_state=0).sum(1).tolist()
    [2, 2, 2]
    """
    rng = check_random_state(random_state)
    kept = np.zeros((n_subsets, n_groups), dtype=bool)
    for m in range(n_subsets):
        kept[m, rng.choice(n_groups, max(1, int(round(subset_fraction * n_groups))),
                           replace=False)] = True
    return kept


@validate_params(
    {
        **_GROUPED_PARAMS,
        **_SUBSET_PARAMS,
        "per_sample": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
@fill_retraining_doc
def datamodel_retrainings(estimator, X, y, X_test, y_test, labels, *, property="loss",
                          per_sample=True, n_subsets=20, subset_fraction=0.5, subsets=None,
                          n_seeds=1, n_jobs=None, random_state=None):
    """Retrain on random subsets of groups and record the property: an LDS's ground truth.

    Every subset is trained with the same ``n_seeds`` seeds (drawn from
    ``random_state``), so subsets differ by their data only.

    Parameters
    ----------
    estimator : classifier or regressor
        %(estimator)s
    X : array-like of shape (n_samples, ...)
        Training inputs, grouped by ``labels``.
    y : array-like of shape (n_samples,)
        Training labels (or regression targets).
    X_test : array-like of shape (n_test, ...)
        Evaluation inputs of the property.
    y_test : array-like of shape (n_test,)
        Labels (or regression targets) of ``X_test``.
    labels : array-like of shape (n_samples,)
        Group of every training point, in ``0..n_groups-1``.
    property : str, Property or callable, default="loss"
        %(property)s
    per_sample : bool, default=True
        Record the badness of every evaluation sample (for per-sample scores,
        the output of ``attribute``); ``False``: the aggregate only.
    n_subsets : int, default=20
        Random subsets of groups trained on.
    subset_fraction : float, default=0.5
        Fraction of the groups every subset keeps.
    subsets : ndarray of shape (n_subsets, n_groups), bool, default=None
        The subsets to train on; drawn with :func:`random_subsets` when
        ``None`` (``n_subsets`` and ``subset_fraction`` are then unused).
    n_seeds : int, default=1
        %(n_seeds)s
    n_jobs : int, default=None
        %(n_jobs)s
    random_state : int, RandomState instance or None, default=None
        Draws the training seeds and, when ``subsets`` is ``None``, the subsets.

    Returns
    -------
    retrainings : DatamodelRetrainings
        The subsets and the badness of the net retrained on each.

    Examples
    --------
    Four random halves of six groups, with per-sample badness on ten test points:

    >>> import numpy as np
    >>> from sklearn.datasets import make_blobs
    >>> from skggda.metrics import datamodel_retrainings
    >>> from skggda.models import make_classifier
    >>> X, y = make_blobs(60, 3, centers=2, random_state=0)
    >>> table = datamodel_retrainings(make_classifier((4,), max_epochs=2), X, y, X[:10], y[:10],
    ...                               np.arange(60) % 6, n_subsets=4, random_state=0)
    >>> table.subsets.shape, table.actual.shape
    ((4, 6), (4, 10))
    """
    labels = np.asarray(labels)
    prop = resolve_property(property)
    if per_sample and not prop.per_sample:
        raise ValueError(f"property={prop!r} has no per-sample terms; use per_sample=False.")
    rng = check_random_state(random_state)
    if subsets is None:
        subsets = random_subsets(int(labels.max()) + 1, n_subsets, subset_fraction, rng)
    subsets = np.asarray(subsets, dtype=bool)
    seeds = derive_seeds(rng, n_seeds)
    keeps = [np.arange(len(y))] + [np.flatnonzero(kept[labels]) for kept in subsets]
    actual = _retrain(estimator, X, y, X_test, y_test, keeps, seeds, prop, n_jobs,
                      per_sample).mean(0)
    return DatamodelRetrainings(subsets, actual[1:], actual[0])


@validate_params(
    {
        "scores": ["array-like"],
        "retrainings": [DatamodelRetrainings],
    },
    prefer_skip_nested_validation=True,
)
def lds_from_retrainings(scores, retrainings):
    """LDS of ``scores`` against a table of retrainings (no training here).

    For every subset ``S`` the predicted badness is ``full + sum_{j not in S}
    score_j``: with skggda's sign convention (a score is the badness added by
    removing the group) it ranks subsets as dattri's and TRAK's ``sum_{j in S}
    tau_j`` against the negative loss does. The LDS is the Spearman
    correlation of predicted and actual badness over the subsets, averaged
    over evaluation samples for per-sample scores.

    Parameters
    ----------
    scores : array-like of shape (n_groups,) or (n_samples, n_groups)
        Group scores of the aggregate property, or one row per evaluation
        sample (matching ``retrainings.actual``'s columns).
    retrainings : DatamodelRetrainings
        The subsets and the actual badness after retraining on each (from
        :func:`datamodel_retrainings`).

    Returns
    -------
    result : LDSResult
        The score, with the predicted and actual badness per subset.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.metrics import lds_from_retrainings
    >>> from skggda.metrics._datamodels import DatamodelRetrainings
    >>> table = DatamodelRetrainings(np.array([[True, False], [False, True], [True, True]]),
    ...                              np.array([0.5, 0.2, 0.1]), 0.1)
    >>> lds_from_retrainings([0.1, 0.4], table).score  # removing group 1 hurts most
    1.0
    """
    scores = np.asarray(scores, dtype=float)
    kept, actual = retrainings.subsets, np.asarray(retrainings.actual, dtype=float)
    if scores.shape[-1] != kept.shape[1]:
        raise ValueError(f"scores have {scores.shape[-1]} groups, the retrainings "
                         f"{kept.shape[1]}.")
    per_sample = scores.ndim == 2
    if per_sample != (actual.ndim == 2) or (per_sample and scores.shape[0] != actual.shape[1]):
        raise ValueError(f"scores of shape {scores.shape} do not match the retrainings' "
                         f"actual values of shape {actual.shape} (n_subsets, [n_samples]).")
    removed_scores = (~kept).astype(float) @ (scores.T if per_sample else scores)
    predicted = retrainings.full + removed_scores
    if per_sample:
        rho = np.array([spearmanr(predicted[:, i], actual[:, i])[0]
                        for i in range(actual.shape[1])])
        rho = rho[np.isfinite(rho)]
        return LDSResult(float(rho.mean()), float(_sem(rho)), predicted, actual, kept)
    return LDSResult(float(spearmanr(predicted, actual)[0]), 0.0, predicted, actual, kept)


@validate_params(
    {
        **SCORED_PARAMS,
        **_SUBSET_PARAMS,
    },
    prefer_skip_nested_validation=True,
)
@fill_retraining_doc
def linear_datamodeling_score(estimator, X, y, X_test, y_test, scores, labels, *,
                              property="loss", n_subsets=20, subset_fraction=0.5, n_seeds=1,
                              n_jobs=None, random_state=None):
    """LDS for groups: retrain on random subsets of groups, rank-correlate with the prediction.

    :func:`datamodel_retrainings` followed by :func:`lds_from_retrainings`;
    call those two to score several attributions against one set of
    retrainings.

    Parameters
    ----------
    estimator : classifier or regressor
        %(estimator)s
    X : array-like of shape (n_samples, ...)
        Training inputs, those the scores and ``labels`` refer to.
    y : array-like of shape (n_samples,)
        Training labels (or regression targets).
    X_test : array-like of shape (n_test, ...)
        Evaluation inputs of the property.
    y_test : array-like of shape (n_test,)
        Labels (or regression targets) of ``X_test``.
    scores : array-like of shape (n_groups,) or (n_test, n_groups)
        Group scores of the aggregate property, or per evaluation sample (the
        output of ``attribute``; the property's per-sample terms are then
        compared one evaluation sample at a time).
    labels : array-like of shape (n_samples,)
        Group of every training point, in ``0..n_groups-1``.
    property : str, Property or callable, default="loss"
        %(property)s
    n_subsets : int, default=20
        Random subsets of groups trained on.
    subset_fraction : float, default=0.5
        Fraction of the groups every subset keeps.
    n_seeds : int, default=1
        %(n_seeds)s
    n_jobs : int, default=None
        %(n_jobs)s
    random_state : int, RandomState instance or None, default=None
        Draws the training seeds and the random subsets.

    Returns
    -------
    result : LDSResult
        The score, with the predicted and actual badness per subset.

    Examples
    --------
    Constant scores, scored against four retrainings:

    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> from skggda.metrics import linear_datamodeling_score
    >>> from skggda.models import make_classifier
    >>> X, y = make_classification(60, 3, n_informative=2, n_redundant=0, random_state=0)
    >>> lds = linear_datamodeling_score(make_classifier((4,), max_epochs=2), X, y, X, y,
    ...                                 np.zeros(6), np.arange(60) % 6, n_subsets=4,
    ...                                 random_state=0)
    >>> lds.actual.shape
    (4,)
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    if scores.ndim == 2 and not resolve_property(property).per_sample:
        raise ValueError(f"property={resolve_property(property)!r} has no per-sample terms "
                         "for 2-D scores.")
    rng = check_random_state(random_state)
    subsets = random_subsets(scores.shape[-1], n_subsets, subset_fraction, rng)
    table = datamodel_retrainings(estimator, X, y, X_test, y_test, labels, property=property,
                                  per_sample=scores.ndim == 2, subsets=subsets,
                                  n_seeds=n_seeds, n_jobs=n_jobs, random_state=rng)
    return lds_from_retrainings(scores, table)
