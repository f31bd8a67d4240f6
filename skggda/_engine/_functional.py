"""The ``torch.func`` fallback for parameters the linear fast path does not cover.

Convolutions, embeddings, norm layers, tied weights: anything a module can
compute is differentiated here, per sample (``vmap(grad)``), per padded group
chunk (``vmap`` over chunks of a masked loss sum), or along directions
(forward-mode ``jvp``, which yields every sample's gradient dot product with
a direction without forming any per-sample gradient).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.func import functional_call, grad, jvp, vmap
from torch.utils._pytree import tree_map


def _call(module, params, X):
    with kept_parameters(module):
        if isinstance(X, dict):
            return functional_call(module, params, (), X)
        return functional_call(module, params, (X,))


@contextmanager
def kept_parameters(module):
    """Put every parameter of ``module`` back in place after ``functional_call``.

    ``functional_call`` swaps each name in, then back out in the same order. A
    submodule registered under two names (``self.b = self.a``) is swapped
    twice, the "original" saved for its second name is the first swap's
    tensor, and the module would be left holding plain tensors instead of its
    parameters.
    """
    kept = [(mod, dict(mod._parameters)) for mod in module.modules()]
    try:
        yield
    finally:
        for mod, parameters in kept:
            mod._parameters.update(parameters)


def _detached(plan, names):
    return {name: plan.params[name].detach() for name in names}


def _constants(plan, names):
    """Every other parameter, detached: ``torch.func`` must not trace through them."""
    names = set(names)
    return {n: p.detach() for n, p in plan.module.named_parameters() if n not in names}


def per_sample_grads(plan, names, X, y) -> dict:
    """Gradients of each sample's loss: name -> ``(batch, *param.shape)``."""

    constants = _constants(plan, names)

    def sample_loss(params, x, target):
        x = tree_map(lambda t: t.unsqueeze(0), x)
        out = _call(plan.module, {**constants, **params}, x)
        return plan.loss_fn(out, target.unsqueeze(0)).sum()

    return vmap(grad(sample_loss), in_dims=(None, 0, 0))(_detached(plan, names), X, y)


def chunk_grads(plan, names, X, y, mask) -> dict:
    """Gradients of masked loss sums over padded chunks.

    ``X``: ``(chunks, cap, ...)``, ``y`` and ``mask``: ``(chunks, cap)`` ->
    name -> ``(chunks, *param.shape)``.
    """

    constants = _constants(plan, names)

    def chunk_loss(params, x, target, weight):
        out = _call(plan.module, {**constants, **params}, x)
        return (plan.loss_fn(out, target) * weight).sum()

    return vmap(grad(chunk_loss), in_dims=(None, 0, 0, 0))(
        _detached(plan, names), X, y, mask
    )


def directional_derivatives(plan, X, y, tangents: dict) -> torch.Tensor:
    """``(batch, m)``: each sample's loss gradient dotted with ``m`` directions.

    ``tangents`` maps every selected parameter name to ``(m, *param.shape)``.
    """
    primals = _detached(plan, list(plan.params))
    tangents = {name: tangents[name] for name in primals}  # pytree order must match
    constants = _constants(plan, primals)

    def losses(params):
        return plan.loss_fn(_call(plan.module, {**constants, **params}, X), y)

    def along(tangent):
        return jvp(losses, (primals,), (tangent,))[1]

    return vmap(along)(tangents).T
