"""The blocks a :class:`~skggda._engine._plan.GradientPlan` splits parameters into.

A :class:`LinearBlock` (``nn.Linear``) or :class:`ConvBlock` (``nn.Conv2d``)
reads its per-sample gradients from hooks, as outer products of output
gradients and input activations; a :class:`NormBlock` does the same for a
norm layer's scale and shift; a :class:`GenericBlock` holds every other
selected parameter, handled by ``torch.func``. See :mod:`._plan` for the
block layout the engine's passes exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(eq=False)
class _HookBlock:
    """A module whose per-sample gradients are read off its hooked input and
    output gradient: its selected weight and / or bias, and how its calls
    become rows (``activation_rows`` / ``gradient_rows``, in subclasses)."""

    module_name: str
    module: nn.Module
    weight_name: str | None
    bias_name: str | None

    @property
    def names(self) -> list[str]:
        return [n for n in (self.weight_name, self.bias_name) if n is not None]

    def rows(self, calls):
        """``(A, D)``: activation rows and output-gradient rows of all calls,
        ``(batch, rows, ...)`` each, a sample's rows in dim 1."""
        acts = [self.activation_rows(a) for a, _ in calls]
        grads = [self.gradient_rows(g) for _, g in calls]
        if len(calls) == 1:
            return acts[0], grads[0]
        return torch.cat(acts, dim=1), torch.cat(grads, dim=1)


@dataclass(eq=False)
class LinearBlock(_HookBlock):
    """An ``nn.Linear`` whose selected weight and/or bias use the hook fast path."""

    @property
    def out_dim(self) -> int:
        return self.module.out_features

    @property
    def n_inputs(self) -> int:
        """Width of one activation row (before the bias column)."""
        return self.module.in_features

    @property
    def in_dim(self) -> int:
        """Columns of the augmented activation: inputs (if weight) plus a one (if bias)."""
        return (self.n_inputs if self.weight_name else 0) + (1 if self.bias_name else 0)

    def activation_rows(self, activation: torch.Tensor) -> torch.Tensor:
        """A call's input as ``(batch, rows, n_inputs)``."""
        return activation.reshape(activation.shape[0], -1, activation.shape[-1])

    def gradient_rows(self, grad: torch.Tensor) -> torch.Tensor:
        """The gradient of a call's output as ``(batch, rows, out_dim)``."""
        return grad.reshape(grad.shape[0], -1, self.out_dim)

    def _weight_matrix(self, weight_grad):
        return weight_grad

    def _weight_tensor(self, matrix):
        return matrix

    @property
    def size(self) -> int:
        return self.out_dim * self.in_dim

    @property
    def shape(self) -> tuple:
        """Shape of this block's gradient (without leading dimensions)."""
        return (self.out_dim, self.in_dim)

    def prepare_directions(self, directions):
        """The ``(m, out, in)`` directions laid out for :meth:`dots`.

        ``d^T V a`` is contracted on whichever side is narrower: ``(D V) . A``
        when the outputs are at least as many as the inputs, else
        ``(A V^T) . D`` (a classification head's two outputs against 50
        inputs: the elementwise product and sum run over 2 columns, not 51).
        Both take one matrix product for all ``m`` directions.
        """
        if self._contract_outputs():
            return directions.permute(1, 0, 2).reshape(directions.shape[1], -1)
        m, out = directions.shape[:2]
        flat = directions.reshape(m * out, -1)
        weight = flat[:, : self.n_inputs] if self.weight_name else None
        bias = flat[:, -1] if self.bias_name else None
        return weight, bias

    def _contract_outputs(self):
        return self.out_dim >= self.in_dim or not self.weight_name

    def dots(self, calls, prepared):
        """``(batch, m)``: each sample's gradient dotted with the prepared directions."""
        acts, grads = self.rows(calls)
        batch, n_rows = grads.shape[:2]
        grads = grads.reshape(batch * n_rows, -1)
        if self._contract_outputs():
            dv = (grads @ prepared).view(batch * n_rows, -1, self.in_dim)
            per_row = self.contract(dv, acts.reshape(batch * n_rows, 1, -1))
        else:
            weight, bias = prepared
            av = F.linear(acts.reshape(batch * n_rows, -1), weight, bias)
            per_row = (av.view(batch * n_rows, -1, self.out_dim) * grads[:, None]).sum(-1)
        return per_row.view(batch, n_rows, -1).sum(1)

    def chunk_sums(self, calls, layout):
        """Gradient sums over the padded chunks of ``layout``: ``(n_chunks, out, in)``."""
        acts, grads = self.rows(calls)
        a = layout.pad(self.augment(acts)).flatten(1, 2)  # (chunks, cap * rows, in_aug)
        d = layout.pad(grads).flatten(1, 2)  # (chunks, cap * rows, out)
        return torch.bmm(d.transpose(1, 2), a)

    def project_inputs(self, activation, p_in):
        """``augment(rows(activation)) @ p_in`` -> ``(batch, rows, r_in)``, no ones column."""
        rows = self.activation_rows(activation)
        if p_in is None:
            return self.augment(rows)
        if not self.weight_name:
            return p_in[0].expand(*rows.shape[:-1], p_in.shape[1])
        n_in = self.n_inputs
        return F.linear(rows, p_in[:n_in].T, p_in[n_in] if self.bias_name else None)

    def augment(self, activation: torch.Tensor) -> torch.Tensor:
        """Activation columns matching this block's gradient matrix."""
        parts = []
        if self.weight_name:
            parts.append(activation)
        if self.bias_name:
            parts.append(activation.new_ones(activation.shape[:-1] + (1,)))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def contract(self, values: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
        """``(values * augment(activation)).sum(-1)`` without forming the ones column.

        ``values``: ``(..., in_aug)``; ``activation`` broadcastable to
        ``(..., in_features)``.
        """
        out = 0
        if self.weight_name:
            out = (values[..., : self.n_inputs] * activation).sum(-1)
        if self.bias_name:
            out = out + values[..., -1]
        return out

    def from_param_grads(self, grads: dict) -> torch.Tensor:
        parts = []
        if self.weight_name:
            parts.append(self._weight_matrix(grads[self.weight_name]))
        if self.bias_name:
            parts.append(grads[self.bias_name].unsqueeze(-1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def to_param_grads(self, matrix: torch.Tensor) -> dict:
        out = {}
        if self.weight_name:
            out[self.weight_name] = self._weight_tensor(matrix[..., : self.n_inputs])
        if self.bias_name:
            out[self.bias_name] = matrix[..., -1]
        return out


@dataclass(eq=False)
class ConvBlock(LinearBlock):
    """An ``nn.Conv2d`` (``groups=1``, zero padding) on the same fast path.

    A convolution is a linear layer applied at every output position to the
    unfolded input patch: its rows are the ``H' W'`` positions, its inputs
    the ``C_in k_h k_w`` patch entries, and its weight the
    ``(C_out, C_in k_h k_w)`` matrix.
    """

    @property
    def out_dim(self) -> int:
        return self.module.out_channels

    @property
    def n_inputs(self) -> int:
        kh, kw = self.module.kernel_size
        return self.module.in_channels * kh * kw

    def activation_rows(self, activation):
        conv = self.module
        patches = F.unfold(activation, conv.kernel_size, dilation=conv.dilation,
                           padding=conv.padding, stride=conv.stride)
        return patches.transpose(1, 2)

    def gradient_rows(self, grad):
        return grad.flatten(2).transpose(1, 2)

    def _conv(self, x, weight, bias=None):
        conv = self.module
        return F.conv2d(x, weight, bias, stride=conv.stride, padding=conv.padding,
                        dilation=conv.dilation)

    def prepare_directions(self, directions):
        """Directions as ``(m * out, C_in, k_h, k_w)`` kernels and ``(m, out)`` biases."""
        weight = bias = None
        if self.weight_name:
            weight = self._weight_tensor(directions[..., : self.n_inputs]).flatten(0, 1)
        if self.bias_name:
            bias = directions[..., -1]
        return weight, bias

    def dots(self, calls, prepared):
        """Dot products without unfolding: convolve the input with each direction
        as a kernel and contract with the output gradient (``sum_l d_l . V a_l``)."""
        weight, bias = prepared
        m = weight.shape[0] // self.out_dim if weight is not None else bias.shape[0]
        total = 0.0
        for x, grad in calls:
            if weight is not None:
                response = self._conv(x, weight).flatten(2)  # (batch, m * out, L)
                total = total + (response.view(x.shape[0], m, self.out_dim, -1)
                                 * grad.flatten(2).unsqueeze(1)).sum((2, 3))
            if bias is not None:
                total = total + grad.flatten(2).sum(-1) @ bias.T
        return total

    def project_inputs(self, activation, p_in):
        """``P_in`` applied to every unfolded patch, as a convolution: ``(batch, L, r_in)``."""
        if p_in is None or not self.weight_name:
            return super().project_inputs(activation, p_in)
        n_in = self.n_inputs
        kernel = p_in[:n_in].T.reshape(p_in.shape[1], *self.module.weight.shape[1:])
        bias = p_in[n_in] if self.bias_name else None
        return self._conv(activation, kernel, bias).flatten(2).transpose(1, 2)

    def _weight_matrix(self, weight_grad):
        return weight_grad.flatten(-3)

    def _weight_tensor(self, matrix):
        return matrix.reshape(*matrix.shape[:-1], *self.module.weight.shape[1:])


@dataclass(eq=False)
class NormBlock(_HookBlock):
    """An affine normalisation (``LayerNorm`` over the last dimension, or a
    ``BatchNorm`` with running statistics in eval mode) on the hook path.

    Its output is ``weight * x_hat + bias`` per channel, so a sample's
    gradient is ``(sum_rows d * x_hat, sum_rows d)``: the hook keeps the
    normalised input ``x_hat`` and the output gradient ``d`` as rows.
    Gradients have shape ``(channels, k)`` with one column per selected
    parameter (weight first).
    """

    @property
    def channels(self) -> int:
        return self.module.weight.shape[0]

    @property
    def shape(self) -> tuple:
        return (self.channels, len(self.names))

    @property
    def size(self) -> int:
        return self.channels * len(self.names)

    def _channels_last(self, x):
        return x if isinstance(self.module, nn.LayerNorm) else x.movedim(1, -1)

    def activation_rows(self, x):
        """The normalised input ``x_hat`` as ``(batch, rows, channels)``."""
        m = self.module
        if isinstance(m, nn.LayerNorm):
            mean = x.mean(-1, keepdim=True)
            var = x.var(-1, unbiased=False, keepdim=True)
            x_hat = (x - mean) / torch.sqrt(var + m.eps)
        else:
            x = self._channels_last(x)
            x_hat = (x - m.running_mean) / torch.sqrt(m.running_var + m.eps)
        return x_hat.reshape(x_hat.shape[0], -1, self.channels)

    def gradient_rows(self, grad):
        grad = self._channels_last(grad)
        return grad.reshape(grad.shape[0], -1, self.channels)

    def per_sample(self, acts, grads):
        """``(batch, channels, k)`` per-sample gradients from the rows."""
        parts = []
        if self.weight_name:
            parts.append((grads * acts).sum(1))
        if self.bias_name:
            parts.append(grads.sum(1))
        return torch.stack(parts, dim=-1)

    def prepare_directions(self, directions):
        return directions

    def dots(self, calls, prepared):
        return torch.einsum("bck,mck->bm", self.per_sample(*self.rows(calls)), prepared)

    def chunk_sums(self, calls, layout):
        per_sample = self.per_sample(*self.rows(calls))
        out = per_sample.new_zeros(layout.n_chunks, *per_sample.shape[1:])
        return out.index_add_(0, layout.chunk_id, per_sample)

    def from_param_grads(self, grads: dict) -> torch.Tensor:
        return torch.stack([grads[n] for n in self.names], dim=-1)

    def to_param_grads(self, tensor: torch.Tensor) -> dict:
        return {n: tensor[..., i] for i, n in enumerate(self.names)}


@dataclass(eq=False)
class GenericBlock:
    """Parameters differentiated with ``torch.func``, flattened into one vector."""

    names: list[str]
    params: list[nn.Parameter] = field(repr=False)

    @property
    def size(self) -> int:
        return sum(p.numel() for p in self.params)

    @property
    def shape(self) -> tuple:
        return (self.size,)

    def from_param_grads(self, grads: dict) -> torch.Tensor:
        lead = grads[self.names[0]].shape[: grads[self.names[0]].dim() - self.params[0].dim()]
        return torch.cat([grads[n].reshape(*lead, -1) for n in self.names], dim=-1)

    def to_param_grads(self, flat: torch.Tensor) -> dict:
        out, start = {}, 0
        lead = flat.shape[:-1]
        for name, param in zip(self.names, self.params):
            stop = start + param.numel()
            # one tuple: a 0-d parameter under vmap has no lead and no shape
            out[name] = flat[..., start:stop].reshape((*lead, *param.shape))
            start = stop
        return out
