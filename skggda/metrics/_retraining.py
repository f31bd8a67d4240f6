"""Retraining jobs shared by the removal metrics and the datamodels.

A job trains a seeded clone of the attributed model's recipe on a subset of
the training data (a skorch net with its recipe; a converted scikit-learn
model by scikit-learn) and measures it: test accuracy for classifiers, RMSE
or R^2 for regressors.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.metrics import r2_score
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import HasMethods, Interval

from ..utils._seeding import seeded_clone
from ..utils._targets import fit_targets_for, is_regression

#: Test metrics of the retrainings: whether greater is better, and for which task.
#: ``validate_params`` constraints of every function that retrains a recipe on the
#: training data and scores it on test data; each adds its own.
#: The seeds and parallel jobs of the retrainings (also
#: :func:`~skggda.inspection.verify_removal`'s, which retrains on its own data).
SEEDING_PARAMS = {
    "n_seeds": [Interval(Integral, 1, None, closed="left")],
    "n_jobs": [Integral, None],
    "random_state": ["random_state"],
}
RETRAINING_PARAMS = {
    "estimator": [HasMethods(["fit"])],
    "X": ["array-like"],
    "y": ["array-like"],
    "X_test": ["array-like"],
    "y_test": ["array-like"],
    **SEEDING_PARAMS,
}
#: ... and of those that also read an attribution: its scores and group labels.
SCORED_PARAMS = {**RETRAINING_PARAMS, "scores": ["array-like"], "labels": ["array-like"]}

METRICS = {"accuracy": (True, "classification"), "rmse": (False, "regression"),
           "r2": (True, "regression")}


def _encode(y, y_test, regression=False):
    """Training and test labels as ``0 .. n_classes - 1``, and the classes.

    A regressor's targets stay numbers (float64), with ``classes=None``.
    """
    if regression:
        return np.asarray(y, dtype=np.float64), np.asarray(y_test, dtype=np.float64), None
    encoder = LabelEncoder().fit(np.concatenate([np.asarray(y), np.asarray(y_test)]))
    return encoder.transform(y), encoder.transform(y_test), encoder.classes_


def resolve_metric(metric, estimator):
    """The test metric for ``estimator``: ``None`` picks accuracy or RMSE by its task."""
    regression = is_regression(estimator)
    if metric is None:
        return "rmse" if regression else "accuracy"
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not one of {sorted(METRICS)}.")
    task = "regression" if regression else "classification"
    if METRICS[metric][1] != task:
        raise ValueError(f"metric={metric!r} is for {METRICS[metric][1]}, but the estimator "
                         f"is a {'regressor' if regression else 'classifier'}.")
    return metric


def test_score(net, X_test, y_test, metric):
    """``metric`` of a fitted ``net`` on ``(X_test, y_test)`` (encoded labels / targets)."""
    y_pred = np.asarray(net.predict(X_test))
    if metric == "accuracy":
        return float(np.mean(y_pred == y_test))
    y_pred = y_pred.reshape(len(y_test), -1)[:, 0] if y_pred.ndim > 1 else y_pred
    if metric == "rmse":
        return float(np.sqrt(np.mean((y_pred - y_test) ** 2)))
    return float(r2_score(y_test, y_pred))


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
    encoded labels (``None`` for a regressor: nothing to fix).
    """
    unset = {} if n_classes is None else {"classes": np.arange(n_classes)}
    return seeded_clone(estimator, int(seed), override=True, **unset)


def fit_subset(estimator, X, y, keep, seed, n_classes):
    """A clone of ``estimator`` seeded with ``seed``, trained on ``X[keep]`` (a joblib job)."""
    net = retraining_clone(estimator, seed, n_classes)
    return net.fit(X[keep], fit_targets_for(net, y[keep]))
