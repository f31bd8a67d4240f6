"""The model ``skggda explain`` trains: ``--model`` picks it in :func:`make_model`.

``net`` is skggda's own (the paper's ANN-S as a skorch classifier or
regressor); ``logreg``, ``ridge`` and ``mlp`` are scikit-learn's, which the
attributors convert to equivalent torch modules. Every model is trained
here and handed to the attributor frozen, so the attributed model is the one
whose validation score the report shows.
"""

from __future__ import annotations

import warnings
from time import perf_counter

import numpy as np
from skorch import NeuralNet
from skorch.callbacks import Callback
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor

from ..experiments._config import MODELS
from ..models import make_classifier, make_regressor
from ._table import UsageError

MODEL_CHOICES = ("net", "logreg", "ridge", "mlp")
#: The task each scikit-learn linear model is for (the net and mlp do both).
_LINEAR_TASK = {"logreg": "classification", "ridge": "regression"}


def make_model(name, task, args, bar=None):
    """The unfitted estimator ``explain`` trains for ``--model name`` on a ``task``.

    ``"net"``: the paper's ANN-S (two hidden layers of 50, weight decay
    4e-4, batches of 128) with the command line's short recipe (``--epochs``
    40 at a peak ``--lr`` of 1e-2), from :func:`~skggda.models.make_classifier`
    or :func:`~skggda.models.make_regressor`. ``"mlp"``: scikit-learn's
    :class:`~sklearn.neural_network.MLPClassifier` / ``MLPRegressor`` with the
    same hidden layers and ``--epochs`` iterations. ``"logreg"``:
    :class:`~sklearn.linear_model.LogisticRegression`; ``"ridge"``:
    :class:`~sklearn.linear_model.Ridge`.

    Parameters
    ----------
    name : {"net", "logreg", "ridge", "mlp"}
    task : {"classification", "regression"}
    args : argparse.Namespace
        ``epochs``, ``lr``, ``device``, ``seed`` and ``target`` are read.
    bar : tqdm or None, default=None
        Advanced after every epoch of the net.

    Returns
    -------
    estimator : unfitted estimator
    """
    classification = task == "classification"
    hidden = MODELS["ann-s"]["hidden"]
    if name == "net":
        spec = MODELS["ann-s"]
        make = make_classifier if classification else make_regressor
        callbacks = [("progress", _EpochProgress(bar))] if bar is not None else []
        return make(hidden, lr=args.lr, max_epochs=args.epochs,
                    weight_decay=spec["weight_decay"], batch_size=spec["batch_size"],
                    device=args.device, random_state=args.seed, callbacks=callbacks)
    if name == "mlp":
        mlp = MLPClassifier if classification else MLPRegressor
        return mlp(hidden_layer_sizes=hidden, max_iter=args.epochs, random_state=args.seed)
    if _LINEAR_TASK[name] != task:
        other = next(model for model, kind in _LINEAR_TASK.items() if kind == task)
        raise UsageError(f"--model {name} is for {_LINEAR_TASK[name]}, but target "
                         f"{args.target!r} is a {task} target: use --model {other}, net or mlp.")
    return LogisticRegression(max_iter=1000) if name == "logreg" else Ridge()


def train_model(model, X, y, notes):
    """Fit ``model`` on ``(X, y)``; returns the seconds it took.

    scikit-learn's models train on float64 (they solve in the data's
    precision); stopping at ``--epochs`` before convergence is a note, not a
    warning on the terminal.
    """
    start = perf_counter()
    if isinstance(model, NeuralNet):
        model.fit(X, y)
        return perf_counter() - start
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(np.asarray(X, dtype=np.float64), y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        notes.append(f"{type(model).__name__} stopped before converging (raise --epochs).")
    return perf_counter() - start


class _EpochProgress(Callback):
    """Advances the progress bar after every training epoch."""

    def __init__(self, bar):
        self.bar = bar

    def on_epoch_end(self, net, **kwargs):
        if self.bar is not None:
            self.bar.update(1)

    def __deepcopy__(self, memo):
        # clones of the net (TRAK's ensemble members) must not drive this run's bar
        return type(self)(None)


def validation_summary(model, X, y, task, target_scale):
    """``[(name, text)]``: the trained model's validation score beside a trivial baseline.

    Accuracy against the majority class for classification; RMSE (in the
    target's units) and R^2 against predicting the training mean for
    regression. ``y`` holds class indices, or the standardized target with
    ``target_scale = (mean, sd)``.
    """
    predicted = np.asarray(model.predict(X))
    if task == "classification":
        if isinstance(model, NeuralNet):
            predicted = predicted.astype(np.int64)  # skorch predicts class indices too
        accuracy = float(np.mean(predicted == y))
        majority = np.bincount(y).max() / len(y)
        return [("validation accuracy", f"{accuracy:.1%} (majority class {majority:.1%})")]
    predicted = predicted.reshape(len(y))
    _, sd = target_scale
    rmse = float(np.sqrt(np.mean((predicted - y) ** 2))) * sd
    baseline = float(np.sqrt(np.mean(y ** 2))) * sd  # the training mean is 0 once standardized
    r2 = 1 - (rmse / baseline) ** 2 if baseline > 0 else float("nan")
    return [("validation RMSE", f"{rmse:.4g} (R^2 {r2:.3f}; predicting the training mean: "
                                f"{baseline:.4g})")]
