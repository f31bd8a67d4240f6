"""A multilayer perceptron module (the paper's LR / ANN-S / ANN-M / MLP models)."""

from __future__ import annotations

from torch import nn

_ACTIVATIONS = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU,
    # scikit-learn's MLP activations, for converted models
    "logistic": nn.Sigmoid, "identity": nn.Identity,
}


class MLP(nn.Module):
    """Fully connected network returning class logits (or regression outputs).

    Parameters
    ----------
    n_features : int
        Input width. :func:`~skggda.models.make_classifier` infers it from the
        training data.
    n_classes : int
        Number of output logits (inferred from the labels likewise); for a
        regressor, the number of target columns.
    hidden_layer_sizes : tuple of int, default=()
        Widths of the hidden layers. ``()`` is multinomial logistic regression.
    activation : {"relu", "tanh", "gelu", "logistic", "identity"}, default="relu"
        Activation after every hidden layer (``"logistic"`` and
        ``"identity"`` as in scikit-learn's MLPs, for converted models).

    Examples
    --------
    >>> import torch
    >>> from skggda.models import MLP
    >>> net = MLP(n_features=23, n_classes=2, hidden_layer_sizes=(50, 50))
    >>> net(torch.zeros(4, 23)).shape
    torch.Size([4, 2])
    """

    def __init__(self, n_features, n_classes, hidden_layer_sizes=(), activation="relu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is not one of {sorted(_ACTIVATIONS)}."
            )
        widths = [int(n_features), *map(int, hidden_layer_sizes)]
        layers = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), _ACTIVATIONS[activation]()]
        # The last hidden activation feeds the head: Repr-/Grad-K-Means read it.
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], int(n_classes))

    def forward(self, X):
        """Class logits (or regression outputs) of a batch.

        Parameters
        ----------
        X : torch.Tensor of shape (batch, ...)
            Inputs; dimensions after the first are flattened to
            ``n_features``.

        Returns
        -------
        output : torch.Tensor of shape (batch, n_classes)
            The head's output.
        """
        return self.head(self.body(X.flatten(1)))
