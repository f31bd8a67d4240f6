"""Targets as the engine wants them, for classifiers and regressors alike.

Classifier targets become class indices (int64) into ``classes``;
regressor targets stay 1-D float64 (the per-sample losses view them in the
shape and dtype of the model's output, ``(n, 1)``; skorch regressors train
on a float32 column). ``classes=None`` marks a
regressor everywhere a fitted estimator keeps its target encoding.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import is_regressor
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNet, NeuralNetClassifier, NeuralNetRegressor


def is_regression(estimator) -> bool:
    """Whether ``estimator`` (a net, scikit-learn model, pipeline or frozen one) regresses.

    ``None`` stands for the default classifier.
    """
    if estimator is None:
        return False
    net = estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator
    # skorch's two task classes answer at once; scikit-learn's tags cost about
    # a millisecond (a fit asks several times)
    if isinstance(net, NeuralNetClassifier):
        return False
    if isinstance(net, NeuralNetRegressor):
        return True
    return is_regressor(estimator)


def check_fit_targets(y, estimator):
    """Training targets checked for the task of ``estimator``.

    Classifiers take what scikit-learn's classifiers take; regressors need
    numbers (returned as float64). ``y`` must be 1-D (a column is flattened
    with a warning, as scikit-learn does).
    """
    y = column_or_1d(y, warn=True)
    if not is_regression(estimator):
        check_classification_targets(y)
        return y
    return _numeric(y)


def _numeric(y):
    """``y`` as float64; object arrays of numbers pass, anything else gets a clear error."""
    y = np.asarray(y)
    try:
        if y.dtype.kind in "USV":
            raise ValueError("strings")
        return y.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"A regressor needs numeric targets, got y of dtype {y.dtype} "
            f"(first values {y[:3].tolist()})."
        ) from exc


def encode_targets(y, classes):
    """Indices of ``y`` in ``classes``, or float64 regression targets when ``classes`` is None.

    Unseen labels get a clear error.
    """
    if classes is None:
        return _numeric(y)
    y = np.asarray(y)
    classes = np.asarray(classes)
    try:
        index = np.searchsorted(classes, y)
    except TypeError:  # labels that do not even compare with the classes (None, mixed types)
        raise ValueError(
            f"y contains labels not seen in fit, of other types than the known classes "
            f"{classes.tolist()}: {list(dict.fromkeys(y.tolist()))[:5]}."
        ) from None
    index = np.clip(index, 0, len(classes) - 1)
    unseen = classes[index] != y
    if unseen.any():
        raise ValueError(
            f"y contains labels not seen in fit: {np.unique(y[unseen])[:5].tolist()}; "
            f"known classes are {classes.tolist()}."
        )
    return index.astype(np.int64)


def fit_targets_for(net, y):
    """``y`` as ``net.fit`` wants it: skorch regressors need a target column, not 1-D."""
    y = np.asarray(y)
    if is_regression(net) and y.ndim == 1 and isinstance(net, NeuralNet):
        return y.reshape(-1, 1).astype(np.float32)
    return y


def predicted_targets(net, X, classes):
    """The fitted ``net``'s predictions on ``X``, encoded like :func:`encode_targets`."""
    y = np.asarray(net.predict(X))
    if classes is None:
        return (y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y).astype(np.float64)
    if isinstance(net, NeuralNet):
        return y.astype(np.int64)  # skorch classifiers predict logit indices
    return encode_targets(y, classes)


def decoded_targets(y_encoded, classes):
    """The inverse of :func:`encode_targets`: original labels, or the regression targets."""
    return np.asarray(y_encoded) if classes is None else np.asarray(classes)[y_encoded]
