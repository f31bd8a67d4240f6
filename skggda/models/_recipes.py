"""The paper's training recipes: functions that build unfitted seeded skorch nets.

:func:`make_classifier` and :func:`make_regressor` train an
:class:`~skggda.models.MLP`, :func:`make_resnet_classifier` a
:class:`~skggda.models.ResNet18` and :func:`make_text_classifier` a
pretrained text encoder, all the paper's way (:func:`paper_recipe`: Adam
with weight decay, a one-cycle learning rate stepped every batch, shuffled
batches, all data used for training). The nets they build are in
:mod:`._classifier` and :mod:`._regressor`, the text modules in
:mod:`._text`.
"""

from __future__ import annotations

import torch

from ._callbacks import OneCycleSchedule
from ._classifier import SeededNeuralNetClassifier
from ._docs import fill_net_doc
from ._mlp import MLP
from ._regressor import SeededNeuralNetRegressor
from ._resnet import ResNet18
from ._text import TextClassifier


@fill_net_doc
def make_classifier(
    hidden_layer_sizes=(50, 50),
    *,
    activation="relu",
    lr=1e-3,
    max_epochs=30,
    batch_size=128,
    weight_decay=4e-4,
    device="cpu",
    random_state=None,
    verbose=0,
    **kwargs,
):
    """A skorch classifier with the paper's training recipe.

    Adam with weight decay, PyTorch's ``OneCycleLR`` stepped every batch
    (peaking at ``lr``), mean cross-entropy on the logits of an
    :class:`~skggda.models.MLP`, shuffled batches of 128, all training data
    used for training (``train_split=None``). Paper settings (appendix B.1.2):

    ==========  ====================  =====  ======  ============
    model       hidden_layer_sizes    lr     epochs  weight_decay
    ==========  ====================  =====  ======  ============
    LR          ``()``                0.1    200     0
    ANN-S       ``(50, 50)``          1e-3   300     4e-4
    ANN-M       ``(200, 50)``         5e-4   400     4e-4
    MNIST MLP   ``(150, 150, 150)``   1e-3   50      0
    ==========  ====================  =====  ======  ============

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(50, 50)
        Widths of the hidden layers; ``()`` gives logistic regression.
    activation : {"relu", "tanh", "gelu"}, default="relu"
        Activation after every hidden layer.
    lr : float, default=1e-3
        Peak learning rate of the one-cycle schedule.
    max_epochs : int, default=30
        Passes over the training data.
    batch_size : int, default=128
        Samples per optimisation step.
    weight_decay : float, default=4e-4
        Adam's L2 weight decay.
    device : str, default="cpu"
        %(device)s
    random_state : int, RandomState instance or None, default=None
        Makes training repeatable without touching the global torch RNG.
    verbose : int, default=0
        skorch's per-epoch log when positive.
    **kwargs
        Any other :class:`skorch.NeuralNetClassifier` parameter, e.g.
        ``module__dropout`` or ``callbacks``.

    Returns
    -------
    net : SeededNeuralNetClassifier
        The unfitted net.

    Examples
    --------
    One hidden layer of 8 learns a linear rule:

    >>> import numpy as np
    >>> from skggda.models import make_classifier
    >>> X = np.random.RandomState(0).normal(size=(500, 5)).astype("float32")
    >>> y = (X[:, 0] > 0).astype("int64")
    >>> net = make_classifier((8,), max_epochs=10, lr=3e-2, random_state=0).fit(X, y)
    >>> float((net.predict(X) == y).mean()) > 0.9
    True
    """
    return mlp_recipe(hidden_layer_sizes, activation, lr=lr, max_epochs=max_epochs,
                      batch_size=batch_size, weight_decay=weight_decay, device=device,
                      random_state=random_state, verbose=verbose, **kwargs)


@fill_net_doc
def make_regressor(hidden_layer_sizes=(50, 50), *, activation="relu", criterion=torch.nn.MSELoss,
                   lr=1e-3, max_epochs=30, batch_size=128, weight_decay=4e-4, device="cpu",
                   random_state=None, verbose=0, **kwargs):
    """A skorch regressor with the paper's training recipe.

    The recipe of :func:`~skggda.models.make_classifier` (Adam with weight
    decay, one-cycle learning rate stepped every batch, shuffled batches, all
    data used for training) on an :class:`~skggda.models.MLP` with one
    output per target column, minimising ``criterion``: the mean squared
    error by default, or any torch loss taking ``(output, target)`` of shape
    ``(batch, n_targets)``. A 1-D ``y`` is reshaped to ``(n_samples, 1)``
    float32 for skorch (see :class:`SeededNeuralNetRegressor`).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(50, 50)
        Widths of the hidden layers; ``()`` gives linear regression.
    activation : {"relu", "tanh", "gelu", "logistic", "identity"}, default="relu"
        Activation after every hidden layer.
    criterion : torch loss class or instance, default=torch.nn.MSELoss
        The training loss, with a mean reduction (skorch's convention);
        attribution differentiates it per sample.
    lr : float, default=1e-3
        Peak learning rate of the one-cycle schedule.
    max_epochs : int, default=30
        Passes over the training data.
    batch_size : int, default=128
        Samples per optimisation step.
    weight_decay : float, default=4e-4
        Adam's L2 weight decay.
    device : str, default="cpu"
        %(device)s
    random_state : int, RandomState instance or None, default=None
        Makes training repeatable without touching the global torch RNG.
    verbose : int, default=0
        skorch's per-epoch log when positive.
    **kwargs
        Any other :class:`skorch.NeuralNetRegressor` parameter.

    Returns
    -------
    net : SeededNeuralNetRegressor
        The unfitted net.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.models import make_regressor
    >>> X = np.random.RandomState(0).normal(size=(500, 3)).astype("float32")
    >>> y = 2 * X[:, 0] - X[:, 1]
    >>> net = make_regressor((16,), max_epochs=20, lr=3e-2, random_state=0).fit(X, y)
    >>> float(np.mean((net.predict(X) - y) ** 2)) < 0.1
    True
    """
    return mlp_recipe(hidden_layer_sizes, activation, lr=lr, max_epochs=max_epochs,
                      batch_size=batch_size, weight_decay=weight_decay, device=device,
                      random_state=random_state, verbose=verbose,
                      net_class=SeededNeuralNetRegressor, criterion=criterion, **kwargs)


@fill_net_doc
def make_resnet_classifier(
    *,
    width=64,
    lr=1e-2,
    max_epochs=50,
    batch_size=512,
    weight_decay=0.0,
    device="cpu",
    random_state=None,
    verbose=0,
    **kwargs,
):
    """A skorch classifier training :class:`~skggda.models.ResNet18` with the paper's recipe.

    Adam with PyTorch's ``OneCycleLR`` peaking at ``lr`` (paper, appendix
    B.1.2: 0.01, 50 epochs, batches of 512, no weight decay). Inputs are
    images of shape ``(n, C, H, W)``; ``C`` and the number of classes come
    from the data.

    Parameters
    ----------
    width : int, default=64
        Channels of the first stage.
    lr : float, default=1e-2
        Peak learning rate of the one-cycle schedule (the paper's 0.01).
    max_epochs : int, default=50
        Passes over the training images.
    batch_size : int, default=512
        Images per optimisation step.
    weight_decay : float, default=0.0
        Adam's L2 weight decay (none in the paper's recipe).
    device : str, default="cpu"
        %(device)s
    random_state : int, RandomState instance or None, default=None
        Makes training repeatable without touching the global torch RNG.
    verbose : int, default=0
        skorch's per-epoch log when positive.
    **kwargs
        Other :class:`skorch.NeuralNetClassifier` parameters.

    Returns
    -------
    net : SeededNeuralNetClassifier
        The unfitted net.

    Examples
    --------
    A narrow ResNet on one-channel images:

    >>> import numpy as np
    >>> from skggda.models import make_resnet_classifier
    >>> X = np.random.RandomState(0).normal(size=(16, 1, 8, 8)).astype("float32")
    >>> y = np.arange(16) % 2
    >>> net = make_resnet_classifier(width=4, max_epochs=1, random_state=0).fit(X, y)
    >>> net.predict_proba(X).shape
    (16, 2)
    """
    return paper_recipe(
        ResNet18, module__width=width, lr=lr, max_epochs=max_epochs, batch_size=batch_size,
        weight_decay=weight_decay, device=device, random_state=random_state, verbose=verbose,
        **kwargs,
    )


@fill_net_doc
def make_text_classifier(*, lr=2e-5, max_epochs=3, batch_size=32, weight_decay=0.0,
                         device="cpu", random_state=None, verbose=0, **kwargs):
    """A skorch classifier fine-tuning :class:`TextClassifier` (Adam, one-cycle schedule).

    The paper fine-tunes BERT with learning rate 2e-5; the defaults follow it
    with batches a CPU can hold. Feed it the output of :class:`PairTokenizer`.

    Parameters
    ----------
    lr : float, default=2e-5
        Peak learning rate of the one-cycle schedule: a fine-tuning rate
        (rates like 1e-2 destroy the pretrained weights).
    max_epochs : int, default=3
        Fine-tuning passes over the training data.
    batch_size : int, default=32
        Samples per optimisation step: small enough for a CPU to hold the
        encoder's activations.
    weight_decay : float, default=0.0
        Adam's L2 weight decay (none, as in the paper's fine-tuning).
    device : str, default="cpu"
        %(device)s
    random_state : int, RandomState instance or None, default=None
        Makes training repeatable without touching the global torch RNG.
    verbose : int, default=0
        skorch's per-epoch log when positive.
    **kwargs
        Other :class:`skorch.NeuralNetClassifier` parameters (e.g.
        ``module__model_path``).

    Returns
    -------
    net : SeededNeuralNetClassifier
        The unfitted net.

    Examples
    --------
    >>> from skggda.models import make_text_classifier
    >>> net = make_text_classifier(max_epochs=1, random_state=0)
    >>> net.module.__name__
    'TextClassifier'
    """
    return paper_recipe(
        TextClassifier, lr=lr, max_epochs=max_epochs, batch_size=batch_size,
        weight_decay=weight_decay, device=device, random_state=random_state, verbose=verbose,
        **kwargs,
    )


def mlp_recipe(hidden_layer_sizes, activation, **recipe):
    """:func:`paper_recipe` training an :class:`~skggda.models.MLP` of these sizes."""
    return paper_recipe(MLP, module__hidden_layer_sizes=tuple(hidden_layer_sizes),
                        module__activation=activation, **recipe)


def paper_recipe(module, *, lr, max_epochs, batch_size, weight_decay, device, random_state,
                 verbose, net_class=SeededNeuralNetClassifier,
                 criterion=torch.nn.CrossEntropyLoss, **kwargs):
    """A seeded skorch net (``net_class``) training ``module`` the paper's way.

    Adam with weight decay, one-cycle learning rate stepped every batch,
    ``criterion`` (cross-entropy on logits by default), shuffled batches, all
    data used for training. Extra ``callbacks`` in ``kwargs`` run before the
    schedule.
    """
    callbacks = list(kwargs.pop("callbacks", None) or [])
    callbacks.append(("one_cycle", OneCycleSchedule()))
    return net_class(
        module=module, criterion=criterion, callbacks=callbacks,
        optimizer=torch.optim.Adam, optimizer__weight_decay=weight_decay, lr=lr,
        max_epochs=max_epochs, batch_size=batch_size,
        train_split=None, iterator_train__shuffle=True,
        device=device, verbose=verbose, random_state=random_state, **kwargs,
    )
