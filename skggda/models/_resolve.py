"""Resolving the ``estimator`` a grouper or attributor is given into a fitted net.

The engine wants a module, a per-sample loss and encoded targets (class
indices, or float regression targets). :func:`fit_or_freeze` is the one
entry: a skorch net is trained (or, in a ``FrozenEstimator``, checked and
taken as is), a scikit-learn model is converted into a
:class:`~skggda.models.ConvertedModel`, and a ``Pipeline`` fits its first
steps as the preprocessor and resolves its last. These helpers give the
clear errors users need when a net does not fit the data.
:func:`training_recipe` is the other direction: what retrains the model.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import _num_samples, check_consistent_length, check_is_fitted
from skorch import NeuralNet
from torch import nn

from .._engine import forward, module_device, module_dtype, to_device
from ..utils._inputs import loaded, training_inputs
from ..utils._pipeline import model_input
from ..utils._seeding import seeded_clone
from ..utils._targets import encode_targets, fit_targets_for, is_regression
from ._callbacks import DivergenceCheck
from ._recipes import make_classifier
from ._converted import ConvertedModel
from ._sklearn import check_supported


def unwrap_frozen(estimator):
    """``(net, frozen)``: the skorch net inside a ``FrozenEstimator``, and whether it was one."""
    if isinstance(estimator, FrozenEstimator):
        return estimator.estimator, True
    return estimator, False


def check_fitted_net(net):
    """Refuse a frozen net that is not fitted, not on its own device, or whose
    weights are not finite (see :func:`check_net_device`)."""
    if not getattr(net, "initialized_", False) or not hasattr(net, "module_"):
        raise NotFittedError(
            "The estimator wrapped in FrozenEstimator is not fitted: train the "
            "net first, or pass it unwrapped so that fit trains a clone."
        )
    check_net_device(net)
    name = DivergenceCheck.non_finite_parameter(net.module_)
    if name is not None:
        raise ValueError(
            f"The frozen estimator's parameter {name!r} holds NaN or inf (a diverged "
            "training?): every attribution would be NaN."
        )


def check_net_device(net):
    """Refuse a fitted net whose module's parameters are not on ``net.device``.

    Neither device wins: the engine computes where the module's parameters
    are, while skorch's own paths (predictions, regression targets, the
    clones that retraining and TRAK train) follow ``net.device``. A module
    moved by hand (``net.module_.to("cuda")`` with ``device="cpu"`` left
    set) would make those paths fail or silently train the clones elsewhere,
    so a ``ValueError`` names both devices. ``device=None`` (skorch leaves
    the module where it is) and an index-less ``"cuda"`` match any module
    on a device of that type.
    """
    wanted = getattr(net, "device", None)
    if wanted is None or not hasattr(net, "module_"):
        return
    wanted, actual = torch.device(wanted), module_device(net.module_)
    if wanted.type != actual.type or wanted.index not in (None, actual.index):
        raise ValueError(
            f"The net's device={str(wanted)!r} differs from the device of its module's "
            f"parameters ({str(actual)!r}): skggda computes on the parameters' device "
            "while skorch predicts and trains clones on net.device. Move the module "
            f"(net.module_.to({str(wanted)!r})) or set the net's device to {str(actual)!r}."
        )


def prepare_net(estimator, seed: int, extra_callbacks=(), n_classes=None):
    """An unfitted clone of ``estimator`` ready to train.

    A ``random_state`` parameter left at ``None`` is seeded from ``seed`` so
    that the attributor's ``random_state`` makes the whole fit repeatable.
    With ``n_classes``, an unset ``classes`` parameter is fixed to all
    ``n_classes`` encoded labels, so the net keeps an output for every class
    even when its training data (a TRAK half) lacks some. A
    :class:`~skggda.models.DivergenceCheck` is added unless the net has one
    (or has its callbacks disabled), so a diverging training fails clearly.
    """
    unset = {} if n_classes is None else {"classes": np.arange(n_classes)}
    net = seeded_clone(estimator, seed, **unset)
    params = net.get_params(deep=False)
    callbacks = params.get("callbacks")
    if "callbacks" in params and callbacks != "disable":
        callbacks = list(callbacks or [])
        if not any(isinstance(cb, DivergenceCheck) for _, cb in _named(callbacks)):
            extra_callbacks = [*extra_callbacks, ("skggda_divergence", DivergenceCheck())]
        net.set_params(callbacks=callbacks + list(extra_callbacks))
    return net


def _named(callbacks):
    """``(name, callback)`` pairs of a skorch ``callbacks`` list (names are optional)."""
    return [cb if isinstance(cb, tuple) else (None, cb) for cb in callbacks]


def train(net, X, y):
    """``net.fit(X, y)``, except that Ctrl-C aborts instead of ending training early.

    skorch catches ``KeyboardInterrupt`` during training and returns the net
    trained so far (its ``EarlyStopping`` raises one to stop). A user who
    presses Ctrl-C during an attributor's fit wants the fit aborted and the
    attributor left as it was, so a SIGINT that arrives while training is
    noted and raised again once skorch returns. Callbacks that raise
    ``KeyboardInterrupt`` themselves still just end training.
    """
    with _aborting_on_sigint() as interrupted:
        net.fit(X, y)
    if interrupted:
        raise KeyboardInterrupt("training was interrupted")
    return net


@contextmanager
def _aborting_on_sigint():
    """Yield a list that gets an entry when SIGINT arrives inside the block."""
    interrupted = []
    # only Python's default handler is replaced (in the main thread, where
    # signals are delivered): a custom or ignoring handler stays in charge
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield interrupted
        return

    def note_and_raise(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note_and_raise)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def frozen_classes(net, y):
    """The label of each logit of a pretrained net, if its classes cover ``y``; else ``None``.

    skorch trains on the integer labels as given (``CrossEntropyLoss`` reads
    them as logit indices), so a net fitted on labels ``{1, 2}`` has the
    logit of label 2 at index 2, not at its position in ``classes_``.
    """
    try:
        classes = np.asarray(net.classes_)
    except AttributeError:
        return None
    if not np.isin(np.asarray(y), classes).all():
        return None
    if classes.dtype.kind in "iu" and len(classes) and classes.min() >= 0:
        return np.arange(int(classes.max()) + 1)
    return classes


def _expected_n_features(module: nn.Module):
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            return sub.in_features
        if isinstance(sub, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return None
    return None


def check_module_accepts(module: nn.Module, X, n_outputs: int | None = None):
    """Run the module on a few rows of ``X``; raise ``ValueError`` naming the mismatch."""
    sample = X[: min(len(X), 2)]
    try:
        with torch.no_grad():
            was_training = module.training
            module.eval()
            try:
                out = forward(module, to_device(sample, module_device(module), module_dtype(module)))
            finally:
                module.train(was_training)
    except (RuntimeError, ValueError, IndexError) as exc:
        expected = _expected_n_features(module)
        n_features = int(np.prod(np.shape(X)[1:]))
        if expected is not None and expected != n_features:
            raise ValueError(
                f"X has {n_features} features, but the frozen estimator's module "
                f"expects {expected} features as input."
            ) from exc
        raise ValueError(
            f"The estimator's module cannot take X of shape {np.shape(X)}: {exc}"
        ) from exc
    if n_outputs is not None and out.dim() == 2 and out.shape[1] < n_outputs:
        raise ValueError(
            f"y has {n_outputs} classes, but the frozen estimator's module outputs "
            f"{out.shape[1]} logits."
        )


def default_classifier():
    """The net used when ``estimator=None``: ANN-S (two hidden layers of 50)."""
    return make_classifier(hidden_layer_sizes=(50, 50))


@dataclass
class ResolvedNet:
    """A net ready for attribution, with the target encoding it uses.

    ``classes`` is ``None`` for a regressor, whose ``y_encoded`` are the
    float32 targets.
    """

    net: object
    classes: np.ndarray | None
    y_encoded: np.ndarray
    frozen: bool
    #: the training inputs as the net takes them (after ``preprocessor``)
    X: object = None
    #: the fitted steps of a Pipeline before the net, or None
    preprocessor: object = None


def fit_or_freeze(estimator, X, y, seed: int, extra_callbacks=()) -> ResolvedNet:
    """Train a clone of ``estimator`` on ``(X, y)``, or take a frozen one as is.

    ``None`` trains :func:`default_classifier`. A :class:`FrozenEstimator`
    must wrap a fitted net whose module accepts ``X`` and, for a classifier,
    has an output per class of ``y``; its ``classes_`` define the label
    encoding when they cover ``y``. Trained classifiers learn the indices of
    ``np.unique(y)``; regressors learn the float targets. A scikit-learn
    model becomes a :class:`~skggda.models.ConvertedModel`, fitted by
    scikit-learn unless it is fitted already (then it is used as is). A
    :class:`~sklearn.pipeline.Pipeline` fits (or, fitted, keeps) its first
    steps as the ``preprocessor`` and resolves its last step on their output.
    A frozen net's module must be on ``net.device``: neither wins, a
    ``ValueError`` names both devices (:func:`check_net_device`).
    """
    net, frozen = unwrap_frozen(estimator if estimator is not None else default_classifier())
    if not isinstance(net, NeuralNet):
        return _resolve_sklearn_model(net, frozen, X, y, seed, extra_callbacks)
    if frozen:
        check_fitted_net(net)
        classes, y_encoded = _frozen_targets(net, y)
        check_module_accepts(net.module_, X, n_outputs=None if classes is None else len(classes))
    else:
        classes = None if is_regression(net) else np.unique(y)
        y_encoded = encode_targets(y, classes)
        net = train(prepare_net(net, seed, extra_callbacks),
                    *training_inputs(X, fit_targets_for(net, y_encoded)))
    return ResolvedNet(net, classes, y_encoded, frozen, X)


def _frozen_targets(net, y):
    """``(classes, y_encoded)`` for a pretrained net (``classes`` None for a regressor)."""
    if is_regression(net):
        return None, encode_targets(y, None)
    classes = frozen_classes(net, y)
    classes = np.unique(y) if classes is None else classes
    return classes, encode_targets(y, classes)


def is_fitted(model):
    """Whether scikit-learn considers ``model`` fitted."""
    try:
        check_is_fitted(model)
    except NotFittedError:
        return False
    return True


def _resolve_sklearn_model(model, frozen, X, y, seed, extra_callbacks=()):
    """:func:`fit_or_freeze` for a scikit-learn model or pipeline.

    A fitted model (or one in a ``FrozenEstimator``) is converted as it is;
    an unfitted one is fitted on ``(X, y)`` by scikit-learn, with ``seed`` as
    its ``random_state`` when it has one left at ``None``.
    """
    if isinstance(model, Pipeline):
        return _resolve_pipeline(model, frozen, X, y, seed, extra_callbacks)
    if extra_callbacks:
        raise ValueError(
            "checkpoints='all' needs a skorch net's training run; a scikit-learn model is "
            "attributed at its fitted weights: use checkpoints='last'."
        )
    _check_fitted_if_frozen(model, frozen)
    frozen = frozen or is_fitted(model)
    if not isinstance(model, ConvertedModel):
        check_supported(model)
        if frozen:
            model = ConvertedModel.from_fitted(model, _num_samples(X))
        else:
            own_seed = model.get_params(deep=False).get("random_state")
            model = ConvertedModel(model, random_state=own_seed)
    if not frozen:  # scikit-learn trains in memory; the attribution passes still stream
        model = prepare_net(model, seed).fit(loaded(X), y)
    classes = getattr(model, "classes_", None)
    check_module_accepts(model.module_, X, n_outputs=None if classes is None else len(classes))
    return ResolvedNet(model, classes, encode_targets(y, classes), frozen, X)


def _check_fitted_if_frozen(model, frozen):
    if frozen and not is_fitted(model):
        raise NotFittedError(
            f"The {type(model).__name__} wrapped in FrozenEstimator is not fitted: fit it "
            "first, or pass it unwrapped so that fit trains it."
        )


def _resolve_pipeline(pipeline, frozen, X, y, seed, extra_callbacks):
    """The first steps fitted (a fitted pipeline: kept) as the preprocessor, and the last
    step resolved on their output: the model that is attributed."""
    _check_fitted_if_frozen(pipeline, frozen)
    frozen = frozen or is_fitted(pipeline)
    preprocessor = None
    if len(pipeline.steps) > 1:
        preprocessor = pipeline[:-1] if frozen else clone(pipeline[:-1]).fit(X, y)
    X = model_input(preprocessor, X)
    check_consistent_length(X, y)
    final = FrozenEstimator(pipeline[-1]) if frozen else pipeline[-1]
    resolved = fit_or_freeze(final, X, y, seed, extra_callbacks)
    resolved.preprocessor = preprocessor
    return resolved


def training_recipe(estimator):
    """What retrains the attributed model: the net, or a :class:`ConvertedModel` recipe."""
    model = estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator
    if isinstance(model, Pipeline):
        model = model[-1]  # its first steps are fitted once, in the attributor's fit
    if isinstance(model, NeuralNet):
        check_net_device(model)  # its clones train on net.device
    if isinstance(model, (NeuralNet, ConvertedModel)):
        return model
    return ConvertedModel(model, random_state=model.get_params(deep=False).get("random_state"))
