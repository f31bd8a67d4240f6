"""Accumulation precision: sums over many samples are kept in float32 at least.

A float16 net's per-sample gradients fit its range (at most 65,504), but
their sum over a group, or a Gram matrix of them, often does not; bfloat16
keeps float32's range with 8 bits of mantissa, and NumPy cannot hold it.
Accumulators therefore use float32 for half-precision nets and the module's
own dtype otherwise (float64 nets keep float64).
"""

from __future__ import annotations

import torch

_HALF = (torch.float16, torch.bfloat16)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision ``dtype``, else ``dtype`` itself."""
    return torch.float32 if dtype in _HALF else dtype


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in :func:`accumulation_dtype` of its dtype (no copy when unchanged)."""
    return tensor.to(accumulation_dtype(tensor.dtype))
