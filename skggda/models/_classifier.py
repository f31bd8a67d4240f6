"""A reproducible skorch classifier (its recipes are in :mod:`._recipes`)."""

from __future__ import annotations

import numpy as np
from skorch import NeuralNetClassifier

from ._docs import fill_net_doc
from ._seeded import SeededNetMixin, as_arrays


@fill_net_doc
class SeededNeuralNetClassifier(SeededNetMixin, NeuralNetClassifier):
    """skorch's ``NeuralNetClassifier`` with a ``random_state`` and inferred input sizes.

    * ``random_state`` seeds weight initialisation, batch shuffling and dropout
      inside :func:`torch.random.fork_rng`: fits are repeatable and the
      caller's global torch RNG is left exactly as it was. ``None`` uses the
      global RNG as skorch does.
    * Modules whose constructor takes ``n_features`` / ``n_classes`` /
      ``in_channels`` (such as :class:`~skggda.models.MLP` and
      :class:`~skggda.models.ResNet18`) get them from the training data unless
      they are set with ``module__...``.
    * Floating inputs are cast to the module's dtype, so float64 arrays work.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        The network, with one output per class: log-probabilities for
        skorch's default ``criterion`` (``torch.nn.NLLLoss``), logits with
        ``criterion=torch.nn.CrossEntropyLoss`` (as the recipes train). A
        class whose constructor takes ``n_features``, ``n_classes`` or
        ``in_channels`` gets them from the training data (the input width,
        the number of classes, the image channels) unless they are set with
        ``module__...``.
    random_state : int, RandomState instance or None, default=None
        %(random_state)s
    **kwargs
        %(kwargs)s
        See :class:`skorch.NeuralNetClassifier` (its ``classes``, and its
        ``train_split``, which by default holds out a stratified fifth of
        the training data for validation).

    Examples
    --------
    Two epochs of the default MLP (it returns logits) on float64 inputs:

    >>> import numpy as np
    >>> import torch
    >>> from skggda.models import MLP, SeededNeuralNetClassifier
    >>> X = np.random.RandomState(0).normal(size=(64, 4))
    >>> y = (X[:, 0] > 0).astype(np.int64)
    >>> net = SeededNeuralNetClassifier(MLP, criterion=torch.nn.CrossEntropyLoss,
    ...                                 max_epochs=2, train_split=None, verbose=0,
    ...                                 random_state=0).fit(X, y)
    >>> net.predict_proba(X).shape
    (64, 2)
    """

    def _prepare_targets(self, y):
        y = as_arrays(y)
        if isinstance(y, np.ndarray) and np.issubdtype(y.dtype, np.integer):
            return y.astype(np.int64, copy=False)
        return y

    def _count_outputs(self, y):
        if self.classes is not None:
            return len(self.classes)
        y = np.asarray(y)
        if np.issubdtype(y.dtype, np.integer):
            return int(y.max()) + 1 if y.size else 1
        return len(np.unique(y))
