"""What the K-Means groupers cluster: one featuriser per grouper.

A featuriser maps a block of rows (and their labels, encoded as the net
reads them) to one float32 feature vector per row, on its ``device``. The
K-Means core (:class:`~skggda.grouping._kmeans._KMeansGrouper`) whitens,
clusters and assigns whatever its grouper's featuriser returns:

* :class:`RawFeatures`: the inputs themselves (``KMeansGrouper``);
* :class:`Representations`: the input of a net's classification head
  (``ReprKMeansGrouper``);
* :class:`LossGradients`: the loss gradient with respect to that input
  (``GradKMeansGrouper``).

A featuriser holds only what its features need once the grouper is fitted
(a device, a trained net): it travels to Dask workers with the fitted
centers, and a grouper builds it from its own parameters and fitted
attributes whenever it needs it, so saved groupers hold none.
"""

from __future__ import annotations

import numpy as np
import torch

from .._engine import (
    activation_floats,
    auto_batch_size,
    module_device,
    module_dtype,
    penultimate_representations,
    preactivation_gradients,
    probe_batch,
    to_device,
)
from ..models._loss import PerSampleLoss
from ..utils._targets import is_regression


class RawFeatures:
    """The inputs flattened to one float32 row per sample.

    Parameters
    ----------
    device : str or torch.device, default="cpu"
        Device of the features. ``"cuda"`` without a GPU falls back to the
        CPU, so a grouper fitted on a GPU and loaded on a CPU-only machine
        still predicts.
    """

    def __init__(self, device="cpu"):
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            device = torch.device("cpu")
        self.device = device

    def features(self, X_block, y_block=None):
        """Tensor of shape ``(n_rows, n_features)``: the rows of ``X_block``, flattened."""
        block = np.asarray(X_block, dtype=np.float32)
        block = block if block.flags.writeable else block.copy()  # torch wants writable memory
        return torch.as_tensor(block.reshape(len(block), -1), device=self.device)


class _NetFeatures:
    """Features read from a fitted net, on the net's device.

    Parameters
    ----------
    net : fitted skorch net
        Its ``module_`` has a classification head (a last ``nn.Linear``).
    batch_size : int or "auto", default="auto"
        Rows per forward pass; ``"auto"`` sizes it from the activations of
        one probe batch and the device's free memory.
    """

    def __init__(self, net, batch_size="auto"):
        self.net = net
        self.batch_size = batch_size

    @property
    def device(self):
        return module_device(self.net.module_)

    def features(self, X_block, y_block=None):
        """Tensor of shape ``(n_rows, n_hidden)``, ``n_hidden`` the width of the head's input.

        ``y_block`` holds class indices (or regression targets) as the net
        reads them; ``None`` reads the features at the net's predictions.
        """
        features = self._net_features(X_block, y_block, self._forward_batch_size(X_block))
        # float32 whatever the module computes in (converted scikit-learn models: float64)
        return features.float()

    def _forward_batch_size(self, X_block):
        if self.batch_size != "auto":
            return self.batch_size
        module = self.net.module_
        device, dtype = module_device(module), module_dtype(module)
        floats = activation_floats(module, to_device(probe_batch(X_block), device, dtype))
        return auto_batch_size(floats * (torch.finfo(dtype).bits // 8), device)

    def _net_features(self, X, y, batch_size):  # pragma: no cover - abstract
        raise NotImplementedError


class Representations(_NetFeatures):
    """The input of the net's classification head: its penultimate representations.

    Labels are ignored: a sample's representation does not depend on them.
    """

    def _net_features(self, X, y, batch_size):
        return penultimate_representations(self.net.module_, X, batch_size=batch_size)


class LossGradients(_NetFeatures):
    """The gradient of each sample's loss with respect to the input of the net's head.

    Closed form for a linear head under softmax cross-entropy or a squared
    error, autograd otherwise (see
    :func:`~skggda._engine.preactivation_gradients`).
    """

    def _net_features(self, X, y, batch_size):
        loss = PerSampleLoss(self.net.criterion_)
        return preactivation_gradients(
            self.net.module_, loss, X, y,
            softmax_cross_entropy=loss.is_plain_cross_entropy,
            squared_error_scale=loss.squared_error_scale,
            regression=is_regression(self.net), batch_size=batch_size,
        )
