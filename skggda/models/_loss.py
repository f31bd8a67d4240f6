"""A net's criterion as the engine needs it: one loss per sample.

skorch nets hold a criterion with a batch reduction (``criterion_``); the
gradient engine differentiates one loss per training sample. The
:class:`~skggda.models.SklearnLoss` of a converted model and skorch's own
criteria (``CrossEntropyLoss``, ``NLLLoss`` over probabilities, ``MSELoss``)
are read here.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


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
