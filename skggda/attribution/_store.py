"""The group store: every group's training gradient, kept after ``fit``.

Per-test-point attribution (``attribute``, ``top_groups``) scores each query
against every group. Without a store that needs the group gradients again
for every call -- a pass over the training data per call, or per block of
queries when they do not fit in memory. Methods with a fixed curvature keep
them instead: ``fit`` makes one more pass and stores, for every group ``k``,
``P G_k`` -- its gradient sum ``G_k`` preconditioned by the method's inverse
curvature ``P`` (the identity for TracIn; ``(H + damping I)^{-1}`` for the
exact Hessian, K-FAC and EK-FAC, all symmetric, so ``g^T P G_k`` is the
score). A query then costs its own gradient and one product with the store.

The store is exact (no projection) and kept when it fits
:data:`STORE_BYTES`, the CPU memory budget of ``batch_size="auto"``, and
the training data is in this process (not a Dask cluster's); otherwise the
estimators stream the training data as before. It is part of the fitted
state, so :mod:`skggda.io` saves it.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _engine
from ..utils._distributed import cluster_for
from ._numerics import check_finite_state

#: Largest store kept, in bytes (all checkpoints together).
STORE_BYTES = 1 << 28
#: Rows of attributions ``top_groups`` holds at a time, in bytes.
QUERY_BLOCK_BYTES = 1 << 26


def keeps_store(attributor, X, n_params, itemsize, n_copies=1):
    """Whether ``attributor`` keeps a store: ``n_copies`` of ``(n_groups, n_params)`` fit
    :data:`STORE_BYTES`, and the training data is in this process.

    On a Dask cluster the passes stay on the workers and no store is built
    (building it there is left to come).
    """
    fits = attributor.n_groups_ * n_params * itemsize * n_copies <= STORE_BYTES
    return fits and cluster_for(X, getattr(attributor, "n_jobs", None)) is None


def build_store(attributor, plan, precondition=None):
    """``(n_groups, n_params)`` numpy: each group's gradient sum, preconditioned.

    One pass over the training data, in blocks of groups
    (``attributor._group_gradient_blocks``); ``precondition`` maps a block of
    flat gradients ``(m, p)`` to ``P`` applied to each row.
    """
    store = None
    for groups, grads in attributor._group_gradient_blocks(plan):
        flat = plan.flatten(grads)
        if precondition is not None:
            flat = precondition(flat)
        if store is None:  # in the module's dtype: float64 for a converted scikit-learn model
            store = np.empty((attributor.n_groups_, flat.shape[1]), dtype=_numpy_dtype(flat))
        store[groups] = flat.cpu().numpy()
    return check_finite_state(store, "group gradients")


def attribute_with_store(rows_plan, plan, X, y, store, *, batch_size, progress=None):
    """``(n_queries, n_groups)`` float32: every query's per-sample gradient times the store."""
    device = _engine.module_device(plan.module)
    stored = torch.as_tensor(store, device=device)
    out = np.empty((len(X), store.shape[0]), dtype=np.float32)
    for index, grads in _engine.iter_per_sample_gradients(rows_plan, X, y, batch_size=batch_size,
                                                          progress=progress):
        out[index] = (plan.flatten(grads).to(stored.dtype) @ stored.T).cpu().numpy()
    return out


def score_with_store(plan, gradient, store):
    """``(n_groups,)`` float64: a property gradient (blocks) times the store.

    The products are taken in the store's dtype, as the training-set passes
    take theirs: gradients that overflow it (inputs of extreme magnitude)
    give non-finite scores, which the estimators refuse.
    """
    device = _engine.module_device(plan.module)
    stored = torch.as_tensor(store, device=device)
    vector = plan.flatten(gradient).to(stored.dtype)
    return (stored @ vector).double().cpu().numpy()


def _numpy_dtype(tensor):
    return torch.empty(0, dtype=tensor.dtype).numpy().dtype


def extremes(rows, n):
    """The ``n`` highest and ``n`` lowest entries of every row, sorted, with their columns."""
    helpful = np.argpartition(-rows, n - 1, axis=1)[:, :n]
    harmful = np.argpartition(rows, n - 1, axis=1)[:, :n]
    out = {}
    for side, picked, sign in (("helpful", helpful, -1), ("harmful", harmful, 1)):
        values = np.take_along_axis(rows, picked, axis=1)
        order = np.argsort(sign * values, axis=1, kind="stable")
        out[f"{side}_indices"] = np.take_along_axis(picked, order, axis=1)
        out[f"{side}_scores"] = np.take_along_axis(values, order, axis=1)
    return out
