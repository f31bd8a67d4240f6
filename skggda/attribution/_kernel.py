"""Influence with an explicit curvature kernel (Fisher influence, TRAK).

Both methods score group ``j`` as

.. math:: \\tau_j = \\frac{1}{n} v^\\top (\\bar K + \\lambda I)^{-1} G_j

where ``v`` is the (projected) gradient of the property's badness, ``G_j``
the (projected) gradient sum of group ``j`` and ``K-bar`` a mean outer
product of gradients: the empirical Fisher ``(1/n) sum_i g_i g_i^T`` of
per-sample gradients, or the paper's *batched* Fisher ``(1/n) sum_j G_j
G_j^T`` of group gradients. With a fixed kernel the score is linear in the
training gradients, so a group's score is the sum of its members' scores.

A model trained with an L2 penalty (a converted scikit-learn model's
``penalty_``: the objective is the mean loss plus ``mu / 2 ||theta||^2``
per penalised tensor) has the penalty's curvature ``diag(mu)`` in its
Hessian. It is no per-sample term, so it enters the curvature only -- the
kernel here, the Hessian of the exact / CG / LiSSA solvers -- and never
the group gradients: removing a group removes data terms, not the
penalty.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from .. import _engine
from ..utils._distributed import training_pass
from ._numerics import check_finite_state


@dataclass
class KernelState:
    """The training side of one model: group gradients and the mean kernel (CPU arrays)."""

    group_features: np.ndarray  # (n_groups, r)
    kernel: np.ndarray  # (r, r), already divided by n
    n_samples: int


def fit_kernel_state(plan, X, y, labels, n_groups, projector, *, batched, group_weights=None,
                     penalty=None, batch_size=512, progress=False, n_jobs=None) -> KernelState:
    """One pass over the training data: group gradients and the per-sample Fisher.

    ``projector=None`` works in the full parameter space (small models).
    ``batched=True`` replaces the per-sample Fisher by ``G^T G`` of the groups.
    ``group_weights`` (see :func:`_engine.projected_gradients`) may be a
    callable ``(output, y) -> (batch,)``: evaluated during the projected pass,
    or in a forward pass of its own before the unprojected one. ``penalty``
    (:func:`penalty_diagonal`) is added to the kernel in its coordinates.
    ``n_jobs`` may split the pass over Dask workers (see :func:`training_pass`).
    """
    n = _engine.n_samples(X)
    common = dict(group_weights=group_weights, batch_size=batch_size, progress=progress,
                  n_jobs=n_jobs)
    if projector is not None:
        # the per-sample Fisher costs n r^2: skip it when the batched one is used
        sums = training_pass("projected", plan, X, y, labels, n_groups, projector=projector,
                             fisher=not batched, **common)
    else:
        check_dense_size(plan.n_params)
        sums = training_pass("statistics", plan, X, y, labels, n_groups, **common)
    groups = sums[0]
    fisher = _engine.gram(groups) if batched else sums[1]
    check_finite_state(groups, "group gradients")
    check_finite_state(fisher, "gradient outer products")
    kernel = fisher / n
    if penalty is not None:
        kernel = kernel + penalty_kernel(plan, penalty, projector).to(kernel.dtype)
    return KernelState(groups.cpu().numpy(), kernel.cpu().numpy(), n)


def row_floats(plan, n_components):
    """Floats a gradient pass holds per sample: its projected or full gradient."""
    return plan.n_params if n_components is None else n_components


def penalty_diagonal(plan, net):
    """``diag(mu)`` of ``net``'s L2 penalty (``penalty_``) in ``plan``'s block layout.

    ``None`` when the net has no penalty on the attributed parameters
    (skorch nets have none: their weight decay lives in the optimizer).
    """
    penalty = getattr(net, "penalty_", None) or {}
    if not any(penalty.get(name, 0.0) for name in plan.params):
        return None
    return plan.from_param_grads({
        name: torch.full_like(param.detach(), float(penalty.get(name, 0.0)))
        for name, param in plan.params.items()
    })


def penalty_kernel(plan, penalty, projector):
    """The penalty's curvature in the kernel's coordinates: ``diag(mu)`` or ``P diag(mu) P^T``."""
    if projector is None:
        return torch.diag(plan.flatten(penalty))
    return projector.diagonal_gram(penalty)


def check_dense_size(n_params):
    """Refuse ``p x p`` kernels beyond :data:`MAX_DENSE_PARAMS` with advice."""
    if n_params > _engine.MAX_DENSE_PARAMS:
        raise ValueError(
            f"Without projection the kernel is {n_params} x {n_params}; set n_components "
            f"(e.g. 512) or a smaller param_subset."
        )


def property_vector(plan, gradient, projector):
    """A gradient in block layout as the kernel's coordinates: ``(r,)`` or ``(p,)``."""
    return projector.dense(gradient) if projector is not None else plan.flatten(gradient)


def sample_vectors(plan, X, y, projector, *, batch_size=512, progress=False):
    """Per-sample gradients of ``plan``'s function in the kernel's coordinates: ``(n, r | p)``."""
    if projector is not None:
        return _engine.projected_gradients(plan, X, y, projector, batch_size=batch_size,
                                           progress=progress)
    check_dense_size(plan.n_params)
    return torch.cat([plan.flatten(grads) for _, grads in _engine.iter_per_sample_gradients(
        plan, X, y, batch_size=batch_size, progress=progress)])


def kernel_scores(state: KernelState, vectors, damping):
    """``(m, n_groups)``: scores of ``m`` badness gradients ``vectors`` against every group."""
    # a half-precision net's vectors meet the float32 kernel in float32
    device, dtype = vectors.device, _engine.accumulation_dtype(vectors.dtype)
    vectors = vectors.to(dtype)
    groups, factor = _on_device(state, device, dtype, damping)
    solved = factor.solve(vectors)
    return (solved @ groups.T / state.n_samples).double().cpu().numpy()


# Per fitted state, its group features and kernel factor on the device the queries
# come from: ``attribute`` scores block after block of test points against the same
# state, which would otherwise upload the (n_groups, r) features and factor the
# (r, r) kernel again for every block. Kept outside KernelState (whose attributes
# skggda.io saves) and dropped with it.
_DEVICE_STATES = {}
_DEVICE_STATES_LOCK = threading.Lock()


def _on_device(state, device, dtype, damping):
    """``(group features, KernelFactor)`` of ``state`` on ``device``, made once per key."""
    key = (torch.device(device), dtype, float(damping))
    with _DEVICE_STATES_LOCK:
        entry = _DEVICE_STATES.get(id(state))
        if entry is None or entry[0]() is not state:
            entry = _DEVICE_STATES[id(state)] = (weakref.ref(state), {})
            weakref.finalize(state, _DEVICE_STATES.pop, id(state), None)
        cached = entry[1].get(key)
        # the arrays themselves are the check: a state given new arrays is uploaded again
        if cached is None or cached[0] is not state.kernel or cached[1] is not state.group_features:
            kernel = torch.as_tensor(state.kernel, device=device, dtype=dtype)
            groups = torch.as_tensor(state.group_features, device=device, dtype=dtype)
            cached = entry[1][key] = (state.kernel, state.group_features, groups,
                                      _engine.KernelFactor(kernel, damping))
        return cached[2], cached[3]


def kernel_self_scores(state: KernelState, damping):
    """``(n_groups,)``: ``(1/n) G_j^T (K + damping I)^{-1} G_j`` of every group (self-influence)."""
    groups = torch.as_tensor(state.group_features).double()
    solved = _engine.solve_kernel(torch.as_tensor(state.kernel), groups, damping)
    return ((solved * groups).sum(1) / state.n_samples).numpy()
