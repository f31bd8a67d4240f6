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

import torch
from torch import nn

from ._blocks import ConvBlock, GenericBlock, LinearBlock, NormBlock
from ._budget import activation_floats, auto_batch_size
from ._data import forward, module_device, module_dtype, module_lock

_PROBE_SIZE = 5


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
