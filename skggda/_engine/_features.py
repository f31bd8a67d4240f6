"""Per-sample features of a trained net for grouping: representations and their gradients.

The *head* is the last ``nn.Linear`` of the module (registration order); its
input is the penultimate representation ``h``. Grad-K-Means clusters the
gradient of each sample's loss with respect to ``h`` (not the parameters).
For a linear head ``z = W h + b`` under softmax cross-entropy that gradient
is ``W^T (softmax(z) - onehot(y))``, and under a squared error
``c ||z - y||^2`` it is ``2 c W^T (z - y)``: one forward pass, no backward.
Other heads and losses fall back to autograd.
"""

from __future__ import annotations

import torch
from torch import nn

from ._data import (
    batch_slices, forward, host_batch, module_device, module_dtype, n_samples, prefetch_pin,
    prefetching, rows, targets_to_device, to_device,
)
from ._passes import evaluating


def find_head(module: nn.Module) -> tuple[str, nn.Linear]:
    """``(name, layer)`` of the last ``nn.Linear`` in ``module``."""
    head = None
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Linear):
            head = (name, sub)
    if head is None:
        raise ValueError(
            "The module has no nn.Linear layer: cannot locate the classification head "
            "whose input representation Repr-/Grad-K-Means cluster."
        )
    return head


class _HeadTap:
    """Hooks on the head: its input (made a leaf when gradients are wanted) and output."""

    def __init__(self, head, need_grad):
        self.head, self.need_grad = head, need_grad
        self.input = self.output = None

    def __enter__(self):
        self._handles = [
            self.head.register_forward_pre_hook(self._pre),
            self.head.register_forward_hook(self._post),
        ]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        return False

    def _pre(self, module, inputs):
        h = inputs[0].detach()
        if self.need_grad:
            h.requires_grad_(True)
        self.input = h
        return (h, *inputs[1:])

    def _post(self, module, inputs, output):
        self.output = output


def _batches(module, X, y, batch_size):
    """``(X_batch, y_batch)`` on the module's device; read ahead on a thread on CUDA."""
    device, dtype = module_device(module), module_dtype(module)

    def load(span, pin):
        start, stop = span
        return (host_batch(rows(X, start, stop), pin),
                None if y is None else host_batch(rows(y, start, stop), pin))

    batches = prefetching(list(batch_slices(n_samples(X), batch_size)), load,
                          prefetch_pin(device))
    try:
        for X_host, y_host in batches:
            yield (to_device(X_host, device, dtype),
                   None if y_host is None else targets_to_device(y_host, device))
    finally:
        batches.close()


def penultimate_representations(module, X, *, batch_size=1024) -> torch.Tensor:
    """``(n, h)``: the input of the head for every sample (one no-grad forward pass)."""
    _, head = find_head(module)
    parts = []
    with evaluating(module), _HeadTap(head, need_grad=False) as tap, torch.no_grad():
        for X_batch, _ in _batches(module, X, None, batch_size):
            forward(module, X_batch)
            parts.append(tap.input.reshape(tap.input.shape[0], -1))
    return torch.cat(parts)


def preactivation_gradients(module, loss_fn, X, y, *, softmax_cross_entropy,
                            squared_error_scale=None, regression=False, batch_size=1024):
    """``(n, h)``: gradient of each sample's loss with respect to the head's input.

    Parameters
    ----------
    y : array of int or None
        Class indices; ``None`` reads the gradient at the net's predictions.
    loss_fn : callable
        ``(output, target) -> (batch,)`` per-sample losses (autograd path).
    softmax_cross_entropy : bool
        Whether the module's loss is plain softmax cross-entropy on its
        output; the closed form is used when, in addition, the head's output
        *is* the module's output.
    squared_error_scale : float, default=None
        ``c`` when the loss is ``c * sum((output - y) ** 2)`` (regression);
        the closed form ``2 c W^T (z - y)`` is then used under the same
        condition on the head.
    regression : bool, default=False
        Whether the net regresses: with ``y=None`` the gradients are read at
        the net's outputs (regression) or at its argmax classes.
    """
    _, head = find_head(module)
    parts = []
    with evaluating(module):
        for X_batch, y_batch in _batches(module, X, y, batch_size):
            parts.append(_batch_preactivation_gradients(
                module, head, loss_fn, X_batch, y_batch, softmax_cross_entropy,
                squared_error_scale, regression))
    return torch.cat(parts)


def _batch_preactivation_gradients(module, head, loss_fn, X_batch, y_batch, closed_form_ok,
                                   squared_error_scale=None, regression=False):
    with torch.no_grad(), _HeadTap(head, need_grad=False) as tap:
        output = forward(module, X_batch)
    if y_batch is None:  # the net's own predictions: the argmax class, or the output itself
        y_batch = output.detach() if regression else output.argmax(1)
    if tap.output is output and output.dim() == 2:
        if closed_form_ok:
            return closed_form_preactivation_gradients(head, output, y_batch)
        if squared_error_scale is not None:
            residual = output - y_batch.reshape(output.shape).to(output.dtype)
            return 2 * squared_error_scale * residual @ head.weight.detach()
    with torch.enable_grad(), _HeadTap(head, need_grad=True) as tap:
        losses = loss_fn(forward(module, X_batch), y_batch)
        (grad,) = torch.autograd.grad(losses.sum(), tap.input)
    return grad.reshape(grad.shape[0], -1)


def closed_form_preactivation_gradients(head: nn.Linear, logits, y) -> torch.Tensor:
    """``(softmax(z) - onehot(y)) W`` for a linear head under softmax cross-entropy."""
    residual = torch.softmax(logits, dim=1)
    residual[torch.arange(len(y), device=y.device), y] -= 1
    return residual @ head.weight.detach()


__all__ = [
    "closed_form_preactivation_gradients",
    "find_head",
    "penultimate_representations",
    "preactivation_gradients",
]
