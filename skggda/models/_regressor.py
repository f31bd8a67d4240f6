"""A reproducible skorch regressor with the paper's training recipe."""

from __future__ import annotations

import numpy as np
import torch
from skorch import NeuralNetRegressor

from ._classifier import mlp_recipe
from ._docs import fill_net_doc
from ._seeded import SeededNetMixin, as_arrays


@fill_net_doc
class SeededNeuralNetRegressor(SeededNetMixin, NeuralNetRegressor):
    """skorch's ``NeuralNetRegressor`` with a ``random_state``, inferred sizes and 1-D targets.

    * ``random_state``, inferred module sizes (``n_features``, and
      ``n_classes`` set to the number of target columns) and float casts
      work as in :class:`~skggda.models.SeededNeuralNetClassifier`.
    * skorch regressors need targets of shape ``(n_samples, n_targets)`` in
      the module's float dtype (a 1-D ``y`` against a ``(n, 1)`` output would
      broadcast to an ``(n, n)`` loss). Here a 1-D ``y`` is reshaped to
      ``(n_samples, 1)`` and cast to float32 before training, and
      :meth:`predict` then returns a 1-D array, as scikit-learn regressors do.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        %(module)s
    *args
        %(args)s
    random_state : int, RandomState instance or None, default=None
        %(random_state)s
    **kwargs
        %(kwargs)s
        See :class:`skorch.NeuralNetRegressor`.

    Examples
    --------
    A 1-D target in, 1-D predictions out:

    >>> import numpy as np
    >>> from skggda.models import MLP, SeededNeuralNetRegressor
    >>> X = np.random.RandomState(0).normal(size=(64, 4))
    >>> y = X[:, 0] - X[:, 1]
    >>> net = SeededNeuralNetRegressor(MLP, max_epochs=2, train_split=None,
    ...                                verbose=0, random_state=0).fit(X, y)
    >>> net.predict(X).shape
    (64,)
    """

    def _prepare_targets(self, y):
        if y is None:
            return None
        y = np.asarray(as_arrays(y), dtype=np.float32)
        self._flat_targets = y.ndim == 1
        return y.reshape(len(y), 1) if y.ndim == 1 else y

    def _count_outputs(self, y):
        return 1 if np.ndim(y) == 1 else int(np.shape(y)[1])

    def predict(self, X):
        """Predicted targets: ``(n_samples,)`` after a fit on 1-D ``y``, else 2-D.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), dict or Dataset
            Inputs, as skorch takes them; pandas objects become numpy arrays.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            The net's outputs.
        """
        y_pred = super().predict(X)
        if getattr(self, "_flat_targets", False) and y_pred.ndim == 2 and y_pred.shape[1] == 1:
            return y_pred[:, 0]
        return y_pred


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
