"""``batch_size="auto"``: rows per batch from a memory budget.

A pass holds, per sample of a batch, the activations the backward pass
needs, their gradients and the rows the hooks capture (about three floats
per activation), the input itself, and whatever the pass adds per sample
(projected features, per-sample gradients of ``torch.func`` blocks). The
batch is the largest power of two whose total fits the budget: 32 MiB of
host memory on the CPU, a quarter of the free memory (at most 4 GiB) on a
GPU. Tiny nets get batches of up to 65,536 rows, where the fixed cost of
each operation no longer dominates; ResNet-sized nets get a few dozen.

Why so little on the CPU: a batch's buffers are allocated afresh in every
batch, and glibc serves allocations above its mmap threshold (at most
32 MiB) from new pages that the kernel must fault in and zero, and a batch
that outgrows the caches streams every operand from memory. Arithmetic gains
nothing from more rows once there are a few hundred. On the 60,000-image
MNIST MLP (one thread) 32 MiB against 256 MiB made projected EK-FAC's fit
1.5x faster and projected TracIn's 2.2x, and no pass slower
(``benchmarks/bench_queries.py``; RESULTS.md, "The query side").
"""

from __future__ import annotations

import torch
from torch import nn

from ._data import forward, module_lock

_CPU_BUDGET = 32 << 20
_GPU_BUDGET_MAX = 4 << 30
_MIN_ROWS, _MAX_ROWS = 16, 1 << 16
# activations, their gradients, and the hooks' copies of the captured rows
_COPIES_PER_ACTIVATION = 3


def activation_floats(module: nn.Module, X_probe) -> int:
    """Per-sample elements of the module's input and every leaf module's output.

    ``X_probe`` is a small batch on the module's device; one no-grad forward.
    """
    total = [0]

    def count(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            total[0] += output.numel()

    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    with module_lock(module):  # the hooks must not count another thread's pass
        handles = [leaf.register_forward_hook(count) for leaf in leaves]
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                forward(module, X_probe)
        finally:
            module.train(was_training)
            for handle in handles:
                handle.remove()
    rows = _rows(X_probe)
    inputs = sum(t.numel() for t in _tensors(X_probe))
    return int((_COPIES_PER_ACTIVATION * total[0] + inputs) / max(rows, 1))


def auto_batch_size(per_sample_bytes: float, device) -> int:
    """The largest power of two of rows whose ``per_sample_bytes`` fit the device's budget."""
    budget = _CPU_BUDGET
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = min(free // 4, _GPU_BUDGET_MAX)
    rows = int(budget // max(per_sample_bytes, 1.0))
    power = 1 << max(rows, 1).bit_length() - 1
    return int(min(max(power, _MIN_ROWS), _MAX_ROWS))


def _tensors(X):
    return list(X.values()) if isinstance(X, dict) else [X]


def _rows(X):
    return _tensors(X)[0].shape[0]
