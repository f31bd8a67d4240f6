"""Seeded random projections of gradients.

Projection is linear, so projecting a group's gradient equals summing the
projections of its members' gradients: the engine projects per batch and only
ever scatter-adds ``r``-dimensional vectors.

For a linear block the projection is factorised (a Kronecker product
``P_out (x) P_in``): a sample's gradient ``sum_t d_t a_t^T`` projects to
``sum_t (P_out^T d_t)(P_in^T a_t)^T``, which costs ``O(out r_out + in r_in)``
per row instead of ``O(out in r)``. Each block keeps the first ``r_block``
entries of that ``r_out x r_in`` product. Entries of ``P_out`` and ``P_in``
are standard normal (a side kept at full width is the identity) and each
block is scaled by ``1 / sqrt(r_block)``, so inner products of projected
gradients are unbiased estimates of the inner products of the full
gradients. The price of the factorisation is variance: about
``2 / r_out + 2 / r_in`` relative, against ``2 / r_block`` for a dense
projection, so factorised projections need more components for the same
fidelity. The generic block uses a dense Gaussian matrix.

Matrices are drawn on the CPU from a seeded generator and then moved to the
module's device, so a seed gives the same projection on every device.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._blocks import LinearBlock, NormBlock
from ._precision import at_least_float32


def allocate_components(sizes: list[int], n_components: int) -> list[int]:
    """Split ``n_components`` over blocks proportionally to their sizes.

    Every block gets at least one component when ``n_components`` allows it
    and never more than its size (largest-remainder rounding).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if n_components > sizes.sum():
        raise ValueError(
            f"n_components={n_components} exceeds the number of attributed "
            f"parameters ({int(sizes.sum())}); use n_components=None to skip projection."
        )
    alloc = np.minimum(sizes, 1) if n_components >= len(sizes) else np.zeros_like(sizes)
    remaining = int(n_components - alloc.sum())
    room = sizes - alloc
    if remaining > 0:
        # ideal <= room because remaining <= room.sum(); blocks with a positive
        # fractional part still have room, and there are at least `leftover` of them.
        ideal = room / room.sum() * remaining
        alloc = alloc + np.floor(ideal).astype(np.int64)
        leftover = int(n_components - alloc.sum())
        alloc[np.argsort(-(ideal - np.floor(ideal)), kind="stable")[:leftover]] += 1
    return alloc.tolist()


def _factor_shape(n_keep: int, out_dim: int, in_dim: int) -> tuple[int, int]:
    """``(r_out, r_in)`` with ``r_out r_in >= n_keep`` and the least estimator variance.

    The relative variance of an inner product estimated through a Kronecker
    projection grows like ``2 / r_out + 2 / r_in``; a side kept at its full
    width is not projected at all (identity) and adds nothing. Ties go to
    the cheaper shape (``out r_out + in r_in`` per row).
    """
    best = None
    for r_out in range(1, out_dim + 1):
        r_in = math.ceil(n_keep / r_out)
        if r_in > in_dim:
            continue
        # an identity side is unbiased only if every coordinate is kept
        exact = r_out * r_in == n_keep
        identity_out = r_out == out_dim and exact
        identity_in = r_in == in_dim and exact
        variance = (0 if identity_out else 2 / r_out) + (0 if identity_in else 2 / r_in)
        key = (round(variance, 12), out_dim * r_out + in_dim * r_in)
        if best is None or key < best[0]:
            best = (key, r_out, r_in)
    return best[1], best[2]


def _kronecker_shape(keep: int, out_dim: int, in_dim: int) -> tuple[int, int]:
    """``(r_out, r_in)`` with ``r_out r_in <= keep`` as large as possible, then least variance.

    Projected K-FAC needs the whole ``r_out x r_in`` product (a Kronecker
    structure), so nothing is truncated: a block keeps ``r_out r_in``
    components, at most its allocation.
    """
    best = None
    for r_out in range(1, min(out_dim, keep) + 1):
        r_in = min(in_dim, keep // r_out)
        variance = (0 if r_out == out_dim else 2 / r_out) + (0 if r_in == in_dim else 2 / r_in)
        key = (-r_out * r_in, round(variance, 12), out_dim * r_out + in_dim * r_in)
        if best is None or key < best[0]:
            best = (key, r_out, r_in)
    return best[1], best[2]


def _side_map(dim: int, rank: int, identity: bool, generator, dtype):
    """Gaussian ``(dim, rank)`` factor, or ``None`` for the identity."""
    if identity:
        return None
    return torch.randn(dim, rank, generator=generator, dtype=dtype)


def _apply(x: torch.Tensor, side):
    return x if side is None else x @ side.to(x.dtype)


class Projector:
    """Random projection of gradients in a plan's block layout to ``n_components``.

    Parameters
    ----------
    plan : GradientPlan
    n_components : int
    seed : int
    kronecker : bool, default=False
        Keep every block's whole ``r_out x r_in`` product (no truncation), as
        projected K-FAC needs: a linear block then keeps ``r_out r_in <=
        r_block`` components, so :attr:`n_components` may end up below the
        number asked for. Other blocks are unchanged.
    """

    def __init__(self, plan, n_components: int, seed: int, kronecker: bool = False):
        self.seed = int(seed)
        self.kronecker = bool(kronecker)
        self.requested = int(n_components)
        device = _device_of(plan)
        dtype = next(iter(plan.params.values())).dtype
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        self.dims = allocate_components([b.size for b in plan.blocks], self.requested)
        self._scales = [1 / math.sqrt(keep) if keep else 0.0 for keep in self.dims]
        self._maps = []
        self.factor_shapes = [None] * len(self.dims)
        for index, (block, keep) in enumerate(zip(plan.blocks, self.dims)):
            if keep == 0:
                self._maps.append(None)
            elif isinstance(block, LinearBlock):
                shape = _kronecker_shape if self.kronecker else _factor_shape
                r_out, r_in = shape(keep, block.out_dim, block.in_dim)
                if self.kronecker:
                    keep = self.dims[index] = r_out * r_in
                self.factor_shapes[index] = (r_out, r_in)
                exact = r_out * r_in == keep
                sides = (
                    _side_map(block.out_dim, r_out, exact and r_out == block.out_dim, generator, dtype),
                    _side_map(block.in_dim, r_in, exact and r_in == block.in_dim, generator, dtype),
                )
                # Gaussian sides add a factor r to E[<Px, Py>]; identity sides do not
                random_rank = (r_out if sides[0] is not None else 1) * (
                    r_in if sides[1] is not None else 1
                )
                self._scales[index] = 1 / math.sqrt(random_rank * keep / (r_out * r_in))
                self._maps.append(tuple(None if m is None else m.to(device) for m in sides))
            else:
                p = torch.randn(block.size, keep, generator=generator, dtype=dtype)
                self._maps.append(p.to(device))
        self._blocks = plan.blocks
        self.n_components = int(sum(self.dims))

    @property
    def recipe(self) -> tuple:
        """The arguments that rebuild this projector on another plan of the same model."""
        return (self.requested, self.seed, self.kronecker)

    def sides(self, index: int):
        """``(P_out, P_in, scale)`` of linear block ``index``; ``None`` sides are the identity.

        Its projected gradient is ``scale * P_out^T G P_in``, flattened row-major.
        """
        p_out, p_in = self._maps[index]
        return p_out, p_in, self._scales[index]

    def _finish(self, product: torch.Tensor, index: int) -> torch.Tensor:
        flat = product.reshape(*product.shape[:-2], -1)[..., : self.dims[index]]
        return flat * self._scales[index]

    def project_calls(self, index: int, calls) -> torch.Tensor:
        """Per-sample projection of hook block ``index`` from its captured calls.

        ``(batch, r_block)``: for a linear or convolution block
        ``sum_rows (P_out^T d)(P_in^T a)^T`` over all its calls.
        """
        keep = self.dims[index]
        block = self._blocks[index]
        batch = calls[0][0].shape[0]
        if keep == 0:
            return calls[0][0].new_zeros(batch, 0)
        if isinstance(block, NormBlock):  # few parameters: project per-sample gradients
            return self.flat(index, block.per_sample(*block.rows(calls)).flatten(1))
        p_out, p_in = self._maps[index]
        product = 0
        for activation, grad in calls:
            projected_acts = block.project_inputs(activation, p_in)
            projected_grads = _apply(block.gradient_rows(grad), p_out)
            if projected_grads.shape[1] == 1:  # one row: an outer product, no reduction
                product = product + projected_grads.transpose(1, 2) * projected_acts
            else:
                product = product + torch.bmm(projected_grads.transpose(1, 2), projected_acts)
        return self._finish(product, index)

    def flat(self, index: int, grads: torch.Tensor) -> torch.Tensor:
        """Projection of generic-block gradients ``(..., p_block)`` -> ``(..., r_block)``."""
        keep = self.dims[index]
        if keep == 0:
            return grads.new_zeros(*grads.shape[:-1], 0)
        return (grads @ self._maps[index].to(grads.dtype)) * self._scales[index]

    def dense(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """Project gradients in block layout (any leading dims) -> ``(..., n_components)``.

        A projection sums over a whole block: half-precision gradients are
        projected in float32.
        """
        parts = []
        for index, (block, tensor) in enumerate(zip(self._blocks, blocks)):
            tensor = at_least_float32(tensor)
            keep = self.dims[index]
            if keep == 0:
                continue
            if isinstance(block, LinearBlock):
                p_out, p_in = self._maps[index]
                product = _apply(_apply(tensor, p_in).transpose(-1, -2), p_out).transpose(-1, -2)
                parts.append(self._finish(product, index))
            else:
                lead = tensor.shape[: tensor.dim() - len(block.shape)]
                parts.append(self.flat(index, tensor.reshape(*lead, -1)))
        return torch.cat(parts, dim=-1)

    def diagonal_gram(self, diagonal: list[torch.Tensor]) -> torch.Tensor:
        """``P diag(d) P^T``, ``(n_components, n_components)``, for ``d`` in block layout.

        The projected form of a diagonal curvature term (an L2 penalty).
        Blocks are projected independently, so the result is block
        diagonal. For a linear block ``d`` must be the same in every output
        row (one value per input column, e.g. one for the weights and one for
        the bias); its projection is then the Kronecker product of the two
        sides' Gram matrices.
        """
        grams = []
        for index, (block, d) in enumerate(zip(self._blocks, diagonal)):
            keep = self.dims[index]
            if keep == 0:
                continue
            if isinstance(block, LinearBlock):
                grams.append(self._kronecker_gram(index, block, d))
            else:
                maps = self._maps[index]
                grams.append(maps.T @ (d.reshape(-1, 1) * maps) * self._scales[index] ** 2)
        return torch.block_diag(*grams)

    def _kronecker_gram(self, index, block, d):
        columns = d[0]
        if not torch.equal(d, columns.expand_as(d)):
            raise ValueError(
                f"The diagonal of block {block.module_name!r} differs between output rows; "
                "only a per-column diagonal has a Kronecker projection."
            )
        p_out, p_in = self._maps[index]
        eye = torch.eye(block.out_dim, dtype=d.dtype, device=d.device)
        out_gram = eye if p_out is None else p_out.T @ p_out
        in_gram = torch.diag(columns) if p_in is None else p_in.T @ (columns[:, None] * p_in)
        keep = self.dims[index]
        return torch.kron(out_gram, in_gram)[:keep, :keep] * self._scales[index] ** 2


def _device_of(plan) -> torch.device:
    return next(iter(plan.params.values())).device
