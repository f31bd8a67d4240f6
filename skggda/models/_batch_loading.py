"""Whole batches in one read: a DataLoader that indexes the data once per batch.

skorch's default iterator is a ``torch.utils.data.DataLoader`` over
:class:`skorch.dataset.Dataset`: it calls ``dataset[i]`` once per row and
collates the rows with ``default_collate`` (a ``torch.stack``), which costs a
Python round trip per row and dominates the epoch of a small network. Here
the DataLoader's sampler is a ``BatchSampler`` and the dataset a
:class:`BatchView` whose ``__getitem__`` takes the batch's whole index list
and slices ``X`` and ``y`` in one fancy index, returning tensors equal (dtype,
shape, values, C order) to what skorch's collation would have made.

The sampler is built the way ``DataLoader(shuffle=..., batch_size=...,
drop_last=..., generator=...)`` builds its own -- ``RandomSampler(dataset,
generator=generator)`` or ``SequentialSampler`` inside ``BatchSampler`` -- and
the loader's iterator draws its base seed from the same generator, so the
global (or given) torch RNG is consumed exactly as on skorch's path: the
same seed gives the same batches in the same order, hence bit-identical
training.

:func:`batch_loader` returns ``None`` (and the caller falls back to skorch's
own path) whenever the configuration or the data holds anything this cannot
reproduce exactly: another iterator class, a ``sampler``, ``batch_sampler``
or ``collate_fn``, a dataset other than skorch's own ``Dataset`` (or a
``Subset`` of one, as skorch's train/valid split makes), inputs that are
lists, pandas objects, sparse matrices or arrays of other dtypes.
"""

from __future__ import annotations

import numpy as np
import torch
from skorch.dataset import Dataset, get_len
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, Subset

# DataLoader options that mean the same with a BatchSampler as with batch_size;
# anything else (sampler, batch_sampler, collate_fn, ...) keeps skorch's path.
_PASSED_ON = frozenset({
    "num_workers", "pin_memory", "timeout", "worker_init_fn", "multiprocessing_context",
    "generator", "prefetch_factor", "persistent_workers", "pin_memory_device", "in_order",
})
_SAMPLING = frozenset({"batch_size", "shuffle", "drop_last"})
# dtypes for which torch.as_tensor of an array and of a list of its numpy
# scalars (what default_collate does with the rows of a 1-D array) agree
_DTYPES = frozenset(np.dtype(name) for name in (
    "bool", "int8", "uint8", "int16", "int32", "int64", "float16", "float32", "float64"))


def loader_options_supported(iterator, kwargs):
    """Whether an iterator class and its options can be served by :func:`batch_loader`.

    Parameters
    ----------
    iterator : type
        The net's ``iterator_train`` or ``iterator_valid``.
    kwargs : dict
        Its options (``get_params_for("iterator_train")``).

    Returns
    -------
    supported : bool
        ``True`` for torch's own ``DataLoader`` with options that mean the
        same per batch as per row.
    """
    return iterator is DataLoader and not set(kwargs) - _PASSED_ON - _SAMPLING


def batchable_array(a):
    """Whether ``a`` is an array or tensor :class:`BatchView` slices as skorch would.

    Parameters
    ----------
    a : object
        Inputs or targets (or one value of a dict of inputs).

    Returns
    -------
    batchable : bool
        ``True`` for a numpy array (memmaps included) of a plain numeric or
        bool dtype and for a dense CPU tensor, of at least one dimension.
    """
    if isinstance(a, np.ndarray):
        return a.ndim >= 1 and a.dtype in _DTYPES
    if isinstance(a, torch.Tensor):
        return a.ndim >= 1 and a.layout == torch.strided and a.device.type == "cpu"
    return False


def _batchable_inputs(X):
    if isinstance(X, dict):
        # only a plain dict: default_collate rebuilds other mappings by their type
        return type(X) is dict and len(X) > 0 and all(batchable_array(v) for v in X.values())
    return batchable_array(X)


class BatchView(torch.utils.data.Dataset):
    """``X`` and ``y`` of a skorch ``Dataset`` read a whole batch per ``__getitem__``.

    Parameters
    ----------
    X : ndarray, torch.Tensor or dict of them
        The inputs (memmaps are sliced per batch, never loaded whole).
    y : ndarray, torch.Tensor or None
        The targets; ``None`` gives skorch's placeholder targets.
    indices : ndarray of int, default=None
        The rows of ``X`` and ``y`` this view covers, in order (a ``Subset``'s
        indices); ``None`` for all of them.
    """

    def __init__(self, X, y, indices=None):
        self.X, self.y, self.indices = X, y, indices

    def __len__(self):
        return len(self.indices) if self.indices is not None else get_len(self.X)

    def __getitem__(self, batch):
        """``[X_batch, y_batch]`` of the rows ``batch`` (a list of positions), as tensors.

        Parameters
        ----------
        batch : list of int
            Positions in this view, as a ``BatchSampler`` yields them.

        Returns
        -------
        batch : list of two torch.Tensor (or dict and tensor)
            What skorch's per-row path collates for the same rows: a list,
            inputs first.
        """
        rows = np.asarray(batch, dtype=np.intp)
        if self.indices is not None:
            rows = self.indices[rows]
        if self.y is None:
            # skorch's Dataset gives every row the placeholder torch.Tensor([0]),
            # which default_collate stacks to (batch, 1) of the default dtype
            y = torch.zeros(len(rows), 1, dtype=torch.get_default_dtype())
        else:
            y = _take(self.y, rows)
        return [_take(self.X, rows), y]


def _take(a, rows):
    if isinstance(a, dict):
        return {key: _take(value, rows) for key, value in a.items()}
    if isinstance(a, torch.Tensor):
        # torch.stack of the rows is contiguous; so is this (a no-op normally)
        return a[torch.from_numpy(rows)].contiguous()
    # fancy indexing copies just these rows (a memmap reads them from its file);
    # C order as torch.stack makes it, so kernels see the same layout
    return torch.as_tensor(np.ascontiguousarray(a[rows]))


def batch_view(dataset):
    """A :class:`BatchView` of ``dataset``, or ``None`` when it cannot be reproduced exactly.

    Parameters
    ----------
    dataset : torch Dataset
        What skorch passes to ``get_iterator``: its ``Dataset`` (built by
        ``get_dataset``), a ``Subset`` of one (``train_split``), or the
        user's own dataset.

    Returns
    -------
    view : BatchView or None
        ``None`` for anything but a skorch ``Dataset`` (exactly that class:
        a subclass may transform rows) or a ``Subset`` of one, holding
        batchable inputs and targets (see :func:`batchable_array`).
    """
    indices = None
    if type(dataset) is Subset:
        indices = np.asarray(dataset.indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            return None
        indices = indices.astype(np.intp, copy=False)
        dataset = dataset.dataset
    if type(dataset) is not Dataset or dataset.X_is_ndframe:
        return None
    X, y = dataset.X, dataset.y
    if not _batchable_inputs(X) or not (y is None or batchable_array(y)):
        return None
    # a Dataset given another length (dataset__length) indexes rows skorch's way only
    if len(dataset) != get_len(X):
        return None
    return BatchView(X, y, indices)


def batch_loader(dataset, iterator, kwargs):
    """A DataLoader yielding the batches skorch's ``iterator(dataset, **kwargs)`` would.

    Parameters
    ----------
    dataset : torch Dataset
        As skorch passes it to ``get_iterator``.
    iterator : type
        The net's iterator class for this pass.
    kwargs : dict
        Its options, with ``batch_size`` resolved (``-1`` already made the
        dataset's length).

    Returns
    -------
    loader : torch.utils.data.DataLoader or None
        A loader over a :class:`BatchView` whose ``BatchSampler`` draws the
        same batches in the same order (same generator, same draws) as
        ``DataLoader(dataset, **kwargs)``; ``None`` when the options or the
        data need skorch's own path.
    """
    if not loader_options_supported(iterator, kwargs):
        return None
    view = batch_view(dataset)
    if view is None:
        return None
    options = {key: value for key, value in kwargs.items() if key in _PASSED_ON}
    generator = options.get("generator")
    # DataLoader's own choice: shuffle=None or False is sequential
    if kwargs.get("shuffle"):
        sampler = RandomSampler(view, generator=generator)
    else:
        sampler = SequentialSampler(view)
    batches = BatchSampler(sampler, kwargs["batch_size"], bool(kwargs.get("drop_last", False)))
    # batch_size=None: the DataLoader hands each index list to view[...] whole
    # and only converts (the view already returns tensors); pin_memory as given
    return DataLoader(view, batch_size=None, sampler=batches, **options)
