"""Streaming passes over a data set: everything the attributors need, in one pass each.

Every pass walks the data once in batches of ``batch_size`` on the module's
device, with the module in eval mode, and keeps only per-batch tensors plus
its output. Outputs:

* :func:`loss_gradient` -- the gradient of a weighted loss sum (a property
  gradient), in block layout;
* :func:`gradient_dots` -- ``(n, m)``: every sample's loss gradient dotted with
  ``m`` directions, without forming per-sample gradients;
* :func:`projected_gradients` -- per-sample or per-group projected gradients
  ``(n, r)`` / ``(k, r)``, optionally with the ``r x r`` per-sample Fisher;
* :func:`group_gradients` -- exact per-group gradient sums ``(k, ...)`` in
  block layout; the data is visited in group order so that each group's sum is
  a few batched matrix products, never a scatter of per-sample gradients.

Sums over samples (group gradients, Gram matrices) are accumulated in float32
at least, so half-precision nets do not overflow them (see ``_precision``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils._pytree import tree_map
from tqdm.auto import tqdm

from . import _functional, _gram
from ._capture import HookCapture
from ._data import (
    BatchedForward, batch_slices, forward, host_batch, module_device, module_dtype, module_lock,
    n_samples, prefetch_pin, prefetching, rows, take, targets_to_device, to_device,
)
from ._gram import GramAccumulator
from ._precision import accumulation_dtype, at_least_float32


@contextmanager
def evaluating(module):
    """Eval mode for the duration of a pass (dropout off, norm layers frozen).

    Passes over one module are serialised across threads: the hooks a pass
    registers would otherwise capture another thread's activations, and one
    pass ending would put the module back in training mode under another.
    """
    with module_lock(module):
        was_training = module.training
        module.eval()
        try:
            yield
        finally:
            module.train(was_training)


def _load_batch(X, y, span, order, pin):
    """Host side of one batch: its sample indices and its rows as (pinned) CPU tensors."""
    start, stop = span
    if order is None:
        index = np.arange(start, stop)
        X_batch, y_batch = rows(X, start, stop), rows(y, start, stop)
    else:
        index = order[start:stop]
        X_batch, y_batch = take(X, index), take(y, index)
    return index, host_batch(X_batch, pin), host_batch(y_batch, pin)


def _upload(host, device, dtype):
    """Device side of one batch: ``(X_batch, y_batch)`` on ``device`` (asynchronous when pinned)."""
    _, X_host, y_host = host
    return to_device(X_host, device, dtype), targets_to_device(y_host, device)


def _batch_stream(plan, X, y, batch_size, order=None, progress=False):
    """Yield ``(start, stop, index, X_batch, y_batch)``, the batch on the module's device.

    ``start:stop`` are the batch's positions in the pass (in ``order`` when
    given): per-sample arrays uploaded once per pass are sliced with them,
    on the device. On CUDA the next batch is read into pinned memory on a
    thread while this one is processed (:func:`prefetching`).
    """
    n = n_samples(X)
    device, dtype = module_device(plan.module), module_dtype(plan.module)
    desc = progress if isinstance(progress, str) else None
    spans = list(batch_slices(n, batch_size))
    load = lambda span, pin: _load_batch(X, y, span, order, pin)  # noqa: E731
    with tqdm(total=n, desc=desc, unit="sample", disable=not progress, leave=False) as bar:
        batches = prefetching(spans, load, prefetch_pin(device))
        try:
            for (start, stop), host in zip(spans, batches):
                X_batch, y_batch = _upload(host, device, dtype)
                yield start, stop, host[0], X_batch, y_batch
                bar.update(stop - start)
        finally:
            batches.close()  # stops the prefetching thread when the pass ends early


def _batches(plan, X, y, batch_size, order=None, progress=False):
    """Yield ``(index, X_batch, y_batch)`` with the batch on the module's device."""
    for _, _, index, X_batch, y_batch in _batch_stream(plan, X, y, batch_size, order, progress):
        yield index, X_batch, y_batch


def per_sample_tensor(values, device, dtype=None):
    """A per-sample array (group labels, weights) uploaded to ``device`` once per pass.

    Passes slice it with each batch's ``start:stop`` on the device instead of
    uploading ``values[index]`` batch by batch: one host-to-device copy per
    pass, and no blocking copy from pageable memory in the loop. Integer
    labels (stored compactly) become int64, the index dtype of ``index_add_``.
    """
    if values is None:
        return None
    array = np.asarray(values)
    if dtype is None and array.dtype.kind in "iub":
        array = array.astype(np.int64, copy=False)
    return torch.as_tensor(array, device=device, dtype=dtype)


def _losses(plan, X_batch, y_batch):
    return plan.loss_fn(forward(plan.module, X_batch), y_batch)


# ---------------------------------------------------------------------------
# property gradients
# ---------------------------------------------------------------------------


def loss_gradient(plan, X, y, *, sample_weight=None, batch_size=512, progress=False):
    """Gradient of ``sum_i w_i loss_i`` (default ``w_i = 1/n``: the mean loss).

    Returns
    -------
    list of Tensor
        Block layout, no leading dimension.
    """
    names, params = list(plan.params), list(plan.params.values())
    total = [torch.zeros_like(p, dtype=accumulation_dtype(p.dtype)) for p in params]
    n = n_samples(X)
    weights = per_sample_tensor(sample_weight, module_device(plan.module))
    with evaluating(plan.module):
        for start, stop, _, X_batch, y_batch in _batch_stream(plan, X, y, batch_size,
                                                              progress=progress):
            losses = _losses(plan, X_batch, y_batch)
            if weights is None:
                weighted = losses.sum() / n
            else:
                weighted = (losses * weights[start:stop].to(losses.dtype)).sum()
            if not weighted.requires_grad:
                continue  # terms that do not depend on the parameters add nothing
            grads = torch.autograd.grad(weighted, params, allow_unused=True)
            for acc, g in zip(total, grads):
                if g is not None:
                    acc += g
    # a weighted mean is within the range of its terms: back to the module's dtype
    return plan.from_param_grads({n: t.to(p.dtype) for n, t, p in zip(names, total, params)})


def sample_values(plan, X, y, *, batch_size=512):
    """``(n,)`` values of the plan's per-sample function (no gradients)."""
    out = []
    with evaluating(plan.module), torch.no_grad():
        for _, X_batch, y_batch in _batches(plan, X, y, batch_size):
            out.append(_losses(plan, X_batch, y_batch))
    return at_least_float32(torch.cat(out))


def function_gradient(plan, fn, X, y, *, batch_size="auto"):
    """Gradient of ``fn(module, X, y) -> scalar`` on the whole data, in block layout.

    For properties that are not sums over samples. ``X`` and ``y`` reach
    ``fn`` whole, as tensors on the module's device (its documented
    contract), but ``fn`` is given the module behind a :class:`BatchedForward`:
    each call runs it ``batch_size`` rows at a time and keeps only every
    batch's output in the autograd graph, recomputing the batch's
    activations when the gradient is taken (activation checkpointing). The
    graph no longer grows with the activations of the whole data set; the
    gradient is the same up to the order of floating-point sums.
    """
    device, dtype = module_device(plan.module), module_dtype(plan.module)
    names, params = list(plan.params), list(plan.params.values())
    n = n_samples(X)
    X_all, y_all = to_device(rows(X, 0, n), device, dtype), targets_to_device(rows(y, 0, n), device)
    with evaluating(plan.module):
        value = fn(BatchedForward(plan.module, plan.batch_size(batch_size)), X_all, y_all)
        # a value that does not depend on the parameters has a zero gradient
        grads = (torch.autograd.grad(value, params, allow_unused=True)
                 if torch.is_tensor(value) and value.requires_grad else [None] * len(params))
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    return plan.from_param_grads(dict(zip(names, grads)))


# ---------------------------------------------------------------------------
# dot products with directions (TracIn without stored gradients)
# ---------------------------------------------------------------------------


def gradient_dots(plan, X, y, directions, *, labels=None, n_groups=None, batch_size=512,
                  progress=False):
    """Every sample's loss gradient dotted with ``m`` directions, or their group sums.

    Parameters
    ----------
    directions : list of Tensor
        Block layout with a leading dimension ``m``.
    labels : array of int of shape (n_samples,), default=None
        Group of every sample: the dots are summed per group as they stream,
        so nothing of size ``n_samples`` is held.
    n_groups : int, default=None
        Number of groups (``labels.max() + 1`` when omitted).

    Returns
    -------
    Tensor of shape (n_samples, m) or (n_groups, m), float64, on the module's device.
    """
    m = directions[0].shape[0]
    device = module_device(plan.module)
    if labels is not None and n_groups is None:
        n_groups = int(np.max(labels)) + 1
    n_rows = n_samples(X) if labels is None else int(n_groups)
    out = torch.zeros(n_rows, m, dtype=torch.float64, device=device)

    groups = per_sample_tensor(labels, device)

    def store(start, stop, dots):
        if groups is None:
            out[start:stop] = dots.double()
        else:
            out.index_add_(0, groups[start:stop], dots.double())

    with evaluating(plan.module):
        if plan.generic is None:
            _hook_dots(plan, X, y, directions, batch_size, progress, store)
        else:
            tangents = plan.to_param_grads(directions)
            for start, stop, _, X_batch, y_batch in _batch_stream(plan, X, y, batch_size,
                                                                  progress=progress):
                store(start, stop,
                      _functional.directional_derivatives(plan, X_batch, y_batch, tangents))
    return out


def _hook_dots(plan, X, y, directions, batch_size, progress, store):
    """Per-sample dot products for hook blocks, read off their captured rows."""
    prepared = [block.prepare_directions(v) for block, v in zip(plan.hook_blocks, directions)]
    with HookCapture(plan.hook_blocks) as capture:
        for start, stop, _, X_batch, y_batch in _batch_stream(plan, X, y, batch_size,
                                                              progress=progress):
            calls = capture.calls(_losses(plan, X_batch, y_batch).sum())
            dots = 0.0
            for block, block_calls, v in zip(plan.hook_blocks, calls, prepared):
                dots = dots + block.dots(block_calls, v)
            store(start, stop, dots)


# ---------------------------------------------------------------------------
# projected gradients (per sample or per group, optional Fisher)
# ---------------------------------------------------------------------------


def projected_gradients(
    plan,
    X,
    y,
    projector,
    *,
    labels=None,
    n_groups=None,
    fisher=False,
    group_weights=None,
    batch_size=512,
    progress=False,
):
    """Projected loss gradients in one pass.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,) or None
        Group of every sample. When given, per-sample projections are
        scatter-added into ``n_groups`` sums; otherwise they are returned as is.
    fisher : bool
        Also accumulate the per-sample empirical Fisher ``sum_i g_i g_i^T`` of
        the projected gradients.
    group_weights : ndarray of shape (n_samples,) or callable, default=None
        Multiply each sample's projection by its weight before adding it to
        its group (the Fisher stays unweighted). A callable ``(output, y) ->
        (batch,)`` is evaluated on each batch's module output from the
        forward pass of the gradients (a plan without hook blocks adds a
        no-grad forward per batch for it). TRAK uses this.

    Returns
    -------
    features : Tensor of shape (n_groups, r) or (n_samples, r)
    fisher_matrix : Tensor of shape (r, r), only when ``fisher=True``
    """
    device = module_device(plan.module)
    dtype = accumulation_dtype(module_dtype(plan.module))
    r = projector.n_components
    n = n_samples(X)
    n_rows = n if labels is None else int(n_groups)
    features = torch.zeros(n_rows, r, dtype=dtype, device=device)
    # Rows that are the samples themselves, unweighted, give the Fisher at the
    # end in one product, without copying them into a buffer (35 against 40 ms
    # at HELOC size, g = 1); otherwise it accumulates batch by batch.
    fisher_at_end = fisher and group_weights is None and (
        labels is None or (n_rows == n and np.unique(labels).size == n))
    gram = (GramAccumulator(r, dtype=dtype, device=device, expected_rows=n)
            if fisher and not fisher_at_end else None)
    weight_of = group_weights if callable(group_weights) else None
    weights_t = None if weight_of else per_sample_tensor(group_weights, device, dtype)
    groups = per_sample_tensor(labels, device)
    with evaluating(plan.module), HookCapture(plan.hook_blocks) as capture:
        for start, stop, _, X_batch, y_batch in _batch_stream(plan, X, y, batch_size,
                                                              progress=progress):
            batch_features, output = _project_batch(plan, projector, capture, X_batch, y_batch,
                                                    need_output=weight_of is not None)
            batch_features = batch_features.to(dtype)
            if gram is not None:
                gram.add(batch_features)
            if weight_of is not None:
                batch_features = batch_features * weight_of(output, y_batch)[:, None]
            elif weights_t is not None:
                batch_features = batch_features * weights_t[start:stop, None]
            if groups is None:
                features[start:stop] = batch_features
            else:
                features.index_add_(0, groups[start:stop], batch_features)
    if not fisher:
        return features
    return features, _gram.gram(features) if fisher_at_end else gram.result()


def _project_batch(plan, projector, capture, X_batch, y_batch, need_output=False):
    """``(features (batch, r), module output, detached, or None)`` of one batch."""
    parts = []
    output = None
    if plan.hook_blocks:
        output = forward(plan.module, X_batch)
        calls = capture.calls(plan.loss_fn(output, y_batch).sum())
        for index, block_calls in enumerate(calls):
            parts.append(projector.project_calls(index, block_calls))
    if plan.generic is not None:
        with capture.paused():
            grads = _functional.per_sample_grads(plan, plan.generic.names, X_batch, y_batch)
            if output is None and need_output:
                with torch.no_grad():
                    output = forward(plan.module, X_batch)
        flat = plan.generic.from_param_grads(grads)
        parts.append(projector.flat(len(plan.hook_blocks), flat))
    return torch.cat(parts, dim=1), None if output is None else output.detach()


# ---------------------------------------------------------------------------
# exact group gradients
# ---------------------------------------------------------------------------


@dataclass
class ChunkLayout:
    """How a batch of samples, sorted by group, is cut into padded chunks.

    Each chunk holds consecutive samples of one group (a group spanning more
    than ``cap`` samples is split into several chunks); ``chunk_id[i]`` and
    ``pos[i]`` place sample ``i``; ``chunk_group[c]`` is chunk ``c``'s group.
    """

    chunk_id: torch.Tensor
    pos: torch.Tensor
    n_chunks: int
    cap: int
    chunk_group: torch.Tensor

    @classmethod
    def from_sorted_labels(cls, labels: torch.Tensor) -> "ChunkLayout":
        batch = labels.shape[0]
        starts = torch.ones(batch, dtype=torch.bool, device=labels.device)
        starts[1:] = labels[1:] != labels[:-1]
        segment = torch.cumsum(starts.long(), 0) - 1
        n_segments = int(segment[-1]) + 1
        seg_len = torch.bincount(segment, minlength=n_segments)
        seg_start = torch.nonzero(starts).squeeze(1)
        pos_in_segment = torch.arange(batch, device=labels.device) - seg_start[segment]
        longest = int(seg_len.max())
        # Pad every chunk to the longest segment unless that more than doubles the
        # work; then split long segments at the mean segment length instead.
        cap = longest if n_segments * longest <= 2 * batch else -(-batch // n_segments)
        chunks_per_segment = (seg_len + cap - 1) // cap
        first_chunk = torch.cumsum(chunks_per_segment, 0) - chunks_per_segment
        chunk_id = first_chunk[segment] + pos_in_segment // cap
        n_chunks = int(chunks_per_segment.sum())
        chunk_group = torch.empty(n_chunks, dtype=labels.dtype, device=labels.device)
        chunk_group[chunk_id] = labels
        return cls(chunk_id, pos_in_segment % cap, n_chunks, cap, chunk_group)

    @classmethod
    def singletons(cls, batch: int, device) -> "ChunkLayout":
        ids = torch.arange(batch, device=device)
        return cls(ids, torch.zeros_like(ids), batch, 1, ids)

    def pad(self, tensor: torch.Tensor, fill: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, ...)`` -> ``(n_chunks, cap, ...)``; empty slots zero or ``fill``."""
        shape = (self.n_chunks, self.cap, *tensor.shape[1:])
        if fill is None:
            padded = tensor.new_zeros(shape)
        else:
            padded = fill.expand(shape).clone()
        padded[self.chunk_id, self.pos] = tensor
        return padded



def _host_layout(labels: np.ndarray):
    """:meth:`ChunkLayout.from_sorted_labels` on the host, in NumPy, for one batch.

    Returns ``(chunk_id, pos, n_chunks, cap, chunk_group)``, the same numbers
    as the torch version, whose ``int()`` reads would stop the device once
    per batch.
    """
    batch = len(labels)
    starts = np.ones(batch, dtype=bool)
    starts[1:] = labels[1:] != labels[:-1]
    segment = np.cumsum(starts) - 1
    n_segments = int(segment[-1]) + 1
    seg_len = np.bincount(segment, minlength=n_segments)
    pos_in_segment = np.arange(batch) - np.flatnonzero(starts)[segment]
    longest = int(seg_len.max())
    cap = longest if n_segments * longest <= 2 * batch else -(-batch // n_segments)
    chunks_per_segment = (seg_len + cap - 1) // cap
    first_chunk = np.cumsum(chunks_per_segment) - chunks_per_segment
    chunk_id = first_chunk[segment] + pos_in_segment // cap
    n_chunks = int(chunks_per_segment.sum())
    chunk_group = np.empty(n_chunks, dtype=np.int64)
    chunk_group[chunk_id] = labels
    return chunk_id, pos_in_segment % cap, n_chunks, cap, chunk_group


class PassLayouts:
    """The :class:`ChunkLayout` of every batch of a pass in group order, uploaded once.

    The layouts are computed on the host from the sorted labels (NumPy,
    O(n)) and their index arrays sent to the device in one copy each;
    :meth:`batch` slices them. Nothing is uploaded or read back per batch.
    """

    def __init__(self, sorted_labels: np.ndarray, batch_size: int, device):
        ids, positions, groups, self._shapes = [], [], [], []
        offset = 0
        for start, stop in batch_slices(len(sorted_labels), batch_size):
            chunk_id, pos, n_chunks, cap, chunk_group = _host_layout(sorted_labels[start:stop])
            ids.append(chunk_id)
            positions.append(pos)
            groups.append(chunk_group)
            self._shapes.append((offset, n_chunks, cap))
            offset += n_chunks
        self._batch_size = batch_size
        # one copy each: rows' chunk and slot (int64: the index dtype), chunks' groups
        empty = [np.zeros(0, dtype=np.int64)]
        self._chunk_id = per_sample_tensor(np.concatenate(ids or empty), device)
        self._pos = per_sample_tensor(np.concatenate(positions or empty), device)
        self._chunk_group = per_sample_tensor(np.concatenate(groups or empty), device)

    def batch(self, start: int, stop: int) -> ChunkLayout:
        """The layout of the batch at positions ``start:stop`` of the pass."""
        offset, n_chunks, cap = self._shapes[start // self._batch_size]
        return ChunkLayout(self._chunk_id[start:stop], self._pos[start:stop], n_chunks, cap,
                           self._chunk_group[offset:offset + n_chunks])

def _chunk_sums(plan, capture, X_batch, y_batch, layout: ChunkLayout):
    """Per-chunk gradient sums of one batch, in block layout ``(n_chunks, ...)``."""
    sums = []
    if plan.hook_blocks:
        calls = capture.calls(_losses(plan, X_batch, y_batch).sum())
        for block, block_calls in zip(plan.hook_blocks, calls):
            sums.append(block.chunk_sums(block_calls, layout))
    if plan.generic is not None:
        X_pad = tree_map(lambda t: layout.pad(t, fill=t[:1]), X_batch)
        y_pad = layout.pad(y_batch, fill=y_batch[:1])
        ones = torch.ones(y_batch.shape[0], dtype=module_dtype(plan.module), device=y_batch.device)
        mask = layout.pad(ones)
        with capture.paused():
            grads = _functional.chunk_grads(plan, plan.generic.names, X_pad, y_pad, mask)
        sums.append(plan.generic.from_param_grads(grads))
    return sums


def group_gradients(plan, X, y, labels, n_groups, *, batch_size=512, progress=False):
    """Exact gradient sums of the loss over every group, in one pass.

    Returns
    -------
    list of Tensor
        Block layout with leading dimension ``n_groups``.
    """
    device = module_device(plan.module)
    dtype = accumulation_dtype(module_dtype(plan.module))
    order = np.argsort(labels, kind="stable")
    out = [
        torch.zeros(int(n_groups), *b.shape, dtype=dtype, device=device)
        for b in plan.blocks
    ]
    layouts = PassLayouts(np.asarray(labels, dtype=np.int64)[order], batch_size, device)
    with evaluating(plan.module), HookCapture(plan.hook_blocks) as capture:
        for start, stop, _, X_batch, y_batch in _batch_stream(plan, X, y, batch_size, order,
                                                              progress):
            layout = layouts.batch(start, stop)
            for acc, chunk_sum in zip(out, _chunk_sums(plan, capture, X_batch, y_batch, layout)):
                acc.index_add_(0, layout.chunk_group, chunk_sum.to(dtype))
    return out


def per_sample_statistics(plan, X, y, labels, n_groups, *, group_weights=None,
                          batch_size=512, progress=False):
    """Exact group gradients and the per-sample empirical Fisher, in one pass.

    For small models (both outputs are dense in the number of parameters
    ``p``): every batch's per-sample gradients ``(batch, p)`` update the
    Fisher ``sum_i g_i g_i^T`` and, weighted by ``group_weights`` if given,
    the group sums.

    Returns
    -------
    groups : Tensor of shape (n_groups, p)
    fisher : Tensor of shape (p, p)
    """
    device = module_device(plan.module)
    dtype = accumulation_dtype(module_dtype(plan.module))
    p = plan.n_params
    groups = torch.zeros(int(n_groups), p, dtype=dtype, device=device)
    fisher = GramAccumulator(p, dtype=dtype, device=device, expected_rows=n_samples(X))
    weights_t = per_sample_tensor(group_weights, device, dtype)
    labels_t = per_sample_tensor(labels, device)
    for start, stop, _, X_batch, y_batch in _batch_stream(plan, X, y, batch_size,
                                                          progress=progress):
        flat = plan.flatten(per_sample_gradients(plan, X_batch, y_batch)).to(dtype)
        fisher.add(flat)
        if weights_t is not None:
            flat = flat * weights_t[start:stop, None]
        groups.index_add_(0, labels_t[start:stop], flat)
    return groups, fisher.result()


def per_sample_gradients(plan, X_batch, y_batch):
    """Per-sample loss gradients of one batch (already on the device), block layout."""
    layout = ChunkLayout.singletons(y_batch.shape[0], y_batch.device)
    with evaluating(plan.module), HookCapture(plan.hook_blocks) as capture:
        return _chunk_sums(plan, capture, X_batch, y_batch, layout)


def iter_per_sample_gradients(plan, X, y, *, batch_size=512, progress=False):
    """Yield ``(index, gradients)`` per batch, gradients in block layout ``(batch, ...)``."""
    for index, X_batch, y_batch in _batches(plan, X, y, batch_size, progress=progress):
        yield index, per_sample_gradients(plan, X_batch, y_batch)
