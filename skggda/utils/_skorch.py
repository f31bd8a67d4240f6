"""Reading what the engine needs out of a skorch net.

The engine wants a module, a per-sample loss and encoded targets (class
indices, or float regression targets); skorch nets hold a module
(``module_``), a criterion with a batch reduction (``criterion_``) and, for
classifiers, ``classes_``. These helpers bridge the two and give the clear
errors users need when a net does not fit the data.
"""

from __future__ import annotations

import copy
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNet
from torch import nn

from .._engine import forward, module_device, module_dtype, to_device
from ._inputs import training_inputs
from ._seeding import seeded_clone
from ._targets import encode_targets, fit_targets_for, is_regression


class PerSampleLoss:
    """Per-sample version of a skorch criterion: ``(output, target) -> (batch,)``.

    A plain class rather than a closure so that it pickles.
    ``squared_error_scale`` is ``c`` when the loss is ``c * sum((output -
    target) ** 2)`` over the outputs (``nn.MSELoss``: 1), else ``None``.
    """

    def __init__(self, criterion: nn.Module):
        if isinstance(criterion, nn.CrossEntropyLoss):
            self.kind = "cross_entropy"
        elif isinstance(criterion, nn.NLLLoss):
            # skorch feeds NLLLoss the log of the module's probabilities
            self.kind = "nll_of_probabilities"
        else:
            self.kind = "generic"
        if isinstance(criterion, nn.MSELoss):
            self.squared_error_scale = 1.0
        else:
            self.squared_error_scale = getattr(criterion, "squared_error_scale", None)
        self.criterion = copy.deepcopy(criterion)
        if hasattr(self.criterion, "reduction"):
            self.criterion.reduction = "none"

    @property
    def is_plain_cross_entropy(self) -> bool:
        """Unweighted softmax cross-entropy without label smoothing."""
        return (
            self.kind == "cross_entropy"
            and self.criterion.weight is None
            and self.criterion.label_smoothing == 0
        )

    def logits(self, output: torch.Tensor) -> torch.Tensor:
        """Class scores whose softmax is the net's predicted distribution.

        The module's output itself, except for skorch's ``NLLLoss`` nets,
        whose modules output probabilities: their log. Margins, the smooth
        accuracy and TRAK read these.
        """
        if self.kind == "nll_of_probabilities":
            return torch.log(output + torch.finfo(output.dtype).eps)
        return output

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "cross_entropy":
            return self.criterion(output, target.long())
        if self.kind == "nll_of_probabilities":
            return self.criterion(self.logits(output), target.long())
        if target.is_floating_point() and target.numel() == output.numel():
            # regression targets are kept 1-D; the loss compares them with the
            # (n, 1) output, which a 1-D target would broadcast to (n, n)
            target = target.reshape(output.shape).to(output.dtype)
        losses = self.criterion(output, target)
        return losses.reshape(losses.shape[0], -1).sum(1)


def unwrap_frozen(estimator):
    """``(net, frozen)``: the skorch net inside a ``FrozenEstimator``, and whether it was one."""
    if isinstance(estimator, FrozenEstimator):
        return estimator.estimator, True
    return estimator, False


def check_fitted_net(net):
    """Refuse a frozen net that is not fitted or whose weights are not finite."""
    if not getattr(net, "initialized_", False) or not hasattr(net, "module_"):
        raise NotFittedError(
            "The estimator wrapped in FrozenEstimator is not fitted: train the "
            "net first, or pass it unwrapped so that fit trains a clone."
        )
    from ..models import DivergenceCheck  # the models import this module

    name = DivergenceCheck.non_finite_parameter(net.module_)
    if name is not None:
        raise ValueError(
            f"The frozen estimator's parameter {name!r} holds NaN or inf (a diverged "
            "training?): every attribution would be NaN."
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
    from ..models import DivergenceCheck  # the models import this module

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
    from ..models import make_classifier

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
    """
    net, frozen = unwrap_frozen(estimator if estimator is not None else default_classifier())
    if not isinstance(net, NeuralNet):
        from ..models._converted import resolve_model  # the models import this module

        return resolve_model(net, frozen, X, y, seed, extra_callbacks)
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
