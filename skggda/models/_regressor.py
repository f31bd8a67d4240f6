"""A reproducible skorch regressor (its recipe is in :mod:`._recipes`)."""

from __future__ import annotations

import numpy as np
from skorch import NeuralNetRegressor

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
        The network, returning one column per target. A class whose
        constructor takes ``n_features``, ``n_classes`` or ``in_channels``
        gets them from the training data unless they are set with
        ``module__...``: here ``n_classes`` is the number of target
        columns (1 for a 1-D ``y``).
    random_state : int, RandomState instance or None, default=None
        %(random_state)s
    **kwargs
        %(kwargs)s
        See :class:`skorch.NeuralNetRegressor` (``criterion``:
        ``torch.nn.MSELoss`` by default).

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
