"""Training-set passes split into row blocks, in this process or on Dask workers.

Every training-set pass is a sum over rows, so it splits into row blocks
whose partial results add up: a block's group sums (``k`` TracIn scores, a
``k x r`` block of projected gradients), its additive totals (an ``r x r``
Fisher Gram, K-Means counts and inertia), and its per-row outputs (K-Means
labels and features, kept in row order). The estimators call
:func:`training_pass` (attributors) or :func:`map_row_blocks` (groupers);
both run in this process unless distribution applies:

* ``X`` is a Dask array: its row chunks are the blocks, computed by the
  active ``distributed`` client if there is one, else by Dask's default
  scheduler;
* a Dask joblib backend is active (``joblib.parallel_config(backend="dask")``)
  and the estimator's ``n_jobs`` is set (not 1): the row range is cut into a
  few blocks per worker thread. Readers (memmap, h5py, zarr, Dataset) travel
  by file reference and are read on the workers; in-memory arrays are
  embedded in the graph chunk by chunk, as ``dask.array.from_array`` does.

The per-block work is one pure function (:func:`_run_block`) of the pickled
model state (one key of the task graph, fetched once by each worker and
rebuilt from the graph if every worker holding it dies) and a
block: it unpickles a private copy of the state (tasks sharing a worker's
threads never share a module with hooks on it), runs the engine's own pass on
the block's rows with its groups renumbered ``0..g-1`` (a block's partial is
``O(block)``, not ``O(k)``, at group size 1), and returns float64 partials. A
random projection travels as its seed and is regenerated on the worker.
Partials are added by a tree of ``SPLIT_EVERY``-ary sums inside the same task
graph, so the order of blocks changes the result by rounding only, and a
block lost with a dying worker is simply recomputed by Dask.

Dask and ``distributed`` are optional and imported only here, only when a
pass is distributed; the engine never imports them.
"""

from __future__ import annotations

import os
import sys
import uuid
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import _engine
from ._inputs import RowReader

#: Blocks per worker thread: enough to balance uneven workers (a worker
#: may hold a queued block while another runs out of work: the tail is one
#: block) and make a retried block cheap, few enough that per-task costs
#: (milliseconds) stay negligible.
BLOCKS_PER_THREAD = 8
#: Blocks never hold fewer rows than this (unless the data is smaller).
MIN_BLOCK_ROWS = 1024
#: Partials added per node of the reduction tree.
SPLIT_EVERY = 4


def _import_dask():
    try:
        import dask
    except ImportError as exc:  # pragma: no cover - exercised with dask hidden
        raise ImportError(
            "Splitting a training-set pass over Dask workers needs dask and distributed: "
            "pip install 'skggda[dask]'."
        ) from exc
    return dask


# ---------------------------------------------------------------------------
# when to distribute
# ---------------------------------------------------------------------------


@dataclass
class _Cluster:
    """Where the blocks run: a ``distributed`` client, or ``None`` for Dask's default scheduler."""

    client: object = None

    @property
    def n_threads(self) -> int:
        if self.client is None:
            return os.cpu_count() or 1
        return max(1, sum(self.client.nthreads().values()))


def cluster_for(X, n_jobs=None):
    """The cluster a pass over ``X`` runs on, or ``None`` to run it in this process.

    Parameters
    ----------
    X : array-like or RowReader
        The validated training inputs.
    n_jobs : int or None
        The estimator's ``n_jobs``: with a Dask joblib backend active and
        ``n_jobs`` set (other than 1) the pass is distributed.
    """
    if _inside_dask_worker():
        return None  # a pass inside a task (e.g. a TRAK member job) stays there
    if _is_dask_array(_source(X)):
        return _Cluster(_active_client())
    if n_jobs is not None and n_jobs != 1:
        client = _joblib_dask_client()
        if client is not None:
            return _Cluster(client)
    return None


def _source(X):
    return X.source if isinstance(X, RowReader) else X


def _is_dask_array(X) -> bool:
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "to_delayed")


def _distributed():
    """The ``distributed`` module if this process imported it: no client and no
    worker exists otherwise (and passes need not pay for importing it)."""
    return sys.modules.get("distributed")


def _inside_dask_worker() -> bool:
    if _distributed() is None:
        return False
    try:
        _distributed().get_worker()
    except ValueError:
        return False
    return True


def _active_client():
    if _distributed() is None:
        return None
    try:
        return _distributed().get_client()
    except ValueError:
        return None


def _joblib_dask_client():
    """The client of an active ``joblib.parallel_config(backend="dask")``, else ``None``."""
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    # compared by name: importing joblib's dask backend would import distributed
    if type(backend).__name__ != "DaskDistributedBackend":
        return None
    return backend.client


# ---------------------------------------------------------------------------
# the attributors' passes
# ---------------------------------------------------------------------------


def _dots(plan, X, y, labels, n_groups, *, directions, **common):
    return (_engine.gradient_dots(plan, X, y, directions, labels=labels, n_groups=n_groups,
                                  **common),)


def _projected(plan, X, y, labels, n_groups, *, projector, fisher=False, group_weights=None,
               **common):
    out = _engine.projected_gradients(plan, X, y, projector, labels=labels, n_groups=n_groups,
                                      fisher=fisher, group_weights=group_weights, **common)
    return out if fisher else (out,)


def _statistics(plan, X, y, labels, n_groups, *, group_weights=None, batch_size, progress):
    if callable(group_weights):
        # the dense pass takes weights as an array: one forward pass for them
        group_weights = _engine.sample_values(plan.with_loss(group_weights), X, y,
                                              batch_size=batch_size).cpu().numpy()
    return _engine.per_sample_statistics(plan, X, y, labels, n_groups,
                                         group_weights=group_weights, batch_size=batch_size,
                                         progress=progress)


def _gradients(plan, X, y, labels, n_groups, **common):
    return (plan.flatten(_engine.group_gradients(plan, X, y, labels, n_groups, **common)),)


#: The engine passes :func:`training_pass` runs, by kind: each returns the
#: group sums first, then additive totals.
_PASSES = {"dots": _dots, "projected": _projected, "statistics": _statistics,
           "gradients": _gradients}


class _PlanPass:
    """One engine pass of a plan over rows: ``(X, y, labels, n_groups) -> tensors``.

    Pickles its projector as ``(n_components, seed)``: the worker regenerates
    the same matrices from the seed instead of receiving them.
    """

    def __init__(self, kind, plan, batch_size, params):
        self.kind, self.plan, self.batch_size, self.params = kind, plan, batch_size, params

    def __call__(self, X, y, labels, n_groups, progress=False):
        return _PASSES[self.kind](self.plan, X, y, labels, n_groups, batch_size=self.batch_size,
                                  progress=progress, **self.params)

    def __getstate__(self):
        state = dict(self.__dict__)
        projector = self.params.get("projector")
        # a seeded projector travels as its seed; one chosen from a fit (its recipe is
        # None) travels as itself
        if projector is not None and projector.recipe is not None:
            state["params"] = {**self.params,
                               "projector": projector.recipe}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        recipe = self.params.get("projector")
        if isinstance(recipe, tuple):
            self.params = {**self.params, "projector": _engine.Projector(self.plan, *recipe)}


def training_pass(kind, plan, X, y, labels, n_groups, *, n_jobs=None, batch_size,
                  progress=False, **params):
    """Group sums of one pass over the training data, here or split over Dask workers.

    Parameters
    ----------
    kind : {"dots", "projected", "statistics", "gradients"}
        The engine pass: :func:`~skggda._engine.gradient_dots` (``directions=``),
        :func:`~skggda._engine.group_gradients` (flattened: the exact group store),
        :func:`~skggda._engine.projected_gradients` (``projector=``, and
        optionally ``fisher=``, ``group_weights=`` as a callable) or
        :func:`~skggda._engine.per_sample_statistics` (``group_weights=``).
    plan : GradientPlan
    X, y : the validated training data (``y`` in memory)
    labels : ndarray of shape (n_samples,)
        Group of every row.
    n_groups : int
    n_jobs : int or None
        The estimator's ``n_jobs`` (see :func:`cluster_for`).
    batch_size : int
        Rows per batch of the engine pass (blocks are cut at multiples of it).
    progress : bool or str
        Progress bar of an in-process pass.
    **params
        The pass's own arguments.

    Returns
    -------
    tuple of Tensor
        As the engine pass returns them (group sums ``(n_groups, ...)``
        first), on the module's device, whether or not the pass was split.
    """
    work = _PlanPass(kind, plan, batch_size, params)
    cluster = cluster_for(X, n_jobs)
    if cluster is None:
        return work(X, y, labels, n_groups, progress)
    partial = _on_cluster(cluster, work, X, y, labels, index=None, align=batch_size)
    device = _engine.module_device(plan.module)
    dtype = torch.float64 if kind == "dots" else _engine.module_dtype(plan.module)
    groups = np.zeros((int(n_groups), *partial.groups.shape[1:]))
    groups[partial.ids] = partial.groups
    return tuple(torch.as_tensor(part, device=device).to(dtype)
                 for part in (groups, *partial.totals))


# ---------------------------------------------------------------------------
# the groupers' passes
# ---------------------------------------------------------------------------


def map_row_blocks(work, X, y=None, *, index=None, n_jobs=None, block_rows=1 << 16,
                   progress=False):
    """Run ``work(X_block, y_block)`` over row blocks; concatenate and sum what it returns.

    ``work`` returns a per-row output (a tensor or an array with one row per
    block row), optionally followed by additive totals. It sees at most
    ``block_rows`` rows at a time, in this process or, when distributed,
    within each worker's share of the rows.

    Parameters
    ----------
    work : picklable callable
        A bound method of a fitted estimator, say; pickled once when distributed.
    X : array-like or RowReader
    y : ndarray or None
        In memory, one entry per row of ``X``.
    index : ndarray or None
        Sorted rows of ``X`` to visit instead of all rows (a sample).
    n_jobs : int or None
        The estimator's ``n_jobs`` (see :func:`cluster_for`).
    block_rows : int
        Rows per call of ``work``.
    progress : bool or str
        Progress bar over the rows of an in-process run (a string is its description).

    Returns
    -------
    rows : Tensor or ndarray
        The per-row outputs in row order (NumPy when computed on Dask).
    *totals
        The sums of the totals over the blocks.
    """
    loop = _BlockLoop(work, block_rows)
    cluster = cluster_for(X, n_jobs)
    if cluster is None:
        if index is not None:
            X, y = _engine.IndexedRows(X, index), None if y is None else y[index]
        return loop(X, y, progress)
    partial = _on_cluster(cluster, loop, X, y, None, index=index, align=None)
    return (_concat([rows for _, rows in sorted(partial.rows, key=lambda r: r[0])]),
            *partial.totals)


class _BlockLoop:
    """``work`` over consecutive blocks of ``block_rows`` rows: ``(rows, *totals)``."""

    def __init__(self, work, block_rows):
        self.work, self.block_rows = work, block_rows

    def __call__(self, X, y, progress=False):
        parts = []
        n = _engine.n_samples(X)
        desc = progress if isinstance(progress, str) else None
        with tqdm(total=n, desc=desc, unit="sample", disable=not progress, leave=False) as bar:
            for start in range(0, n, self.block_rows):
                stop = min(start + self.block_rows, n)
                y_block = None if y is None else y[start:stop]
                parts.append(_as_tuple(self.work(_engine.rows(X, start, stop), y_block)))
                bar.update(stop - start)
        return (_concat([part[0] for part in parts]),
                *[sum(totals) for totals in zip(*(part[1:] for part in parts))])


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _concat(parts):
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return np.concatenate(parts)


# ---------------------------------------------------------------------------
# blocks, the per-block function and the reduction tree
# ---------------------------------------------------------------------------


@dataclass
class Partial:
    """A block's results, or the sum of several blocks'.

    ``rows``: ``(start, per-row output)`` pairs; ``ids``: the groups present,
    sorted; ``groups``: their float64 sums, ``(len(ids), ...)``; ``totals``:
    additive arrays (float64 sums, integer counts).
    """

    rows: list = field(default_factory=list)
    ids: np.ndarray | None = None
    groups: np.ndarray | None = None
    totals: list = field(default_factory=list)


class _RowRange:
    """Rows ``start:stop`` of ``X``, read only when the engine slices a batch of them."""

    def __init__(self, X, start, stop):
        self.X, self.start, self.stop = X, start, stop

    def __len__(self):
        return self.stop - self.start

    @property
    def shape(self):
        return (len(self), *self.X.shape[1:])

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, _ = key.indices(len(self))
            return self.X[self.start + start:self.start + stop]
        return self.X[self.start + np.asarray(key)]


def _block_inputs(source, selection):
    """The rows a block works on: a computed chunk, a row range or a row subset of a reader."""
    if selection is None:
        return np.asarray(source, dtype=np.float32)  # as RowReader converts its blocks
    if isinstance(selection, slice):
        return _RowRange(source, selection.start, selection.stop)
    return _engine.IndexedRows(source, selection)


def _local_groups(labels):
    """``(ids, local)``: the groups of a block, sorted, and its rows' positions among them."""
    labels = np.asarray(labels, dtype=np.int64)
    low, high = int(labels.min()), int(labels.max())
    if high - low < 8 * len(labels):  # a lookup table: linear time
        present = np.bincount(labels - low, minlength=high - low + 1) > 0
        return np.flatnonzero(present) + low, (np.cumsum(present) - 1)[labels - low]
    return np.unique(labels, return_inverse=True)


def _numpy(value):
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def _float64(value):
    value = _numpy(value)
    return value.astype(np.float64) if np.issubdtype(np.asarray(value).dtype, np.floating) \
        else value


def _run_block(payload, source, selection, y, labels, start):
    """The per-block work: unpickle the state, run it on the block's rows, return a :class:`Partial`."""
    import cloudpickle

    work = cloudpickle.loads(payload)  # a private copy of the module for this task
    X = _block_inputs(source, selection)
    if labels is None:
        out = _as_tuple(work(X, y))
        return Partial(rows=[(start, _numpy(out[0]))], totals=[_numpy(t) for t in out[1:]])
    ids, local = _local_groups(labels)
    out = work(X, y, local, len(ids))
    return Partial(ids=ids, groups=_float64(out[0]), totals=[_float64(t) for t in out[1:]])


def _combine(*parts):
    """The sum of several partials (group sums on the union of their groups)."""
    rows = [pair for part in parts for pair in part.rows]
    totals = [sum(values) for values in zip(*(part.totals for part in parts))]
    if parts[0].ids is None:
        return Partial(rows=rows, totals=totals)
    ids = np.unique(np.concatenate([part.ids for part in parts]))
    groups = np.zeros((len(ids), *parts[0].groups.shape[1:]))
    for part in parts:
        groups[np.searchsorted(ids, part.ids)] += part.groups  # ids unique within a part
    return Partial(rows=rows, ids=ids, groups=groups, totals=totals)


def _tree_sum(parts):
    """One delayed partial: ``SPLIT_EVERY``-ary sums level by level, all in one graph."""
    from dask import delayed

    while len(parts) > 1:
        parts = [delayed(_combine)(*parts[i:i + SPLIT_EVERY])
                 for i in range(0, len(parts), SPLIT_EVERY)]
    return parts[0]


def _on_cluster(cluster, work, X, y, labels, *, index, align):
    """Run ``work`` on every block of ``X`` on ``cluster``; the summed :class:`Partial`."""
    import cloudpickle

    dask = _import_dask()
    # The model's state is one key of the graph, not scattered data: each worker
    # fetches it once, and when the only workers holding it die, the scheduler
    # rebuilds it from the graph (scattered data would be lost with them, and
    # the pass fail with a cancelled future instead of being retried).
    payload = dask.delayed(cloudpickle.dumps(work), name=f"skggda-state-{uuid.uuid4().hex}",
                           traverse=False)
    n = _engine.n_samples(X) if index is None else len(index)
    edges = _block_edges(n, cluster.n_threads, align)
    parts = [
        dask.delayed(_run_block)(payload, source, selection,
                                 None if y is None else _take(y, index, start, stop),
                                 None if labels is None else _take(labels, index, start, stop),
                                 start)
        for source, selection, start, stop in _blocks(X, index, edges)
    ]
    root = _tree_sum(parts)
    if cluster.client is None:
        (result,) = dask.compute(root)
        return result
    with warnings.catch_warnings():
        # the graph carries every block's targets and group labels: a few
        # bytes per row, which Dask flags as a "large graph" beyond ~10^6 rows
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        future = cluster.client.compute(root)
    return future.result()


def _take(values, index, start, stop):
    return values[start:stop] if index is None else values[index[start:stop]]


def _block_edges(n, n_threads, align):
    """Boundaries of near-equal blocks: about ``BLOCKS_PER_THREAD`` per thread, none
    below ``MIN_BLOCK_ROWS`` rows, cut at multiples of ``align`` (the batch size)
    so that the blocks' batches are those of the same pass in one process."""
    unit = align if align and align < n else 1
    units = -(-n // unit)
    n_blocks = max(1, min(units, BLOCKS_PER_THREAD * n_threads, n // MIN_BLOCK_ROWS))
    edges = np.round(np.linspace(0, units, n_blocks + 1)).astype(np.int64) * unit
    return np.minimum(edges, n)


def _blocks(X, index, edges):
    """Yield ``(source, selection, start, stop)`` per block; positions count visited rows.

    A Dask array keeps its own row chunks; other inputs are cut at ``edges``.
    """
    from dask import delayed

    source = _source(X)
    if _is_dask_array(source) or _in_memory(X):
        yield from _array_blocks(source, index, edges)
        return
    # a reader: pickled once into the graph (a file reference), read on the workers
    shared = delayed(X, name=f"skggda-rows-{uuid.uuid4().hex}", traverse=False)
    for start, stop in zip(edges[:-1].tolist(), edges[1:].tolist()):
        selection = slice(start, stop) if index is None else index[start:stop]
        yield shared, selection, start, stop


def _in_memory(X) -> bool:
    return isinstance(X, np.ndarray) and not isinstance(X, np.memmap)


def _array_blocks(source, index, edges):
    """Row chunks of a Dask array, or of an in-memory array embedded in the graph."""
    import dask.array as da

    if not _is_dask_array(source):
        source = source if index is None else source[index]
        chunks = (tuple(np.diff(edges).tolist()), *source.shape[1:])
        source = da.from_array(source, chunks=chunks, name=False)
    else:
        source = source if index is None else source[index]
        # one chunk across the columns: a block is whole rows
        source = source.rechunk({axis: -1 for axis in range(1, source.ndim)})
    edges = np.cumsum((0, *source.chunks[0]))
    for chunk, start, stop in zip(source.to_delayed().ravel(), edges[:-1], edges[1:]):
        yield chunk, None, int(start), int(stop)
