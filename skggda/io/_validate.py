"""Checks on a loaded estimator: what the file holds must be what skggda could have saved.

Building restores values one by one; these checks look at the result as a
whole. Every scikit-learn style estimator in it must pass its own parameter
constraints, a fitted attributor must hold a fitted model and integer group
labels, and no fitted value may be NaN or infinite where the estimator
could not have produced one (skggda refuses non-finite scores, weights and
curvatures when it fits).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator
from skorch import NeuralNet

from ._trust import UnsafeFileError, type_name

#: Fitted attributes that may legitimately hold non-finite numbers.
NON_FINITE_ALLOWED = {
    "best_loss_",  # scikit-learn's MLP: inf when it validated on a held-out split
    "validation_scores_", "best_validation_score_",
}


def check_loaded(estimator):
    """Refuse a loaded ``estimator`` whose parts are inconsistent or non-finite."""
    from .._engine import KFACPreconditioner
    from ..attribution._store import DiskStore

    _check_fitted_types(estimator)
    for where, obj in _objects(estimator):
        if isinstance(obj, KFACPreconditioner):
            _check_projected_layout(where, obj)
        if isinstance(obj, DiskStore):
            # the store's data is in the memory folder: it must be the file written at fit
            try:
                obj.verify()
            except (ValueError, OSError) as exc:
                raise UnsafeFileError(f"{where}: {exc}") from None
        if isinstance(obj, BaseEstimator) and hasattr(obj, "_parameter_constraints"):
            try:
                obj._validate_params()
            except (ValueError, TypeError, AttributeError) as exc:
                raise UnsafeFileError(f"{where} has a parameter no estimator could have: "
                                      f"{exc}") from None
        _check_finite(where, obj)


def _objects(root):
    """``(where, object)`` for every object with attributes reachable from ``root``."""
    seen, stack = set(), [("the estimator", root)]
    while stack:
        where, obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend((where, v) for v in obj)
        elif isinstance(obj, dict):
            stack.extend((f"{where}[{k!r:.20}]", v) for k, v in obj.items())
        elif isinstance(obj, NeuralNet):
            yield where, obj
        elif hasattr(obj, "__dict__") and not isinstance(obj, type) and not callable(obj):
            yield where, obj
            stack.extend((f"{where}.{k}", v) for k, v in vars(obj).items())
        elif isinstance(obj, np.ndarray) and obj.dtype == object:
            stack.extend((where, v) for v in obj.ravel())


def _check_finite(where, obj):
    if isinstance(obj, NeuralNet):
        module = getattr(obj, "module_", None)
        values = module.state_dict().items() if isinstance(module, torch.nn.Module) else ()
        for name, tensor in values:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise UnsafeFileError(f"{where}: the net's weight {name} is not finite.")
        return
    # an estimator's parameters may be anything its constraints allow (checked above);
    # everything else an estimator holds, and all of a state object, was fitted
    estimator = isinstance(obj, BaseEstimator)
    for name, value in vars(obj).items():
        fitted = not estimator or name.endswith("_") or name.startswith("_")
        if fitted and name not in NON_FINITE_ALLOWED and not _finite(value):
            raise UnsafeFileError(f"{where}.{name} holds NaN or infinite values, which "
                                  f"{type_name(type(obj))} does not produce.")


def _finite(value, depth=0):
    if isinstance(value, (float, np.floating)):
        return bool(np.isfinite(value))
    if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
        return bool(np.isfinite(value).all())
    if torch.is_tensor(value) and (value.is_floating_point() or value.is_complex()):
        return bool(torch.isfinite(value).all())
    if depth < 4 and isinstance(value, (list, tuple)):
        return all(_finite(v, depth + 1) for v in value)
    if depth < 4 and isinstance(value, dict):
        return all(_finite(v, depth + 1) for v in value.values())
    return True


def _check_fitted_types(estimator):
    from ..attribution import BaseAttributor
    from ..grouping import BaseGrouper
    from ..models import ConvertedModel

    model = getattr(estimator, "estimator_", None)
    if isinstance(estimator, BaseAttributor) and "estimator_" in vars(estimator) \
            and not isinstance(model, (NeuralNet, ConvertedModel)):
        raise UnsafeFileError(f"The attributor's estimator_ is a {type(model).__name__}, "
                              "not a net.")
    grouper = vars(estimator).get("grouper_")
    if grouper is not None and not isinstance(grouper, BaseGrouper):
        raise UnsafeFileError(f"The attributor's grouper_ is a {type(grouper).__name__}.")
    labels = vars(estimator).get("labels_")
    if labels is not None and not (isinstance(labels, np.ndarray) and labels.ndim == 1
                                   and labels.dtype.kind in "iu"):
        raise UnsafeFileError("labels_ must be a 1-d array of integer group labels.")


def _check_projected_layout(where, preconditioner):
    """A projected K-FAC's block dimensions must match its blocks: one per block, a
    Kronecker block's ``(r_out, r_in)`` its eigenvalues' shape, a dense block ``r x r``."""
    from .._engine import DenseBlock, KroneckerBlock

    dims, shapes, blocks = (preconditioner.dims, preconditioner.factor_shapes,
                            preconditioner.blocks)
    if dims is None and shapes is None:
        return
    sound = (isinstance(dims, list) and isinstance(shapes, list) and isinstance(blocks, list)
             and len(dims) == len(shapes) == len(blocks)
             and all(type(d) is int and d >= 0 for d in dims))
    for dim, shape, block in zip(dims, shapes, blocks) if sound else ():
        if shape is None:
            sound = sound and isinstance(block, DenseBlock) \
                and tuple(block.eigenvalues.shape) == (dim,) \
                and tuple(block.basis.shape) == (dim, dim)
        else:
            sound = sound and isinstance(block, KroneckerBlock) and isinstance(shape, tuple) \
                and tuple(block.eigenvalues.shape) == shape and dim == shape[0] * shape[1] \
                and tuple(block.q_out.shape) == (shape[0],) * 2 \
                and tuple(block.q_in.shape) == (shape[1],) * 2
    if not sound:
        raise UnsafeFileError(f"{where}: the projected K-FAC's block dimensions do not "
                              "match its blocks.")
