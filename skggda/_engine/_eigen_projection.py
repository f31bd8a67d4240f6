"""Projection onto the top eigen-coordinates of a fitted K-FAC / EK-FAC curvature.

K-FAC and EK-FAC diagonalise each linear block's curvature in a Kronecker
eigenbasis: a gradient ``G`` has coordinates ``G'_{oi} = (Q_S^T G Q_A)_{oi}``
and the preconditioned score of a query ``q`` and a training gradient ``g`` is
``sum_{o,i} q'_{oi} g'_{oi} / (Lambda_{oi} + damping)``. Keeping only the
``r_block`` coordinates with the largest ``Lambda`` restricts that sum to the
directions where the curvature -- and, the Fisher being the gradients'
second moment, most of the gradients' energy -- lives. Each kept coordinate
is a rank-one row ``u_o (x) v_i`` of the eigenbasis, so a sample's feature is
``sum_t (Q_S^T d_t)_o (Q_A^T a_t)_i`` over its rows: two thin rotations per
row, no per-sample gradient. Blocks without Kronecker structure (the
diagonal Fisher) keep their largest diagonal entries.

Measured on dattri's MNIST-10 MLP (5,000 training images), this selection
keeps EK-FAC's LDS at r = 1,024 (0.494 against 0.457 for the exact EK-FAC,
empirical Fisher, default damping), where seeded Gaussian Kronecker
projections with EK-FAC fitted in the projected space (LoGra's random
initialisation, :class:`~skggda._engine.Projector` with ``kronecker=True``)
lose a third of it (0.33); see ``benchmarks/bench_fidelity.py``. It needs
the full-width factors, which is what the exact solver fits anyway; for
layers too wide to eigendecompose, the random projection remains.

The projection is deterministic: a function of the fitted curvature, not
of a seed. At full width it is an orthogonal change of basis, and the
projected scores equal the exact solver's.

EK-FAC's correction pass reads, per block, only the columns of ``Q_A`` that
can hold a kept coordinate (:func:`correction_columns`): those of the
``CANDIDATES * r_block`` largest K-FAC products ``s_o a_i``. The correction
moves eigenvalues but keeps each row's total, so the top corrected
coordinates lie among the top K-FAC ones: on the MNIST MLP's first layer
(``128 x 785``, ``r_block = 939``) every kept coordinate lies within the top
``2 r_block`` products, and ``CANDIDATES = 4`` reads 315 of the 785 columns.
The other columns get each row's exact remainder, so the block means (the
default damping) stay exact.
"""

from __future__ import annotations

import numpy as np
import torch

from ._blocks import LinearBlock
from ._kfac import HEURISTIC_DAMPING, KroneckerBlock, _inverse
from ._precision import at_least_float32
from ._projection import allocate_components

#: EK-FAC's correction reads the ``Q_A`` columns of this many times ``r_block``
#: largest K-FAC products (:func:`correction_columns`).
CANDIDATES = 4


class EigenProjector:
    """Gradients in a plan's block layout -> their top eigen-coordinates of a curvature.

    Has :class:`~skggda._engine.Projector`'s interface (``n_components``,
    ``dims``, ``project_calls``, ``flat``, ``dense``), so the engine's
    projected passes run with it.

    Parameters
    ----------
    plan : GradientPlan
    preconditioner : KFACPreconditioner
        Fitted on ``plan`` without a projection.
    n_components : int
        Coordinates kept in all, split over blocks in proportion to their sizes.
    """

    #: No seed rebuilds it: the Dask passes ship the projector itself.
    recipe = None

    def __init__(self, plan, preconditioner, n_components):
        self.dims = block_dims(plan, n_components)
        self.n_components = int(sum(self.dims))
        self._blocks = plan.blocks
        device = next(iter(plan.params.values())).device
        self._selections, eigenvalues, dampings = [], [], []
        for curvature, keep in zip(preconditioner.blocks, self.dims):
            values = curvature.eigenvalues
            flat = values.reshape(-1)
            chosen = torch.topk(flat, keep).indices.sort().values  # keep = 0: none
            eigenvalues.append(flat[chosen])
            # the exact solver's default damping: a fraction of the whole block's mean
            dampings.append(HEURISTIC_DAMPING * float(values.mean()))
            self._selections.append(_selection(curvature, chosen, device))
        self.eigenvalues = torch.cat(eigenvalues)
        self._dampings = dampings

    def precondition(self, V, damping=None):
        """``(m, r)`` coordinates divided by their damped eigenvalues (the curvature is
        diagonal in this basis); ``None`` damps each block by its exact default."""
        if damping is None:
            damping = torch.cat([torch.full((dim,), d, dtype=torch.float64)
                                 for dim, d in zip(self.dims, self._dampings)])
        inverse = _inverse(self.eigenvalues, torch.as_tensor(damping, dtype=torch.float64))
        return V * inverse.to(device=V.device, dtype=V.dtype)

    def project_calls(self, index, calls):
        """``(batch, r_block)`` coordinates of hook block ``index`` from its captured calls."""
        block, selection = self._blocks[index], self._selections[index]
        if not isinstance(block, LinearBlock):
            return self.flat(index, block.per_sample(*block.rows(calls)).flatten(1))
        q_out, q_in, o_map, i_map = selection
        feature = 0
        for activation, grad in calls:
            a = block.project_inputs(activation, q_in.to(activation.dtype))  # (batch, T, |I|)
            d = block.gradient_rows(grad) @ q_out.to(grad.dtype)  # (batch, T, |O|)
            # index_select, not advanced indexing: 6x faster gathers of whole columns
            if a.shape[1] == 1:
                feature = feature + (torch.index_select(d[:, 0], 1, o_map)
                                     * torch.index_select(a[:, 0], 1, i_map))
            else:  # a sample's rows: the rotated gradient, then its kept entries
                feature = feature + _kept(torch.bmm(d.transpose(1, 2), a), o_map, i_map)
        return feature

    def flat(self, index, grads):
        """Kept entries of flat gradients ``(..., p_block)`` of a block without Kronecker
        structure -> ``(..., r_block)``."""
        return grads[..., self._selections[index]]

    def dense(self, blocks):
        """Coordinates of gradients in block layout (any leading dims) -> ``(..., r)``."""
        parts = []
        for index, (block, tensor) in enumerate(zip(self._blocks, blocks)):
            tensor = at_least_float32(tensor)
            selection = self._selections[index]
            if isinstance(selection, tuple):
                q_out, q_in, o_map, i_map = selection
                rotated = q_out.to(tensor.dtype).T @ tensor @ q_in.to(tensor.dtype)
                parts.append(_kept(rotated, o_map, i_map))
            else:
                lead = tensor.shape[: tensor.dim() - len(block.shape)]
                parts.append(self.flat(index, tensor.reshape(*lead, -1)))
        return torch.cat(parts, dim=-1)


def block_dims(plan, n_components):
    """Coordinates kept per block: ``n_components`` split in proportion to block sizes
    (the projector's selection and the correction's candidates must agree)."""
    return allocate_components([b.size for b in plan.blocks], int(n_components))


def _kept(rotated, o_map, i_map):
    """The kept entries ``rotated[..., o_map, i_map]`` of ``(..., |O|, |I|)`` matrices,
    gathered by one ``index_select`` over their flattened last two dimensions."""
    flat = rotated.reshape(*rotated.shape[:-2], -1)
    return torch.index_select(flat, -1, o_map * rotated.shape[-1] + i_map)


def _selection(curvature, chosen, device):
    """What a block keeps: for a Kronecker block the eigenvector columns its coordinates
    use and, per coordinate, its column in each; else the flat indices."""
    if not isinstance(curvature, KroneckerBlock):
        return chosen.to(device)
    n_in = curvature.eigenvalues.shape[1]
    outs, ins = chosen // n_in, chosen % n_in
    out_columns, o_map = np.unique(outs.cpu().numpy(), return_inverse=True)
    in_columns, i_map = np.unique(ins.cpu().numpy(), return_inverse=True)
    q_out = curvature.q_out[:, torch.as_tensor(out_columns)].to(device)
    q_in = curvature.q_in[:, torch.as_tensor(in_columns)].to(device)
    return (q_out, q_in, torch.as_tensor(o_map, device=device),
            torch.as_tensor(i_map, device=device))


def correction_columns(plan, n_components, blocks):
    """For each block of a K-FAC fit, the ``Q_A`` columns EK-FAC's correction must read
    for an :class:`EigenProjector` of ``n_components`` (``None``: all of them).

    Those of the ``CANDIDATES * r_block`` largest K-FAC products: the corrected
    eigenvalues the projector keeps come from there (see the module's docstring).
    Passed to :func:`~._kfac.fit_kfac` as ``correction_columns``.
    """
    columns = []
    for curvature, keep in zip(blocks, block_dims(plan, n_components)):
        if not isinstance(curvature, KroneckerBlock):
            columns.append(None)
            continue
        products = curvature.eigenvalues  # s_o a_i before the correction
        want = CANDIDATES * keep
        if want >= products.numel():
            columns.append(None)
            continue
        top = torch.topk(products.reshape(-1), want).indices
        chosen = torch.unique(top % products.shape[1])  # sorted
        columns.append(None if chosen.numel() == products.shape[1] else chosen)
    return columns
