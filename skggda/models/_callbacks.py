"""skorch callbacks: the paper's learning-rate schedule and in-memory checkpoints."""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch.callbacks import Callback


class OneCycleSchedule(Callback):
    """PyTorch's ``OneCycleLR`` stepped every batch, peaking at the net's ``lr``.

    ``OneCycleLR`` needs the total number of steps, which depends on the size
    of the training set; this callback computes it when training starts, so
    the same net can be fit on data of any size.

    Parameters
    ----------
    **kwargs
        Passed to :class:`torch.optim.lr_scheduler.OneCycleLR` (for example
        ``pct_start``); ``max_lr`` defaults to the net's ``lr``.

    Examples
    --------
    >>> from skggda.models import make_classifier
    >>> from skggda.models._callbacks import OneCycleSchedule
    >>> net = make_classifier((8,), callbacks=[("warmup", OneCycleSchedule(pct_start=0.1))])
    >>> [name for name, _ in net.callbacks]
    ['warmup', 'one_cycle']
    """

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def get_params(self, deep=True):
        """The ``OneCycleLR`` options given to the constructor.

        Parameters
        ----------
        deep : bool, default=True
            Ignored: the options hold no estimators.

        Returns
        -------
        params : dict
            A copy of the options.
        """
        return dict(self.kwargs)

    def set_params(self, **params):
        """Update the ``OneCycleLR`` options.

        Parameters
        ----------
        **params
            Options to set, as the constructor takes them.

        Returns
        -------
        self : object
            This callback.
        """
        self.kwargs.update(params)
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        """Create the schedule for this training run's number of steps.

        A skorch hook (:class:`skorch.callbacks.Callback` documents its
        arguments): ``X`` and ``y`` are the data passed to ``fit``.
        """
        if net.train_split is None:
            n_train = len(X) if not isinstance(X, dict) else len(next(iter(X.values())))
        else:
            n_train = len(net.get_split_datasets(X, y)[0])
        steps = net.max_epochs * max(1, math.ceil(n_train / net.batch_size))
        options = {"max_lr": net.lr, **self.kwargs}
        self.scheduler_ = torch.optim.lr_scheduler.OneCycleLR(
            net.optimizer_, total_steps=steps, **options
        )
        self.steps_left_ = steps

    def on_batch_end(self, net, training=None, **kwargs):
        """Step the schedule after every training batch (a skorch hook; not after
        a validation batch, ``training=False``)."""
        if training and self.steps_left_ > 1:
            self.scheduler_.step()
            self.steps_left_ -= 1


class CheckpointRecorder(Callback):
    """Keep a CPU copy of the module's weights after every epoch, with its learning rate.

    TracIn sums gradient dot products over checkpoints, each weighted by the
    learning rate that was used while training from it. The weight recorded
    for an epoch is the mean learning rate of its optimisation steps (the
    rate changes every batch under ``OneCycleLR``).

    Attributes
    ----------
    checkpoints_ : list of dict
        ``state_dict`` copies (on the CPU), one per epoch.
    learning_rates_ : list of float
        Mean learning rate of each epoch.

    Examples
    --------
    Every epoch's weights, recorded during training:

    >>> import numpy as np
    >>> from skggda.models import make_classifier
    >>> from skggda.models._callbacks import CheckpointRecorder
    >>> X = np.random.RandomState(0).normal(size=(64, 3)).astype("float32")
    >>> y = (X[:, 0] > 0).astype("int64")
    >>> recorder = CheckpointRecorder()
    >>> _ = make_classifier((4,), max_epochs=3, random_state=0,
    ...                     callbacks=[("ckpt", recorder)]).fit(X, y)
    >>> len(recorder.checkpoints_), len(recorder.learning_rates_)
    (3, 3)
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        """Start empty lists of checkpoints and learning rates (a skorch hook)."""
        self.checkpoints_ = []
        self.learning_rates_ = []
        self._epoch_rates = []

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        """Note the learning rate the optimiser is about to step with (a skorch
        hook; training batches only)."""
        if training:
            self._epoch_rates.append(net.optimizer_.param_groups[0]["lr"])

    def on_epoch_end(self, net, **kwargs):
        """Copy the weights to the CPU and record the epoch's mean learning rate
        (a skorch hook)."""
        state = {k: v.detach().to("cpu", copy=True) for k, v in net.module_.state_dict().items()}
        self.checkpoints_.append(state)
        self.learning_rates_.append(float(np.mean(self._epoch_rates)) if self._epoch_rates else 0.0)
        self._epoch_rates = []


class DivergenceCheck(Callback):
    """Stop training with a clear error once the loss or the weights are not finite.

    A learning rate too high for the data makes training diverge: the loss
    turns to ``inf`` or NaN and the weights follow. Attributing such a net
    gives NaN scores, or silently meaningless ones; this callback raises a
    ``ValueError`` naming the epoch instead. Attributors and groupers add it
    to every net they train.

    Examples
    --------
    A learning rate far too high stops the training with an error:

    >>> import numpy as np
    >>> from skggda.models import make_classifier
    >>> from skggda.models._callbacks import DivergenceCheck
    >>> X = np.random.RandomState(0).normal(size=(64, 3)).astype("float32")
    >>> y = (X[:, 0] > 0).astype("int64")
    >>> net = make_classifier((4,), max_epochs=2, lr=1e30, random_state=0,
    ...                       callbacks=[("divergence", DivergenceCheck())])
    >>> net.fit(X, y)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Training diverged at epoch 2: parameter 'body.0.weight' holds NaN or inf...
    """

    def on_epoch_end(self, net, **kwargs):
        """Raise once the epoch's training loss or a parameter is not finite (a
        skorch hook).

        Raises
        ------
        ValueError
            Naming the epoch and what diverged.
        """
        loss = net.history[-1].get("train_loss")
        name = self.non_finite_parameter(net.module_)
        if name is None and (loss is None or math.isfinite(loss)):
            return
        what = f"parameter {name!r} holds NaN or inf" if name else f"the training loss is {loss}"
        raise ValueError(
            f"Training diverged at epoch {len(net.history)}: {what}. Lower the learning "
            f"rate (lr={net.lr}) or rescale X."
        )

    @staticmethod
    def non_finite_parameter(module: torch.nn.Module):
        """Name of the first parameter of ``module`` holding NaN or inf, or ``None``.

        Parameters
        ----------
        module : torch.nn.Module
            The module to check.

        Returns
        -------
        name : str or None
            The parameter's name in ``module.named_parameters()``.
        """
        for name, param in module.named_parameters():
            if param.is_floating_point() and not bool(torch.isfinite(param).all()):
                return name
        return None
