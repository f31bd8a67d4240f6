"""Which parameters to differentiate, and how.

A :class:`GradientPlan` splits the selected parameters into *blocks*:

* one :class:`LinearBlock` per ``nn.Linear`` (or :class:`ConvBlock` per
  ``nn.Conv2d``) that is called with the batch as its leading dimension and
  owns its parameters alone. Its per-sample gradient is a sum of outer
  products of the layer's output gradients and input activations (one per
  token or output position), which the engine reads from hooks during one
  backward pass;
* one :class:`GenericBlock` holding everything else (convolutions, embeddings,
  norm layers, shared weights, ...), handled by ``torch.func``.

Gradients are exchanged between the engine's passes in this *block layout*: a
list with, per block, a tensor of shape ``(..., out, in_aug)`` for a linear
block (bias folded in as an extra input column of ones) or ``(..., p_block)``
for the generic block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ._budget import activation_floats, auto_batch_size
from ._data import forward, module_device, module_dtype, module_lock

_PROBE_SIZE = 5


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
            out[name] = flat[..., start:stop].reshape(*lead, *param.shape)
            start = stop
        return out


class GradientPlan:
    """A module, its per-sample loss, and the blocks its selected parameters form.

    Parameters
    ----------
    module : torch.nn.Module
        The network; it is put in eval mode by the passes that use the plan.
    loss_fn : callable
        ``loss_fn(output, target) -> Tensor of shape (batch,)``: per-sample losses.
    params : dict of str to Parameter
        The selected parameters, by name in ``module.named_parameters()``.
    hook_blocks : list of LinearBlock, ConvBlock or NormBlock
        Blocks whose per-sample gradients are read from forward hooks.
    generic : GenericBlock or None
    """

    def __init__(self, module, loss_fn, params, hook_blocks, generic, activation_floats=0):
        self.module = module
        self.loss_fn = loss_fn
        self.params = params
        self.hook_blocks = hook_blocks
        self.generic = generic
        self.activation_floats = activation_floats

    def with_loss(self, loss_fn) -> "GradientPlan":
        """The same blocks differentiating another per-sample function."""
        return GradientPlan(self.module, loss_fn, self.params, self.hook_blocks, self.generic,
                            self.activation_floats)

    def batch_size(self, batch_size, per_sample_floats=0) -> int:
        """Rows per batch: ``batch_size`` itself, or the ``"auto"`` choice for this plan.

        ``per_sample_floats`` is what the pass holds per sample besides the
        activations (projected features, per-sample gradients); a
        ``torch.func`` block adds its per-sample gradients.
        """
        if batch_size != "auto":
            return int(batch_size)
        generic = self.generic.size if self.generic is not None else 0
        floats = self.activation_floats + generic + per_sample_floats
        element = torch.finfo(module_dtype(self.module)).bits // 8
        return auto_batch_size(floats * element, module_device(self.module))

    @property
    def blocks(self) -> list:
        return self.hook_blocks + ([self.generic] if self.generic is not None else [])

    @property
    def n_params(self) -> int:
        return sum(block.size for block in self.blocks)

    def from_param_grads(self, grads: dict) -> list[torch.Tensor]:
        """Per-parameter gradients (name -> tensor) to block layout."""
        return [block.from_param_grads(grads) for block in self.blocks]

    def to_param_grads(self, blocks: list[torch.Tensor]) -> dict:
        out = {}
        for block, tensor in zip(self.blocks, blocks):
            out.update(block.to_param_grads(tensor))
        return out

    def flatten(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """Block layout with leading dims ``lead`` to one ``(*lead, n_params)`` tensor."""
        parts = []
        for block, tensor in zip(self.blocks, blocks):
            lead = tensor.shape[: tensor.dim() - len(block.shape)]
            parts.append(tensor.reshape(*lead, -1))
        return torch.cat(parts, dim=-1)

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Inverse of :meth:`flatten`: ``(*lead, n_params)`` to block layout."""
        lead = flat.shape[:-1]
        out, start = [], 0
        for block in self.blocks:
            stop = start + block.size
            out.append(flat[..., start:stop].reshape(*lead, *block.shape))
            start = stop
        return out

    def __repr__(self):
        hooked = ", ".join(b.module_name for b in self.hook_blocks)
        generic = len(self.generic.names) if self.generic else 0
        return (
            f"GradientPlan(n_params={self.n_params}, hooks=[{hooked}], "
            f"generic_params={generic})"
        )


def select_parameters(module: nn.Module, param_subset="all") -> dict:
    """Trainable parameters chosen by ``param_subset``.

    Parameters
    ----------
    module : torch.nn.Module
    param_subset : "all", "last" or list of str
        ``"all"``: every parameter with ``requires_grad``. ``"last"``: those of
        the last module (in registration order) that owns trainable parameters,
        usually the classification head. A list selects parameters by exact name
        or by module prefix (``"net.2"`` selects ``"net.2.weight"`` and
        ``"net.2.bias"``).

    Returns
    -------
    dict of str to Parameter, in ``named_parameters`` order.
    """
    named = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if not named:
        raise ValueError("The module has no trainable parameters to attribute.")
    if isinstance(param_subset, str) and param_subset == "all":
        return named
    if isinstance(param_subset, str) and param_subset == "last":
        owner = None
        for mod_name, mod in module.named_modules():
            if any(p.requires_grad for p in mod.parameters(recurse=False)):
                owner = mod_name
        prefix = f"{owner}." if owner else ""
        return {
            n: p for n, p in named.items() if n.startswith(prefix) and "." not in n[len(prefix):]
        }
    selected = {}
    for entry in param_subset:
        matches = [n for n in named if n == entry or n.startswith(f"{entry}.")]
        if not matches:
            raise ValueError(
                f"param_subset entry {entry!r} matches no trainable parameter; "
                f"available: {sorted(named)}."
            )
        selected.update({n: named[n] for n in matches})
    return {n: named[n] for n in named if n in selected}


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _block_type(module):
    """The fast-path block class for ``module``, or ``None`` for the generic path."""
    if type(module).forward is nn.Linear.forward and isinstance(module, nn.Linear):
        return LinearBlock
    if (
        type(module) is nn.LayerNorm
        and module.elementwise_affine
        and len(module.normalized_shape) == 1
    ):
        return NormBlock
    if (
        type(module) in _BATCH_NORMS
        and module.affine
        and module.track_running_stats
        and module.running_mean is not None
    ):
        return NormBlock  # in eval mode, where the passes run it
    if (
        isinstance(module, nn.Conv2d)
        and type(module).forward is nn.Conv2d.forward
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    ):
        return ConvBlock
    return None


def _shared_parameter_ids(module: nn.Module) -> set:
    """Ids of parameters owned by more than one module (tied weights)."""
    owners: dict[int, int] = {}
    for _, mod in module.named_modules(remove_duplicate=False):
        for param in mod.parameters(recurse=False):
            owners[id(param)] = owners.get(id(param), 0) + 1
    return {pid for pid, count in owners.items() if count > 1}


def _probe_batch_leading_linears(module, candidates, X_probe) -> set:
    """Names of candidate linears called (at least once) only on batch-leading inputs."""
    batch = _probe_len(X_probe)
    calls = {name: [] for name in candidates}
    handles = []

    def make_hook(name):
        def hook(mod, inputs, output):
            ok = (
                len(inputs) >= 1
                and isinstance(inputs[0], torch.Tensor)
                and inputs[0].dim() >= 2
                and inputs[0].shape[0] == batch
                and output.shape[0] == batch
            )
            calls[name].append(ok)

        return hook

    for name, mod in candidates.items():
        handles.append(mod.register_forward_hook(make_hook(name)))
    try:
        with torch.no_grad():
            forward(module, X_probe)
    finally:
        for handle in handles:
            handle.remove()
    return {name for name, seen in calls.items() if seen and all(seen)}


def _probe_len(X) -> int:
    if isinstance(X, dict):
        return _probe_len(next(iter(X.values())))
    return X.shape[0]


def make_plan(module, loss_fn, X_probe, param_subset="all") -> GradientPlan:
    """Build the :class:`GradientPlan` for ``module``.

    ``X_probe`` is a small batch already on the module's device; one forward
    pass over it finds the linears the hook fast path can handle.
    """
    params = select_parameters(module, param_subset)
    by_id = {id(p): n for n, p in params.items()}
    shared = _shared_parameter_ids(module)

    candidates = {}
    for mod_name, mod in module.named_modules():
        if _block_type(mod) is None:
            continue
        own = [p for p in mod.parameters(recurse=False) if id(p) in by_id]
        if own and not any(id(p) in shared for p in mod.parameters(recurse=False)):
            candidates[mod_name] = mod
    with module_lock(module):  # the probe's hooks must not see another thread's pass
        was_training = module.training
        module.eval()
        try:
            fast = _probe_batch_leading_linears(module, candidates, X_probe)
            floats = activation_floats(module, X_probe)
        finally:
            module.train(was_training)

    hook_blocks, covered = [], set()
    for mod_name, mod in candidates.items():
        if mod_name not in fast:
            continue
        weight_name = by_id.get(id(mod.weight))
        bias_name = by_id.get(id(mod.bias)) if mod.bias is not None else None
        hook_blocks.append(_block_type(mod)(mod_name, mod, weight_name, bias_name))
        covered.update(n for n in (weight_name, bias_name) if n)
    rest = [n for n in params if n not in covered]
    generic = GenericBlock(rest, [params[n] for n in rest]) if rest else None
    return GradientPlan(module, loss_fn, params, hook_blocks, generic, floats)


def probe_batch(X, n: int | None = None):
    """The first few rows of ``X`` (used to probe the module once)."""
    size = _PROBE_SIZE if n is None else n
    if isinstance(X, dict):
        return {k: probe_batch(v, size) for k, v in X.items()}
    return X[:size]
