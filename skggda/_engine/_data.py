"""Moving data to the module's device in batches.

The engine never holds more than one batch of inputs on the device: arrays stay
where the caller keeps them (host memory, or on disk behind a row reader) and
are sliced, converted and transferred one batch at a time.

Inputs are anything that reads by rows: a NumPy array or torch tensor, a dict
of those (skorch's keyword inputs), or any object with ``__len__`` whose
``__getitem__`` takes a slice or an integer index array and returns an array
(the estimators wrap memmaps, h5py/zarr/Dask arrays and torch Datasets in
such readers). :class:`IndexedRows` is a lazy row subset of any of them.

On CUDA the passes read the next batch on a thread into pinned memory while
the device works (:func:`prefetching`); on the CPU they read in the loop.
"""

from __future__ import annotations

import queue
import threading
import weakref

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten
from torch.utils.checkpoint import checkpoint


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


def host_batch(X, pin=None):
    """A batch as CPU tensors, each passed through ``pin`` (e.g. ``Tensor.pin_memory``) if given.

    Read-only arrays (memmaps) are copied first: torch wants writable memory.
    Tensors already on an accelerator are returned as they are.
    """
    if isinstance(X, dict):
        return {key: host_batch(value, pin) for key, value in X.items()}
    if isinstance(X, np.ndarray) and not X.flags.writeable:
        X = np.array(X)
    tensor = torch.as_tensor(X)
    if pin is None or tensor.device.type != "cpu":
        return tensor
    return pin(tensor)


def prefetch_pin(device):
    """How batches are pinned for ``device``: ``Tensor.pin_memory`` on CUDA, else ``None``.

    ``None`` turns :func:`prefetching` off: on the CPU there is no transfer to
    overlap with the computation.
    """
    return torch.Tensor.pin_memory if torch.device(device).type == "cuda" else None


def prefetching(items, load, pin=None):
    """Yield ``load(item, pin)`` for every item, loaded one item ahead on a thread when ``pin``.

    With ``pin=None`` (the CPU) this is a plain loop on the calling thread:
    nothing to overlap, and no thread to pay for. With a ``pin`` function
    (CUDA: ``Tensor.pin_memory``) a background thread reads the next batch
    from disk into pinned host memory while the device works on this one,
    so that the caller's ``non_blocking`` upload is asynchronous. Pinned
    buffers come from PyTorch's caching host allocator, which does not hand
    a buffer out again while a copy from it is still in flight.

    Batches come out in the order of ``items``. An exception raised by
    ``load`` is raised here at the batch that raised it; closing the
    generator early (``break``, an error in the caller's loop) stops and
    joins the thread.
    """
    if pin is None:
        for item in items:
            yield load(item, None)
        return
    done = object()
    ready = queue.Queue(maxsize=1)  # one batch ahead: host memory stays at two batches
    stop = threading.Event()

    def put(entry):
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if stop.is_set() or not put((True, load(item, pin))):
                    return
        except BaseException as error:  # noqa: BLE001 -- handed to the consumer
            put((False, error))
            return
        put((True, done))

    thread = threading.Thread(target=work, name="skggda-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = ready.get()
            if not ok:
                raise value
            if value is done:
                return
            yield value
    finally:
        stop.set()
        thread.join()


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


class BatchedForward(nn.Module):
    """A module that runs its inputs ``batch_size`` rows at a time.

    Whole-data functions (:func:`~skggda._engine._passes.function_gradient`,
    :func:`skggda.properties.property_terms`) are handed this wrapper, so
    that the activations of the whole evaluation set are never held at once.
    Calling it splits every tensor argument with the batch's leading
    dimension, runs the module on each piece (under non-reentrant activation
    checkpointing when a gradient is recorded) and concatenates the outputs.
    It is an ``nn.Module`` in the wrapped module's train/eval mode, its
    parameters are the wrapped module's (named ``module.<name>``), and any
    other attribute is read from the wrapped module. Checkpointing
    recomputes each piece's forward pass during the backward pass (about a
    third more work), in eval mode, so the recomputation is exact.
    """

    def __init__(self, module, batch_size):
        super().__init__()
        self.module = module
        self.batch_size = max(1, int(batch_size))
        self.training = module.training

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["module"], name)

    def forward(self, *args, **kwargs):
        """The module's output on the whole input, computed ``batch_size`` rows at a time."""
        leaves = [t for t in (*args, *kwargs.values()) if torch.is_tensor(t) and t.dim()]
        n = leaves[0].shape[0] if leaves else 0
        if n <= self.batch_size:
            return self.module(*args, **kwargs)

        def cut(t, a, b):
            return t[a:b] if torch.is_tensor(t) and t.dim() and t.shape[0] == n else t

        outputs = []
        for start, stop in batch_slices(n, self.batch_size):
            piece_args = [cut(t, start, stop) for t in args]
            piece_kwargs = {key: cut(t, start, stop) for key, t in kwargs.items()}
            if torch.is_grad_enabled():
                outputs.append(checkpoint(self.module, *piece_args, use_reentrant=False,
                                          **piece_kwargs))
            else:
                outputs.append(self.module(*piece_args, **piece_kwargs))
        flat = [tree_flatten(out)[0] for out in outputs]
        return tree_unflatten([torch.cat(parts) for parts in zip(*flat)],
                              tree_flatten(outputs[0])[1])
