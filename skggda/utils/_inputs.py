"""Training and evaluation data, in memory or streamed: one validation path.

NumPy arrays, lists and DataFrames go through scikit-learn's
``validate_data`` as in any estimator. Everything else that is read by rows
is *streamed*: a NumPy memmap, an h5py dataset, a zarr array, a Dask array,
or any array-like with ``shape``, ``dtype`` and row slicing, and a
``torch.utils.data.Dataset`` whose items are ``(x, y)``. Streamed inputs are
wrapped in a :class:`RowReader` that the gradient engine slices like an
array; each block it reads is converted to float32 and checked by
scikit-learn's ``check_array`` (same errors, same messages) as it streams.
They are never densified: ``np.asarray`` on a reader is an error.

``fit`` validates the whole input in one streaming pass (:func:`check_fit_data`)
before any work, so a NaN in the last block fails the fit before anything is
overwritten; later reads of the same reader only convert.
"""

from __future__ import annotations

import mmap
from numbers import Integral

import numpy as np
import torch
from scipy.sparse import issparse
from sklearn.utils.validation import (
    _check_n_features,
    check_array,
    check_consistent_length,
    validate_data,
)

from .._engine import IndexedRows, take

# Rows per block of the validation scan (a few MB of float32 features).
_SCAN_ROWS = 1 << 16
_STREAMED_MODULES = ("h5py", "zarr", "dask")


def is_streamed(X) -> bool:
    """Whether ``X`` is read by row blocks instead of loaded (see the module docstring)."""
    if isinstance(X, (RowReader, np.memmap)):
        return True
    if isinstance(X, torch.utils.data.Dataset):
        return True
    if isinstance(X, (np.ndarray, torch.Tensor, list, tuple, dict)) or hasattr(X, "iloc"):
        return False
    if issparse(X):
        return False  # validate_data gives scikit-learn's sparse-input error
    root = type(X).__module__.split(".")[0]
    if root in _STREAMED_MODULES:
        return True
    return all(hasattr(X, name) for name in ("shape", "dtype", "__getitem__", "__len__"))


class RowReader:
    """Row blocks of a streamed array, converted to float32 and validated as they are read.

    Indexing with a slice or an integer array returns an ndarray; reads of
    unsorted indices are sorted first (h5py and zarr read increasing
    indices only, and memmaps read faster that way). Pickling keeps a
    reference to the file (memmap, h5py), never the data, so readers travel
    to joblib and Dask workers.

    Parameters
    ----------
    source : array-like
        The streamed array.
    dtype : numpy dtype, default=np.float32
    input_name : str, default="X"
        Name used in error messages.
    """

    def __init__(self, source, *, dtype=np.float32, input_name="X"):
        self.source = source
        self.dtype = np.dtype(dtype)
        self.input_name = input_name
        self.shape = tuple(int(s) for s in source.shape)
        self.ndim = len(self.shape)
        self.checked = False  # set once a full validation scan has passed

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, Integral):
            row = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= row < len(self):
                raise IndexError(f"row {key} is out of range for {len(self)} rows")
            return self[row:row + 1][0]
        return self._convert(self._read(key))

    def __array__(self, *args, **kwargs):
        raise TypeError(
            f"{type(self.source).__name__} input is streamed by row blocks and is never "
            "loaded whole; this code path needs an in-memory array."
        )

    def _read(self, key):
        if isinstance(key, slice):
            block = self.source[key]
        else:
            block = _read_rows(self.source, np.asarray(key, dtype=np.int64))
        return block.compute() if hasattr(block, "compute") else block

    def _convert(self, block):
        block = check_array(
            np.asarray(block), dtype=self.dtype, allow_nd=True, ensure_2d=False,
            ensure_all_finite=not self.checked, input_name=self.input_name,
        )
        # a block of a read-only memmap: torch wants writable memory
        return block if block.flags.writeable else block.copy()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["source"] = _file_reference(self.source)
        return state

    def __setstate__(self, state):
        state["source"] = _reopen(state["source"])
        self.__dict__.update(state)


class DatasetReader(RowReader):
    """The inputs ``x`` of a torch ``Dataset`` of ``(x, y)`` items, read in row blocks.

    Items are fetched with the dataset's ``__getitems__`` when it has one
    (torch's batched protocol), else one by one, and the ``x`` parts stacked.
    """

    def __init__(self, dataset, *, dtype=np.float32, input_name="X"):
        if len(dataset) == 0:
            raise ValueError("Found array with 0 sample(s) (shape=(0,)) while a minimum "
                             "of 1 is required.")
        first_x = np.asarray(_as_numpy(_item_input(dataset[0])))
        self.source = dataset
        self.dtype = np.dtype(dtype)
        self.input_name = input_name
        self.shape = (len(dataset), *first_x.shape)
        self.ndim = len(self.shape)
        self.checked = False

    def _read(self, key):
        index = range(*key.indices(len(self))) if isinstance(key, slice) else np.asarray(key)
        return _stack([_item_input(item) for item in _items(self.source, index)])

    def targets(self, start, stop):
        """The ``y`` parts of items ``start:stop`` as an array."""
        return np.asarray([_as_numpy(item[1]) for item in _items(self.source, range(start, stop))])


def _items(dataset, index):
    index = [int(i) for i in index]
    if hasattr(dataset, "__getitems__"):
        return dataset.__getitems__(index)
    return [dataset[i] for i in index]


def _item_input(item):
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ValueError(
            "A torch Dataset passed as X must yield (x, y) items, as skorch expects; "
            f"got an item of type {type(item).__name__}."
        )
    return item[0]


def _as_numpy(value):
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def _stack(values):
    return np.stack([np.asarray(_as_numpy(v)) for v in values])


def _read_rows(source, index):
    """``source[index]`` for any streamed array, reading increasing unique indices."""
    if index.size and np.all(index[1:] > index[:-1]):
        return _read_sorted(source, index)
    unique, inverse = np.unique(index, return_inverse=True)
    return np.asarray(_materialise(_read_sorted(source, unique)))[inverse]


def _read_sorted(source, index):
    if hasattr(source, "oindex"):  # zarr: orthogonal (row) selection
        return source.oindex[index]
    if type(source).__module__.startswith("h5py"):
        return source[index.tolist()] if index.size else source[0:0]
    return source[index]


def _materialise(block):
    return block.compute() if hasattr(block, "compute") else block


def _file_reference(source):
    """What to pickle for ``source``: a reopenable file reference when it has one."""
    if isinstance(source, np.memmap) and source.filename and source.flags.c_contiguous:
        base = source.offset - source.offset % mmap.ALLOCATIONGRANULARITY
        mapped = np.frombuffer(source._mmap, dtype=np.uint8).ctypes.data
        return ("memmap", source.filename, source.dtype.str, source.shape,
                base + source.ctypes.data - mapped)
    if type(source).__module__.startswith("h5py"):
        return ("h5py", source.file.filename, source.name)
    return ("object", source)


def _reopen(reference):
    kind = reference[0]
    if kind == "memmap":
        _, filename, dtype, shape, offset = reference
        return np.memmap(filename, dtype=np.dtype(dtype), mode="r", shape=shape, offset=offset)
    if kind == "h5py":
        import h5py

        _, filename, name = reference
        return h5py.File(filename, "r")[name]
    return reference[1]


# ---------------------------------------------------------------------------
# the validation path of the estimators
# ---------------------------------------------------------------------------


def as_reader(X) -> RowReader:
    """Wrap a streamed input in its reader (a reader is returned as is)."""
    if isinstance(X, RowReader):
        return X
    if isinstance(X, torch.utils.data.Dataset):
        return DatasetReader(X)
    if len(getattr(X, "shape", ())) < 2:
        raise ValueError(
            f"Expected 2D array or more, got {len(getattr(X, 'shape', ()))}D "
            f"{type(X).__name__} instead."
        )
    return RowReader(X)


def check_fit_data(estimator, X, y=None, *, y_required=True, preprocessed=False):
    """``(X, y)`` validated for ``fit``; the one fit-time validation path.

    In memory: scikit-learn's ``validate_data`` (float32, N-D allowed; only
    the shapes when ``preprocessed``: a Pipeline's first steps validate the
    raw input themselves). Streamed: ``X`` becomes a :class:`RowReader`
    after a full validation scan, and ``y`` (taken from the items when ``X``
    is a Dataset) an in-memory 1-D array. Sets ``n_features_in_`` either
    way. Targets are left to :func:`~skggda.utils._targets.check_fit_targets`.
    """
    if preprocessed or not is_streamed(X):
        checks = ({"skip_check_array": True} if preprocessed
                  else {"allow_nd": True, "dtype": np.float32})
        if y is None and not y_required:
            return _with_features(estimator, validate_data(estimator, X, **checks)), None
        X, y = validate_data(estimator, X, y, **checks)
        return _with_features(estimator, X), y
    X, y = _scan(as_reader(X), y)
    _check_n_features(estimator, X, reset=True)
    _drop_feature_names(estimator)
    if y is None and y_required:
        raise ValueError(
            f"{type(estimator).__name__} requires y to be passed, but the target y is None."
        )
    return X, y


def _with_features(estimator, X):
    """``X``, unless its samples are empty: ``ensure_min_features`` checks 2-D input only."""
    shape = getattr(X, "shape", ())
    if len(shape) > 2 and not np.prod(shape[1:]):
        raise ValueError(f"Found array with 0 feature(s) (shape={tuple(shape)}) while a "
                         f"minimum of 1 is required by {type(estimator).__name__}.")
    return X


def check_test_data(estimator, X, y=None, *, preprocessed=False):
    """``(X, y)`` validated for scoring, prediction or transformation (``reset=False``).

    ``y`` is returned as a 1-D array (or ``None``); for a Dataset ``X`` it is
    read from the items when not given.
    """
    if is_streamed(X) and not preprocessed:
        # the scan checks y against the rows (and reads it from a Dataset)
        X, y = _scan(as_reader(X), y, targets_needed=y is None)
        _check_n_features(estimator, X, reset=False)
        return X, y
    if preprocessed:
        X = validate_data(estimator, X, reset=False, skip_check_array=True)
    else:
        X = validate_data(estimator, X, reset=False, allow_nd=True, dtype=np.float32)
    if y is not None:
        y = _column(y, "y")
        check_consistent_length(X, y)
    return X, y


def _scan(reader, y, targets_needed=True):
    """Validate every block of ``reader`` once; gather ``y`` (from a Dataset when absent)."""
    from_items = y is None and targets_needed and isinstance(reader, DatasetReader)
    if not reader.checked:
        parts = []
        for start in range(0, len(reader), _SCAN_ROWS):
            stop = min(start + _SCAN_ROWS, len(reader))
            reader[start:stop]  # converts and raises on NaN, inf or bad dtypes
            if from_items:
                parts.append(reader.targets(start, stop))
        reader.checked = True
        if from_items:
            y = np.concatenate(parts)
    elif from_items:
        y = reader.targets(0, len(reader))
    if y is not None:
        y = _column(y, "y")
        check_consistent_length(reader, y)
    return reader, y


def _column(y, name):
    y = np.asarray(_materialise(y[:] if is_streamed(y) else y))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {y.shape}.")
    return y


def _drop_feature_names(estimator):
    # a streamed input has no column names: forget those of an earlier fit
    estimator.__dict__.pop("feature_names_in_", None)


class ReaderDataset(torch.utils.data.Dataset):
    """``(x, y)`` items of a reader and an in-memory target array, for skorch's training loop."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices):
        # torch's DataLoader fetches a whole batch through this: one block read
        index = np.asarray(indices, dtype=np.int64)
        X, y = self.X[index], self.y[index]
        if np.issubdtype(y.dtype, np.integer):
            y = y.astype(np.int64)  # losses want int64 class indices
        return list(zip(X, y))


def training_inputs(X, y):
    """``(X, y)`` as skorch's ``fit`` takes them: streamed inputs become a Dataset."""
    if isinstance(X, (RowReader, IndexedRows)):
        return ReaderDataset(X, y), None
    return X, y


def loaded(X):
    """``X`` as an in-memory array: what trains a scikit-learn model (it cannot stream)."""
    if isinstance(X, (RowReader, IndexedRows)):
        return X[0:len(X)]
    return X


def subset_rows(X, index):
    """Rows ``index`` of ``X``: a lazy view of a streamed input, a copy of an in-memory one."""
    if isinstance(X, (RowReader, IndexedRows)):
        return IndexedRows(X, index)
    return take(X, index)
