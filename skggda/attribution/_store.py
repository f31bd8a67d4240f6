"""The group store: every group's training gradient, kept after ``fit``.

Per-test-point attribution (``attribute``, ``top_groups``) scores each query
against every group. Without a store that needs the group gradients again
for every call -- a pass over the training data per call, or per block of
queries when they do not fit in memory. Methods with a fixed curvature keep
them instead: ``fit`` makes one more pass and stores, for every group ``k``,
its gradient sum ``G_k``. A score is ``q^T P G_k`` with the method's inverse
curvature ``P`` (the identity for TracIn; ``(H + damping I)^{-1}`` for the
exact Hessian, K-FAC and EK-FAC, all symmetric), so a query costs its own
gradient, ``P q`` and one product with the store. Preconditioning the
queries rather than the store keeps the damping free after ``fit``
(``set_params(damping=...)`` re-solves, as without a store) and costs a
few rotations per query.

The store holds exact gradients, or projected ones when the attributor
projects (``n_components``: TracIn, and K-FAC / EK-FAC fitted in the
projected space). Where it lives:

* in memory, when it fits :data:`STORE_BYTES` (256 MiB) -- or, for an
  exact store that does not fit and no ``memory`` folder, nowhere: the
  estimators stream the training data per call as before;
* on disk, when the attributor's ``memory`` names a folder (scikit-learn's
  ``memory=`` is the model): a ``.npy`` file there, written block by block
  and read as a memory map, held by a :class:`DiskStore` handle. Every
  product reads it in row blocks of :data:`QUERY_BLOCK_BYTES`, so memory
  stays at one block whatever its size.

It is part of the fitted state, so :mod:`skggda.io` saves it: an in-memory
store in the file, a :class:`DiskStore` as its file name and SHA-256, which
``load`` checks against the folder's file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid

import numpy as np
import torch

from .. import _engine
from ..utils._distributed import cluster_for, training_pass
from ._numerics import check_finite_state

#: Largest store kept in memory, in bytes (all checkpoints together).
STORE_BYTES = 1 << 28
#: Rows of a store, or of attributions, handled at a time, in bytes.
QUERY_BLOCK_BYTES = 1 << 26
_NAME = re.compile(r"skggda-store-[0-9a-f]{32}\.npy")


class DiskStore:
    """A group store in a ``.npy`` file of the attributor's ``memory`` folder.

    Parameters
    ----------
    folder : str
        The folder (``memory``) that holds the file.
    name : str
        The file's name, ``skggda-store-<32 hex digits>.npy``.
    shape : tuple of int
        ``(n_groups, n_features)``.
    dtype : str
        NumPy dtype string of the entries.
    sha256 : str
        SHA-256 of the whole file, taken when it was written.
    """

    def __init__(self, folder, name, shape, dtype, sha256):
        self.folder = str(folder)
        self.name = str(name)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = str(dtype)
        self.sha256 = str(sha256)

    @property
    def path(self):
        return os.path.join(self.folder, self.name)

    def open(self):
        """The stored array, read-only, as a memory map."""
        return np.load(self.path, mmap_mode="r", allow_pickle=False)

    def verify(self):
        """Raise ``ValueError`` unless the folder's file is the one this handle wrote."""
        fields = (self.folder, self.name, self.dtype, self.sha256)
        if not (all(isinstance(f, str) for f in fields) and isinstance(self.shape, tuple)
                and len(self.shape) == 2 and all(type(n) is int for n in self.shape)):
            raise ValueError("A group store handle must hold a folder, a name, a 2-d shape, "
                             "a dtype and a SHA-256.")
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r:.60} is not the name of a skggda group store.")
        if not os.path.isfile(self.path):
            raise ValueError(f"The group store {self.path} is missing: the fitted estimator "
                             "keeps it in its memory folder, which must travel with the file.")
        if _file_sha256(self.path) != self.sha256:
            raise ValueError(f"The group store {self.path} is not the one the estimator "
                             "wrote (its SHA-256 differs).")
        array = self.open()
        if array.shape != self.shape or array.dtype != np.dtype(self.dtype):
            raise ValueError(f"The group store {self.path} holds {array.shape} "
                             f"{array.dtype}, not {self.shape} {self.dtype}.")

    def __repr__(self):
        return f"DiskStore({self.path!r}, shape={self.shape}, dtype={self.dtype})"


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def memory_folder(memory):
    """The folder of a ``memory`` parameter: a path, or a ``joblib.Memory``'s location."""
    if memory is None:
        return None
    location = getattr(memory, "location", memory)
    return None if location is None else os.fspath(location)


def keeps_store(attributor, X, n_params, itemsize, n_copies=1):
    """Whether ``attributor`` keeps an exact store of ``n_copies`` of ``(n_groups, n_params)``.

    In memory when they fit :data:`STORE_BYTES`, on disk whenever a
    ``memory`` folder is named. On a Dask cluster the workers build it and
    their partial sums come back to this process in float64: it is kept
    when that fits :data:`STORE_BYTES`.
    """
    size = attributor.n_groups_ * n_params * n_copies
    if cluster_for(X, getattr(attributor, "n_jobs", None)) is not None:
        return size * 8 <= STORE_BYTES
    on_disk = memory_folder(getattr(attributor, "memory", None)) is not None
    return on_disk or size * itemsize <= STORE_BYTES


class StoreWriter:
    """An ``(n_rows, n_features)`` store filled block by block, in memory or on disk."""

    def __init__(self, memory, n_rows, n_features, dtype, what="group gradients"):
        self.what = what  # names the values in the error a non-finite one raises
        self.folder = memory_folder(memory)
        self.dtype = np.dtype(dtype)
        shape = (int(n_rows), int(n_features))
        if self.folder is None:
            self.array = np.empty(shape, dtype=self.dtype)
            return
        os.makedirs(self.folder, exist_ok=True)
        needed = shape[0] * shape[1] * self.dtype.itemsize
        free = shutil.disk_usage(self.folder).free
        if needed > free:
            raise MemoryError(f"The group store needs {needed / 2**30:.1f} GiB but "
                              f"{self.folder} has {free / 2**30:.1f} GiB free; name another "
                              "memory folder or project (n_components).")
        self.name = f"skggda-store-{uuid.uuid4().hex}.npy"
        self.array = np.lib.format.open_memmap(os.path.join(self.folder, self.name),
                                               mode="w+", dtype=self.dtype, shape=shape)

    def write(self, rows, values):
        values = check_finite_state(values, self.what)
        self.array[rows] = values.cpu().numpy() if torch.is_tensor(values) else values

    def finish(self):
        """The in-memory array, or a :class:`DiskStore` handle to the flushed file."""
        if self.folder is None:
            return self.array
        shape = self.array.shape
        self.array.flush()
        del self.array
        path = os.path.join(self.folder, self.name)
        return DiskStore(self.folder, self.name, shape, self.dtype.str, _file_sha256(path))


def stored_array(store):
    """The array of an in-memory store or of a :class:`DiskStore` (a read-only memory map)."""
    return store.open() if isinstance(store, DiskStore) else store


def _row_slices(n_rows, row_bytes):
    """Consecutive row slices of at most :data:`QUERY_BLOCK_BYTES` (one row at least)."""
    step = max(1, QUERY_BLOCK_BYTES // max(1, row_bytes))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def row_blocks(store):
    """``(rows, block)`` of a store, each block at most :data:`QUERY_BLOCK_BYTES`."""
    array = stored_array(store)
    on_disk = isinstance(store, DiskStore)
    for rows in _row_slices(array.shape[0], array.shape[1] * array.dtype.itemsize):
        # a block of a memory map is read from disk here, once, into a writable copy;
        # an in-memory store's block is a view
        yield rows, np.array(array[rows]) if on_disk else array[rows]


def build_store(attributor, plan):
    """Each group's gradient sum: ``(n_groups, n_params)``, in memory or on disk.

    One pass over the training data, in blocks of groups
    (``attributor._group_gradient_blocks``), or on the Dask workers.
    """
    X, y = attributor._X_fit, attributor._y_fit
    n_jobs = getattr(attributor, "n_jobs", None)
    if cluster_for(X, n_jobs) is not None:
        (flat,) = training_pass("gradients", plan, X, y, attributor.labels_,
                                attributor.n_groups_, n_jobs=n_jobs,
                                batch_size=plan.batch_size(attributor.batch_size),
                                progress=attributor._progress("group gradients"))
        writer = StoreWriter(getattr(attributor, "memory", None), *flat.shape,
                             _numpy_dtype(flat))
        writer.write(slice(None), flat)
        return writer.finish()
    writer = None
    for groups, grads in attributor._group_gradient_blocks(plan):
        flat = plan.flatten(grads)
        if writer is None:  # in the module's dtype: float64 for a converted scikit-learn model
            writer = StoreWriter(getattr(attributor, "memory", None), attributor.n_groups_,
                                 flat.shape[1], _numpy_dtype(flat))
        writer.write(groups, flat)
    return writer.finish()


def store_features(attributor, features):
    """A store of projected group gradients ``(n_groups, r)`` (a tensor), written in row
    blocks (each checked finite as it is written)."""
    if memory_folder(getattr(attributor, "memory", None)) is None and \
            features.device.type == "cpu":
        # in memory, the pass's own tensor is the store: no second n_groups x r copy
        # (245 MB and its page faults for projected EK-FAC at g = 1 on 60,000 rows)
        for rows in _row_slices(features.shape[0], features.shape[1] * features.element_size()):
            check_finite_state(features[rows], "projected group gradients")
        return features.numpy()
    writer = StoreWriter(getattr(attributor, "memory", None), features.shape[0],
                         features.shape[1], _numpy_dtype(features),
                         what="projected group gradients")
    for rows in _row_slices(features.shape[0], features.shape[1] * features.element_size()):
        writer.write(rows, features[rows])
    return writer.finish()


def query_products(queries, store, out, *, device):
    """``out[i, j] = queries[i] . store[j]``: one read of the store, in row blocks.

    ``queries`` is a ``(m, d)`` tensor on ``device``; ``out`` a
    ``(m, n_groups)`` array, written in place.
    """
    for rows, block in row_blocks(store):
        stored = torch.as_tensor(block, device=device)
        out[:, rows] = (queries.to(stored.dtype) @ stored.T).cpu().numpy()
    return out


def attribute_with_store(rows_plan, plan, X, y, store, *, batch_size, progress=None,
                         project=None, transform=None):
    """``(n_queries, n_groups)`` float32: every query's gradient times the store.

    The queries' (projected, with ``project``) gradients are gathered for
    as many queries as fit :data:`QUERY_BLOCK_BYTES`, mapped by
    ``transform`` (a preconditioner, ``(m, d) -> (m, d)``), then the store
    is read once for all of them: one pass over a disk store per block of
    queries.
    """
    device = _engine.module_device(plan.module)
    n_groups, width = store.shape  # an array's or a DiskStore's
    out = np.empty((len(X), n_groups), dtype=np.float32)
    for queries in _row_slices(len(X), width * 4):  # the queries' gradients, float32
        gradients = _query_gradients(rows_plan, plan, X[queries], y[queries],
                                     batch_size=batch_size, progress=progress, project=project)
        if transform is not None:
            gradients = transform(gradients)
        query_products(gradients, store, out[queries], device=device)
    return out


def _query_gradients(rows_plan, plan, X, y, *, batch_size, progress, project):
    if project is not None:
        return _engine.projected_gradients(rows_plan, X, y, project, batch_size=batch_size,
                                           progress=progress)
    # the batches come in row order (no shuffling): their gradients stack
    return torch.cat([plan.flatten(grads) for _, grads in _engine.iter_per_sample_gradients(
        rows_plan, X, y, batch_size=batch_size, progress=progress)])


def score_with_store(vector, store):
    """``(n_groups,)`` float64: a flat property gradient (or its projection) times the store.

    The products are taken in the store's dtype, as the training-set passes
    take theirs: gradients that overflow it (inputs of extreme magnitude)
    give non-finite scores, which the estimators refuse.
    """
    out = np.empty(store.shape[0])
    for rows, block in row_blocks(store):
        stored = torch.as_tensor(block, device=vector.device)
        out[rows] = (stored @ vector.to(stored.dtype)).double().cpu().numpy()
    return out


def squared_norms(store):
    """``(n_groups,)`` float64: each stored row's squared norm."""
    out = np.empty(store.shape[0])
    for rows, block in row_blocks(store):
        block = block.astype(np.float64)
        out[rows] = np.einsum("ij,ij->i", block, block)
    return out


def _numpy_dtype(tensor):
    return torch.empty(0, dtype=tensor.dtype).numpy().dtype


def extremes(rows, n):
    """The ``n`` highest and ``n`` lowest entries of every row, sorted, with their columns."""
    # copies of the first n columns: the full int64 partitions are freed at once
    helpful = np.argpartition(-rows, n - 1, axis=1)[:, :n].copy()
    harmful = np.argpartition(rows, n - 1, axis=1)[:, :n].copy()
    out = {}
    for side, picked, sign in (("helpful", helpful, -1), ("harmful", harmful, 1)):
        values = np.take_along_axis(rows, picked, axis=1)
        order = np.argsort(sign * values, axis=1, kind="stable")
        out[f"{side}_indices"] = np.take_along_axis(picked, order, axis=1)
        out[f"{side}_scores"] = np.take_along_axis(values, order, axis=1)
    return out
