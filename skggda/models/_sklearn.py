"""scikit-learn's fitted linear models and MLPs as equivalent torch modules and objectives.

A conversion gives the module (the model's weights, activations and output
link, in float64 as scikit-learn computes), its per-sample training loss,
and the L2 penalty, all scaled so that the training objective reads

.. math:: J(\\theta) = \\frac{1}{n} \\sum_i \\ell_i(\\theta)
          + \\sum_{\\text{tensors } t} \\frac{\\mu_t}{2} \\lVert \\theta_t \\rVert^2

with ``n`` the number of training samples. Each scikit-learn objective is
rescaled to this form (read off scikit-learn's sources):

==========================  =========================================  ===================
model                       scikit-learn's objective                   ``mu`` (weights)
==========================  =========================================  ===================
``LogisticRegression``      ``C sum_i l_i + ||w||^2 / 2``              ``1 / (C n)``
``LinearRegression``        ``sum_i (y_i - f_i)^2``                    ``0``
``Ridge``                   ``sum_i (y_i - f_i)^2 + alpha ||w||^2``    ``2 alpha / n``
``SGDClassifier/Regressor`` ``mean_i L_i + alpha ||w||^2 / 2``         ``alpha``
``MLPClassifier/Regressor`` ``mean_b l_i + alpha ||W||^2 / (2 b)``     ``alpha / b``
==========================  =========================================  ===================

Intercepts are not penalised, except by ``liblinear`` (its intercept is a
weight on a constant feature ``intercept_scaling``: ``mu / s^2``). ``b``
is the MLP's batch: the training set for ``lbfgs``, else ``batch_size``
(200 for ``"auto"``), at most the training set (less the early-stopping
validation share). ``LogisticRegression``, ``Ridge`` and the ``lbfgs`` MLP
keep the penalty's total fixed when samples are removed; ``SGD`` and
minibatch MLPs scale it with the mean, so removing samples raises its
relative weight -- a change of regularisation that first-order
attributions, which remove data terms only, do not model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.neural_network import MLPClassifier, MLPRegressor
from torch import nn
from torch.nn import functional as F

from ._mlp import MLP

#: The model classes :func:`convert` knows.
SUPPORTED = (LogisticRegression, SGDClassifier, SGDRegressor, LinearRegression, Ridge,
             MLPClassifier, MLPRegressor)

#: SGD losses with a gradient everywhere (hinge, perceptron and
#: epsilon-insensitive have kinks where their Hessian is undefined).
SMOOTH_SGD_LOSSES = ("log_loss", "modified_huber", "squared_hinge", "squared_error", "huber",
                     "squared_epsilon_insensitive")


@dataclass
class Conversion:
    """A fitted scikit-learn model as a torch module, its per-sample loss and L2 penalty.

    Every parameter is kept as the attribute of the same name.

    Parameters
    ----------
    module : torch.nn.Module
        float64, in eval mode; its output is the model's decision function
        (``[0, z]`` for a binary classifier).
    criterion : torch.nn.Module
        Per-sample training loss ``(output, target) -> (batch,)`` (targets are
        class indices or regression targets).
    penalty : dict of str to float
        L2 strength ``mu`` of each penalised parameter of ``module``, in
        units of the mean training loss.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skggda.models._sklearn import to_torch
    >>> X = np.random.RandomState(0).normal(size=(40, 2))
    >>> conversion = to_torch(LogisticRegression(C=0.25).fit(X, X[:, 0] > 0), n_samples=40)
    >>> type(conversion.module).__name__, conversion.penalty  # 1 / (C n)
    ('TwoLogits', {'module.head.weight': 0.1})
    """

    module: nn.Module
    criterion: nn.Module
    penalty: dict


class TwoLogits(nn.Module):
    """A binary model's score ``z`` as the logits ``[0, z]``: softmax gives ``[1 - p, p]``.

    Parameters
    ----------
    module : torch.nn.Module
        Outputs ``(batch, 1)`` scores.

    Examples
    --------
    >>> import torch
    >>> from skggda.models._sklearn import TwoLogits
    >>> TwoLogits(torch.nn.Identity())(torch.tensor([[2.0]])).tolist()
    [[0.0, 2.0]]
    """

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, X):
        """The logits ``[0, z]`` of a batch.

        Parameters
        ----------
        X : torch.Tensor of shape (batch, ...)
            Inputs of the wrapped module.

        Returns
        -------
        logits : torch.Tensor of shape (batch, 2)
            A column of zeros, then the module's score.
        """
        z = self.module(X)
        return torch.cat([torch.zeros_like(z), z], dim=1)


def _pointwise(kind, z, t, epsilon):
    """scikit-learn's SGD loss ``L(t, z)`` of a score ``z`` against a target ``t`` (+-1 for a
    classifier), elementwise."""
    if kind == "log_loss":
        return F.softplus(-t * z)
    if kind == "modified_huber":
        m = t * z
        return torch.where(m >= 1, torch.zeros_like(m),
                           torch.where(m >= -1, (1 - m) ** 2, -4 * m))
    if kind == "squared_hinge":
        return F.relu(1 - t * z) ** 2
    if kind == "squared_error":
        return 0.5 * (t - z) ** 2
    if kind == "huber":
        r = (z - t).abs()
        return torch.where(r <= epsilon, 0.5 * r ** 2, epsilon * (r - 0.5 * epsilon))
    if kind == "squared_epsilon_insensitive":
        return F.relu((t - z).abs() - epsilon) ** 2
    raise ValueError(f"loss={kind!r} is not one of {SMOOTH_SGD_LOSSES}.")


class SklearnLoss(nn.Module):
    """A scikit-learn model's per-sample loss on its torch module's output.

    ``scale * sum_k L(t_k, z_k)`` over the outputs ``k``, with ``L`` one of
    scikit-learn's pointwise losses (``squared_error`` is ``(t - z)^2 / 2``).

    Parameters
    ----------
    kind : str
        One of :data:`SMOOTH_SGD_LOSSES`.
    targets : {"binary", "ovr", "regression"}
        How class indices become targets: ``"binary"`` scores ``z = output[:,
        1]`` (a :class:`TwoLogits` output) against ``t = +-1``; ``"ovr"``
        scores every output against ``+1`` for the sample's class, ``-1``
        otherwise; ``"regression"`` compares the output with the targets.
    epsilon : float, default=0.1
        Of the Huber and epsilon-insensitive losses.
    scale : float, default=1.0
        Factor on every sample's loss (the conversion's rescaling of
        scikit-learn's objective).
    reduction : {"none", "mean"}, default="mean"
        Per-sample losses, or their mean (skorch's convention for training).

    Examples
    --------
    >>> import torch
    >>> from skggda.models._sklearn import SklearnLoss
    >>> loss = SklearnLoss("squared_error", "regression", scale=2.0, reduction="none")
    >>> loss(torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0])).tolist()
    [1.0, 4.0]
    """

    def __init__(self, kind, targets, *, epsilon=0.1, scale=1.0, reduction="mean"):
        super().__init__()
        self.kind, self.targets = kind, targets
        self.epsilon, self.scale, self.reduction = epsilon, scale, reduction

    @property
    def squared_error_scale(self):
        """``c`` when this is ``c * sum((output - target) ** 2)``, else ``None``."""
        if self.kind == "squared_error" and self.targets == "regression":
            return 0.5 * self.scale
        return None

    def forward(self, output, target):
        """The loss of a batch of outputs against their targets.

        Parameters
        ----------
        output : torch.Tensor of shape (batch, n_outputs)
            The converted module's output.
        target : torch.Tensor of shape (batch,) or (batch, n_outputs)
            Class indices, or regression targets.

        Returns
        -------
        loss : torch.Tensor of shape (batch,) or ()
            Per-sample losses (``reduction="none"``) or their mean.
        """
        if self.targets == "binary":
            z, t = output[:, 1], 2.0 * target.to(output.dtype) - 1
        elif self.targets == "ovr":
            z = output
            t = 2.0 * F.one_hot(target.long(), output.shape[1]).to(output.dtype) - 1
        else:
            z, t = output, target.reshape(output.shape).to(output.dtype)
        losses = self.scale * _pointwise(self.kind, z, t, self.epsilon)
        losses = losses.reshape(losses.shape[0], -1).sum(1)
        return losses if self.reduction == "none" else losses.mean()


def check_supported(model):
    """Raise ``TypeError`` unless :func:`to_torch` knows ``model``'s class."""
    if not isinstance(model, SUPPORTED):
        raise TypeError(
            f"{type(model).__name__} cannot be attributed: skggda converts "
            f"{', '.join(c.__name__ for c in SUPPORTED)} and skorch nets."
        )


def to_torch(model, n_samples):
    """The torch :class:`Conversion` of a fitted scikit-learn ``model``.

    Parameters
    ----------
    model : estimator
        A fitted ``LogisticRegression``, ``SGDClassifier``, ``SGDRegressor``,
        ``LinearRegression``, ``Ridge``, ``MLPClassifier`` or ``MLPRegressor``.
    n_samples : int
        Samples it was trained on (scales the penalty of ``C`` / ``alpha``).

    Returns
    -------
    conversion : Conversion
        The module, per-sample loss and L2 penalty equivalent to ``model``.

    Raises
    ------
    TypeError
        For a model of another class.
    ValueError
        For settings without a gradient or a torch equivalent here: L1
        penalties, non-smooth SGD losses, class weights, ``positive=True``,
        multilabel MLPs, Poisson MLPs.

    Examples
    --------
    A fitted ridge regression as a linear module with its penalty:

    >>> import numpy as np
    >>> import torch
    >>> from sklearn.linear_model import Ridge
    >>> from skggda.models._sklearn import to_torch
    >>> X = np.random.RandomState(0).normal(size=(20, 2))
    >>> ridge = Ridge(alpha=5.0).fit(X, X[:, 0])
    >>> conversion = to_torch(ridge, n_samples=20)
    >>> prediction = conversion.module(torch.as_tensor(X))[:, 0].detach().numpy()
    >>> bool(np.allclose(prediction, ridge.predict(X)))
    True
    >>> conversion.penalty  # 2 alpha / n on the weights, none on the intercept
    {'head.weight': 0.5}
    """
    check_supported(model)
    if getattr(model, "class_weight", None) is not None:
        raise ValueError(
            f"class_weight={model.class_weight!r} weights the training loss by class; "
            "attribution needs the unweighted model (class_weight=None)."
        )
    converter = next(f for cls, f in _CONVERTERS if isinstance(model, cls))
    conversion = converter(model, int(n_samples))
    conversion.module.eval()
    return conversion


def _linear_module(coef, intercept, fit_intercept, binary):
    """An :class:`MLP` without hidden layers holding ``coef`` and ``intercept``."""
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    module = MLP(coef.shape[1], coef.shape[0]).double()  # before loading: no float32 rounding
    _load_linear(module.head, coef, intercept, fit_intercept)
    return TwoLogits(module) if binary else module


def _load_linear(layer, weight, intercept, trainable_bias=True):
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight))
        layer.bias.copy_(torch.as_tensor(np.broadcast_to(intercept, layer.bias.shape).copy()))
    # a bias the model does not fit is no parameter of its objective
    layer.bias.requires_grad_(trainable_bias)


def _weight_names(module, penalised_bias=False):
    return [name for name, p in module.named_parameters()
            if p.requires_grad and (name.endswith("weight") or penalised_bias)]


def _logistic_penalty(model):
    """``(l2_over_C, penalty kind)``: the L2 part of the penalty as a multiple of ``1/C``."""
    penalty = model.penalty
    if penalty == "deprecated":  # scikit-learn >= 1.8 spells the penalty with l1_ratio and C
        l1_ratio = 0.0 if model.l1_ratio is None else model.l1_ratio
        penalty = "l2" if l1_ratio == 0 else ("l1" if l1_ratio == 1 else "elasticnet")
        if model.C == np.inf:
            penalty = None
    if penalty in ("l1", "elasticnet"):
        raise ValueError(
            f"LogisticRegression with an L1 part in its penalty (penalty={model.penalty!r}, "
            f"l1_ratio={model.l1_ratio!r}) has no gradient at the zero weights L1 "
            "produces; attribute an L2 (l1_ratio=0) or unpenalised model."
        )
    return 0.0 if penalty is None else 1.0


def _logistic_regression(model, n):
    binary = len(model.classes_) == 2
    module = _linear_module(model.coef_, model.intercept_, model.fit_intercept, binary)
    mu = _logistic_penalty(model) / (model.C * n)
    penalty = dict.fromkeys(_weight_names(module), mu)
    if model.solver == "liblinear" and model.fit_intercept and mu:
        # liblinear penalises its intercept: a weight on the constant feature s
        bias = next(name for name in penalty if name.endswith("head.weight"))[:-6] + "bias"
        penalty[bias] = mu / model.intercept_scaling ** 2
    return Conversion(module, nn.CrossEntropyLoss(), penalty)


def _sgd_penalty(model):
    """The L2 strength of an SGD model's objective ``mean L + alpha R(w)``."""
    if model.penalty is None:
        return 0.0
    l1_ratio = {"l2": 0.0, "l1": 1.0}.get(model.penalty, model.l1_ratio)
    if l1_ratio > 0:
        raise ValueError(
            f"SGD with penalty={model.penalty!r} (l1_ratio={model.l1_ratio}) has an L1 part "
            "without a gradient at zero; attribute penalty='l2' or None."
        )
    return model.alpha


def _check_sgd_loss(model):
    if model.loss not in SMOOTH_SGD_LOSSES:
        raise ValueError(
            f"loss={model.loss!r} has no gradient where it bends (hinge-like losses); "
            f"attribution needs one of {SMOOTH_SGD_LOSSES}."
        )


def _sgd_classifier(model, n):
    _check_sgd_loss(model)
    binary = len(model.classes_) == 2
    module = _linear_module(model.coef_, model.intercept_, model.fit_intercept, binary)
    loss = SklearnLoss(model.loss, "binary" if binary else "ovr", epsilon=model.epsilon)
    return Conversion(module, loss, dict.fromkeys(_weight_names(module), _sgd_penalty(model)))


def _sgd_regressor(model, n):
    _check_sgd_loss(model)
    module = _linear_module(model.coef_, model.intercept_, model.fit_intercept, False)
    loss = SklearnLoss(model.loss, "regression", epsilon=model.epsilon)
    return Conversion(module, loss, dict.fromkeys(_weight_names(module), _sgd_penalty(model)))


def _least_squares(model, n):
    """``LinearRegression`` and ``Ridge``: ``sum (y - f)^2 + alpha ||w||^2``."""
    if getattr(model, "positive", False):
        raise ValueError(
            "positive=True constrains the weights: the fit is no stationary point of its "
            "objective where a constraint binds, so influence is undefined there."
        )
    alpha = np.asarray(getattr(model, "alpha", 0.0), dtype=np.float64)
    if alpha.size > 1 and not np.all(alpha == alpha.flat[0]):
        raise ValueError(f"alpha={alpha.tolist()} differs per target; use one alpha.")
    module = _linear_module(model.coef_, model.intercept_, model.fit_intercept, False)
    loss = SklearnLoss("squared_error", "regression", scale=2.0)  # (y - f)^2
    return Conversion(module, loss, dict.fromkeys(_weight_names(module),
                                                  2 * float(alpha.flat[0]) / n))


def _mlp_batch(model, n):
    """The number of samples the MLP's penalty is divided by (its batch)."""
    if model.early_stopping:
        n -= math.ceil(model.validation_fraction * n)
    if model.solver == "lbfgs":
        return n
    batch = 200 if model.batch_size == "auto" else model.batch_size
    return int(np.clip(batch, 1, n))


def _mlp(model, n):
    if model.out_activation_ not in ("softmax", "logistic", "identity"):
        raise ValueError(f"An MLP with output activation {model.out_activation_!r} "
                         f"(loss={model.loss!r}) is not supported; use squared_error.")
    if model.out_activation_ == "logistic" and model.n_outputs_ > 1:
        raise ValueError("A multilabel MLPClassifier is not supported (one label per sample).")
    sizes = [w.shape[1] for w in model.coefs_]
    mlp = MLP(model.coefs_[0].shape[0], sizes[-1], sizes[:-1], model.activation).double()
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    for layer, weight, bias in zip(linears, model.coefs_, model.intercepts_):
        _load_linear(layer, weight.T, bias)
    module = TwoLogits(mlp) if model.out_activation_ == "logistic" else mlp
    if model.out_activation_ == "identity":
        loss = SklearnLoss("squared_error", "regression", scale=1.0 / sizes[-1])
    else:
        loss = nn.CrossEntropyLoss()
    mu = model.alpha / _mlp_batch(model, n)
    return Conversion(module, loss, dict.fromkeys(_weight_names(module), mu))


_CONVERTERS = [
    (LogisticRegression, _logistic_regression),
    (SGDClassifier, _sgd_classifier),
    (SGDRegressor, _sgd_regressor),
    (Ridge, _least_squares),
    (LinearRegression, _least_squares),
    (MLPClassifier, _mlp),
    (MLPRegressor, _mlp),
]
