"""Gram matrices ``A^T A`` of gradient rows: the Fisher and TRAK kernels.

An ``r x r`` kernel of ``n`` projected gradients costs ``n r^2``
multiply-adds, which on a small net is many times the work of the training
epoch itself. Two things make it cheaper without changing the result:

* symmetry: only the diagonal and upper blocks are multiplied (a ``b x b``
  block split costs ``(b + 1) / (2 b)`` of the full product) and the lower
  ones are copied from them once at the end. A plain GEMM cannot skip the
  lower half; BLAS ``syrk`` can, and measured about as fast as these blocked
  GEMMs (17-18 ms against 18-19 ms for 7,896 x 512 rows on 2 cores; a full
  GEMM took 22-23 ms), but torch does not expose it;
* large products: rows from many small batches are buffered and multiplied
  together, since a ``(512 x r)^T (512 x r)`` product per batch runs well
  below the speed of one tall product.
"""

from __future__ import annotations

import torch

#: Below this width a plain product is as fast as the blocked triangle.
MIN_BLOCKED_WIDTH = 256
#: Blocks per side of the triangle (10 of 16 block products are computed).
N_BLOCKS = 4
#: Buffer at most this many entries of rows before multiplying them (16 MiB in
#: float32: 8,192 rows of 512; 2,048 rows measured 4% slower on HELOC size).
MAX_BUFFER_ENTRIES = 1 << 22


def _block_edges(width: int) -> list[int]:
    """Block boundaries of the triangle; one block (a plain product) for narrow matrices."""
    n_blocks = N_BLOCKS if width >= MIN_BLOCKED_WIDTH else 1
    return [round(width * i / n_blocks) for i in range(n_blocks + 1)]


def add_gram_upper_(out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``out += rows^T rows`` on the diagonal and upper blocks only; returns ``out``.

    The blocks below the diagonal blocks are left untouched: call
    :func:`mirror_upper_` once after the last update.
    """
    edges = _block_edges(rows.shape[1])
    for start, stop in zip(edges[:-1], edges[1:]):
        out[start:stop, start:] += rows[:, start:stop].T @ rows[:, start:]
    return out


def mirror_upper_(out: torch.Tensor) -> torch.Tensor:
    """Fill the blocks below the diagonal of ``out`` from those above it, in place."""
    edges = _block_edges(out.shape[0])
    for start, stop in zip(edges[1:-1], edges[2:]):
        out[start:stop, :start] = out[:start, start:stop].T
    return out


def gram(rows: torch.Tensor) -> torch.Tensor:
    """``rows^T rows`` (``r x r``, symmetric) at about 5/8 of a GEMM's work."""
    out = rows.new_zeros(rows.shape[1], rows.shape[1])
    return mirror_upper_(add_gram_upper_(out, rows))


class GramAccumulator:
    """Accumulates ``sum_i g_i g_i^T`` of rows arriving in batches.

    Parameters
    ----------
    width : int
        ``r``, the length of every row.
    dtype, device
        Of the rows and of the result.
    expected_rows : int, default=None
        Total rows to come, if known: the buffer is no larger than that.
    """

    def __init__(self, width, *, dtype, device, expected_rows=None):
        capacity = max(1, MAX_BUFFER_ENTRIES // max(1, width))
        if expected_rows is not None:
            capacity = max(1, min(capacity, int(expected_rows)))
        self._matrix = torch.zeros(width, width, dtype=dtype, device=device)
        self._buffer = torch.empty(capacity, width, dtype=dtype, device=device)
        self._filled = 0

    def add(self, rows: torch.Tensor) -> None:
        """Add the outer products of the rows of ``rows`` (``(batch, r)``)."""
        start = 0
        while start < rows.shape[0]:
            take = min(rows.shape[0] - start, self._buffer.shape[0] - self._filled)
            self._buffer[self._filled:self._filled + take] = rows[start:start + take]
            self._filled += take
            start += take
            if self._filled == self._buffer.shape[0]:
                self._flush()

    def _flush(self):
        if self._filled:
            add_gram_upper_(self._matrix, self._buffer[:self._filled])
            self._filled = 0

    def result(self) -> torch.Tensor:
        """The symmetric ``r x r`` sum so far (call once, after the last batch)."""
        self._flush()
        return mirror_upper_(self._matrix)


__all__ = ["GramAccumulator", "add_gram_upper_", "gram", "mirror_upper_"]
