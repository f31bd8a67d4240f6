"""Moving data to the module's device in batches.

The engine never holds more than one batch of inputs on the device: arrays stay
where the caller keeps them (host memory, or on disk behind a row reader) and
are sliced, converted and transferred one batch at a time.

Inputs are anything that reads by rows: a NumPy array or torch tensor, a dict
of those (skorch's keyword inputs), or any object with ``__len__`` whose
``__getitem__`` takes a slice or an integer index array and returns an array
(the estimators wrap memmaps, h5py/zarr/Dask arrays and torch Datasets in
such readers). :class:`IndexedRows` is a lazy row subset of any of them.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
import torch
from torch import nn


_MODULE_LOCKS = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def module_lock(module: nn.Module):
    """A re-entrant lock per module: passes and probes over one module run one at a time.

    Hooks registered on a module see every thread's forward calls, and a
    pass toggles the module's train/eval mode; two threads scoring with
    one fitted net would otherwise read each other's activations.
    """
    with _LOCKS_GUARD:
        lock = _MODULE_LOCKS.get(module)
        if lock is None:
            lock = _MODULE_LOCKS[module] = threading.RLock()
        return lock


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter (CPU for parameter-free modules)."""
    for param in module.parameters():
        return param.device
    return torch.device("cpu")


def module_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype of the module's first floating parameter."""
    for param in module.parameters():
        if param.is_floating_point():
            return param.dtype
    return torch.get_default_dtype()


def n_samples(X) -> int:
    """Number of samples in an array, tensor, row reader, or dict of those."""
    if isinstance(X, dict):
        return n_samples(next(iter(X.values())))
    return len(X)


def take(X, index: np.ndarray):
    """Rows ``index`` of an array, tensor, row reader or dict of those."""
    if isinstance(X, dict):
        return {key: take(value, index) for key, value in X.items()}
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(index, device=X.device)]
    return X[np.asarray(index)]


def rows(X, start: int, stop: int):
    """Rows ``start:stop`` of an array, tensor, row reader or dict of those."""
    if isinstance(X, dict):
        return {key: rows(value, start, stop) for key, value in X.items()}
    return X[start:stop]


class IndexedRows:
    """The rows ``index`` of ``X``, read only when sliced (a lazy ``take``).

    Passes over a subset (a sample for K-Means, a TRAK member's half) read
    it batch by batch instead of copying the subset into memory first.
    """

    def __init__(self, X, index):
        self.X, self.index = X, np.asarray(index)

    def __len__(self):
        return len(self.index)

    @property
    def shape(self):
        return (len(self.index), *_row_shape(self.X))

    def __getitem__(self, key):
        if isinstance(key, slice):
            return take(self.X, self.index[key])
        return take(self.X, self.index[np.asarray(key)])


def _row_shape(X):
    if isinstance(X, dict):
        return ()
    return tuple(X.shape[1:])


def to_device(X, device: torch.device, dtype: torch.dtype | None = None):
    """Convert a batch to tensors on ``device``; floating arrays take ``dtype``."""
    if isinstance(X, dict):
        return {key: to_device(value, device, dtype) for key, value in X.items()}
    if isinstance(X, np.ndarray) and not X.flags.writeable:
        X = np.array(X)  # a batch-sized copy: torch wants writable memory
    tensor = torch.as_tensor(X)
    if dtype is not None and tensor.is_floating_point():
        return tensor.to(device=device, dtype=dtype, non_blocking=True)
    return tensor.to(device=device, non_blocking=True)


def targets_to_device(y, device: torch.device):
    """A batch of targets on ``device``; integer labels (stored compactly) become int64."""
    tensor = to_device(y, device)
    if not tensor.is_floating_point() and tensor.dtype != torch.int64:
        tensor = tensor.long()
    return tensor


def batch_slices(n: int, batch_size: int):
    """Consecutive ``(start, stop)`` pairs covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


def forward(module: nn.Module, X):
    """Call ``module`` the way skorch does: dict batches are keyword arguments."""
    if isinstance(X, dict):
        return module(**X)
    return module(X)
