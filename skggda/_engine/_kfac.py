"""Kronecker-factored curvature: K-FAC and EK-FAC preconditioners.

For a linear block ``y = W a + b`` a sample's gradient is ``G = sum_t d_t
abar_t^T`` over its rows ``t`` (one for an MLP, the output positions of a
convolution), with ``abar = [a, 1]`` when the bias is attributed. K-FAC
(Martens & Grosse, 2015) approximates the block's Fisher ``E[vec G vec
G^T]`` by ``S (x) A`` in the row-major layout of ``G``, with

* ``A = mean_i (1/T) sum_t abar_t abar_t^T`` (``in x in``), and
* ``S = mean_i sum_t d_t d_t^T`` (``out x out``),

where ``T`` is the number of rows of a sample. Averaging ``A`` and summing
``S`` over rows is the convention of Grosse & Martens (2016) for
convolutions: it gives ``S (x) A`` the scale of the per-sample gradients
(kronfluence averages both, which is off by ``T``; its EK-FAC correction
removes that). Both factors are eigendecomposed in float64, ``A = Q_A
diag(a) Q_A^T`` and ``S = Q_S diag(s) Q_S^T``, so K-FAC's eigenvalues are
the products ``s_o a_i``. EK-FAC (George et al., 2018) keeps that eigenbasis
and replaces the eigenvalues by the second moments of the gradients in it,

* ``Lambda = mean_i (Q_S^T G_i Q_A)^2`` (``out x in``, elementwise square),

read in one more pass from the hooks, per sample, without storing any
gradient. Preconditioning a gradient ``V`` then costs two rotations:
``Q_S [(Q_S^T V Q_A) / (Lambda + damping)] Q_A^T``.

Blocks without that structure (norm layers on the hook path, the
``torch.func`` generic block) get the diagonal Fisher ``mean_i g_i^2``,
which is EK-FAC in the identity basis.

``d_t`` are the output gradients of each sample's loss at its given label
(the empirical Fisher) or at a label drawn from the model's predictive
distribution ``softmax(logits)`` (the true Fisher, whose expectation is the
Gauss-Newton matrix). The default damping of a block is
:data:`HEURISTIC_DAMPING` times the mean of its eigenvalues (kronfluence's
convention), so it scales with each layer's curvature.

**Projected (LoGra).** Given a Kronecker :class:`~._projection.Projector`,
the same passes run on each linear block's projected rows ``P_in^T abar_t``
and ``scale P_out^T d_t``: the factors are ``r_in x r_in`` and ``r_out x
r_out``, the correction is read in their eigenbasis composed with the
projection, and the preconditioner acts on projected gradients. The other
blocks keep the dense second moment of their projected gradients
(:class:`DenseBlock`). The deterministic alternative, the top
eigen-coordinates of the full-width fit, is :mod:`._eigen_projection`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from . import _functional
from ._capture import HookCapture
from ._data import forward, module_device, module_dtype
from ._precision import accumulation_dtype
from ._random import cpu_generator, draw
from ._gram import add_gram_upper_, mirror_upper_
from ._passes import _batches, evaluating
from ._blocks import LinearBlock

#: Default damping of a block, as a fraction of the mean of its eigenvalues.
HEURISTIC_DAMPING = 0.1


@dataclass
class KroneckerBlock:
    """Eigenbasis and eigenvalues of one linear block's curvature (float64).

    Attributes
    ----------
    q_out : Tensor of shape (out, out)
        Eigenvectors ``Q_S`` of the output-gradient factor.
    q_in : Tensor of shape (in, in)
        Eigenvectors ``Q_A`` of the input-activation factor.
    eigenvalues : Tensor of shape (out, in)
        Curvature in the eigenbasis: ``s_o a_i`` (K-FAC) or the corrected
        ``Lambda`` (EK-FAC).
    """

    q_out: torch.Tensor
    q_in: torch.Tensor
    eigenvalues: torch.Tensor

    def precondition(self, V, damping):
        """``(m, out, in)`` gradients times the inverse damped curvature."""
        q_out, q_in = self.q_out.to(V.dtype), self.q_in.to(V.dtype)
        rotated = torch.matmul(torch.matmul(q_out.T, V), q_in)
        rotated = rotated * _inverse(self.eigenvalues, damping).to(V.dtype)
        return torch.matmul(torch.matmul(q_out, rotated), q_in.T)


@dataclass
class DiagonalBlock:
    """The diagonal Fisher of a block without Kronecker structure.

    Attributes
    ----------
    eigenvalues : Tensor of the block's gradient shape
        Mean squared per-sample gradient of every parameter (float64).
    """

    eigenvalues: torch.Tensor

    def precondition(self, V, damping):
        return V * _inverse(self.eigenvalues, damping).to(V.dtype)


@dataclass
class DenseBlock:
    """The full Fisher of a projected block without Kronecker structure.

    With a projection, a norm layer's or the generic block's ``r_block``
    projected coordinates mix parameters, so their diagonal means nothing;
    their ``r_block x r_block`` covariance is small and kept whole. Its
    eigenvalues are already the second moments in its eigenbasis: EK-FAC's
    correction leaves it unchanged.

    Attributes
    ----------
    basis : Tensor of shape (r_block, r_block)
        Eigenvectors of the projected gradients' second-moment matrix.
    eigenvalues : Tensor of shape (r_block,)
        Its eigenvalues (float64).
    """

    basis: torch.Tensor
    eigenvalues: torch.Tensor

    def precondition(self, V, damping):
        basis = self.basis.to(V.dtype)
        rotated = (V @ basis) * _inverse(self.eigenvalues, damping).to(V.dtype)
        return rotated @ basis.T


def _inverse(eigenvalues, damping):
    """``1 / (eigenvalues + damping)``, 0 where that is 0 (a pseudo-inverse)."""
    damped = eigenvalues + damping
    return torch.where(damped > 0, 1.0 / damped.clamp_min(torch.finfo(damped.dtype).tiny), 0.0)


class KFACPreconditioner:
    """Inverse damped K-FAC / EK-FAC curvature, one factor per block of a plan.

    Parameters
    ----------
    blocks : list of KroneckerBlock, DiagonalBlock or DenseBlock
        One per block of the plan it was fitted on, in ``plan.blocks`` order.
    dims : list of int, default=None
        The block dimensions of the projection the blocks were fitted in
        (projected K-FAC, as in LoGra), see :meth:`precondition_projected`.
    factor_shapes : list of (int, int) or None, default=None
        ``(r_out, r_in)`` of each projected linear block, ``None`` for the others.
    """

    def __init__(self, blocks, dims=None, factor_shapes=None):
        self.blocks = blocks
        self.dims = dims
        self.factor_shapes = factor_shapes

    def default_damping(self, index):
        """Damping of block ``index`` when none is given: a fraction of its mean eigenvalue."""
        return HEURISTIC_DAMPING * float(self.blocks[index].eigenvalues.mean())

    def precondition(self, gradients, damping=None):
        """``(C + damping I)^{-1}`` applied block by block.

        Parameters
        ----------
        gradients : list of Tensor
            Block layout with a leading dimension ``m``.
        damping : float, default=None
            Added to every block's eigenvalues; ``None`` uses each block's
            :meth:`default_damping`.

        Returns
        -------
        list of Tensor
            Block layout, same shapes and dtypes.
        """
        if len(gradients) != len(self.blocks):
            raise ValueError(
                f"The preconditioner has {len(self.blocks)} blocks but the gradients "
                f"have {len(gradients)}: it was fitted on another parameter selection."
            )
        return [
            block.precondition(V, self.default_damping(i) if damping is None else damping)
            for i, (block, V) in enumerate(zip(self.blocks, gradients))
        ]

    def precondition_projected(self, V, damping=None):
        """:meth:`precondition` of projected gradients ``(m, r)`` -> ``(m, r)``.

        The rows are split at the projector's block dimensions; a linear
        block's ``r_out r_in`` columns are its ``(r_out, r_in)`` matrix.
        """
        parts = list(torch.split(V, self.dims, dim=1))
        for index, shape in enumerate(self.factor_shapes):
            if shape is not None:
                parts[index] = parts[index].reshape(-1, *shape)
        solved = self.precondition(parts, damping)
        return torch.cat([part.reshape(V.shape[0], -1) for part in solved], dim=1)


def fit_kfac(plan, X, y, *, corrected=True, fisher="true", seed=0, batch_size=512,
             progress=False, stage=None, projector=None, correction_columns=None):
    """Fit a K-FAC (``corrected=False``) or EK-FAC preconditioner of the mean training loss.

    One pass accumulates the Kronecker factors (and the diagonal Fisher of
    the other blocks); EK-FAC makes a second pass for the corrected
    eigenvalues.

    Parameters
    ----------
    plan : GradientPlan
        The parameters to precondition and the per-sample loss.
    X : array-like of shape (n_samples, ...)
        Training inputs, streamed in batches like the other passes.
    y : array-like of shape (n_samples,)
        Their labels (class indices): the empirical Fisher's targets.
    corrected : bool, default=True
        EK-FAC's eigenvalue correction.
    fisher : {"true", "empirical"}, default="true"
        Differentiate each sample's loss at a label drawn from the model's
        predictive distribution (``"true"``) or at its given label.
    seed : int, default=0
        Seeds the label draws; every pass restarts from it, so both passes
        see the same labels.
    batch_size : int, default=512
        Samples per batch; bounds memory.
    progress : bool or str, default=False
        Progress bars over the passes (a string is their label).
    stage : callable, default=None
        ``stage(name)`` returns a context manager around each step
        (``"factors"``, ``"eigendecomposition"``, ``"correction"``), e.g.
        to time it.
    projector : Projector, default=None
        Fit in a projected space, as LoGra does (Choe et al., 2024): a
        Kronecker projector (``kronecker=True``) whose sides ``P_out``,
        ``P_in`` map each linear block's output gradients and activations,
        so the factors are ``r_out x r_out`` and ``r_in x r_in`` and the
        eigenvalue correction is read in the projected eigenbasis; the
        other blocks get the dense Fisher of their projected gradients
        (:class:`DenseBlock`). The preconditioner then applies to the
        projector's gradients (:meth:`KFACPreconditioner.precondition_projected`).
    correction_columns : callable, default=None
        Unprojected EK-FAC only: ``correction_columns(blocks)`` gives, for
        each block of the K-FAC fit, the columns of ``Q_A`` on which the
        correction is computed (``None``: all). The other columns share
        each row's exact remaining second moment as K-FAC's row would
        (:func:`_spread_remainder`), so every row total, and every block's
        mean eigenvalue, stays exact. The eigen projection uses it to read
        only the directions its coordinates can come from
        (:func:`~._eigen_projection.correction_columns`).

    Returns
    -------
    KFACPreconditioner
    """
    if fisher not in ("true", "empirical"):
        raise ValueError(f"fisher must be 'true' or 'empirical', got {fisher!r}.")
    if projector is not None and not projector.kronecker:
        raise ValueError("Projected K-FAC needs a Kronecker projector (kronecker=True).")
    stage = stage or (lambda name: nullcontext())
    seed = seed if fisher == "true" else None
    with stage("factors"):
        sums = _factor_pass(plan, X, y, seed, batch_size, progress, projector)
    with stage("eigendecomposition"):
        blocks = [s.block() for s in sums]
    if corrected and any(isinstance(b, KroneckerBlock) for b in blocks):
        with stage("correction"):
            columns = (correction_columns(blocks) if correction_columns is not None
                       else [None] * len(blocks))
            if projector is not None and any(c is not None for c in columns):
                raise ValueError("correction_columns applies to unprojected EK-FAC only.")
            _correct_eigenvalues(plan, X, y, blocks, seed, batch_size, progress, projector,
                                 columns)
    if projector is None:
        return KFACPreconditioner(blocks)
    return KFACPreconditioner(blocks, list(projector.dims), list(projector.factor_shapes))


# ---------------------------------------------------------------------------
# the passes
# ---------------------------------------------------------------------------


def _labels_generator(plan, seed):
    # a CPU generator: a seed samples the same labels on every device
    return None if seed is None else cpu_generator(seed)


def _targets(plan, output, y_batch, generator):
    """The given labels, or labels drawn from ``softmax(logits)`` (the true Fisher)."""
    if generator is None:
        return y_batch
    # skorch's NLLLoss nets output probabilities: their loss knows the logits
    logits = plan.loss_fn.logits(output) if hasattr(plan.loss_fn, "logits") else output
    probabilities = torch.softmax(logits.detach().double(), dim=1)
    return draw(probabilities, 1, generator).squeeze(1)


def _hook_calls(plan, capture, X_batch, y_batch, generator):
    """``(targets, calls)``: the batch's targets and every hook block's calls."""
    output = forward(plan.module, X_batch)
    targets = _targets(plan, output, y_batch, generator)
    if not plan.hook_blocks:
        return targets, []
    return targets, capture.calls(plan.loss_fn(output, targets).sum())


class _KroneckerSums:
    """Running sums of ``A`` and ``S`` of one linear block, upper blocks only.

    A wide input's ``A`` costs more than the layer's forward pass; the
    symmetric product halves that (0.19 against 0.42 s for ten 512 x 785
    batches on one core; buffering rows into larger products gained nothing).
    """

    def __init__(self, in_dim, out_dim, dtype, device, ones_column=False):
        self.a = torch.zeros(in_dim, in_dim, dtype=dtype, device=device)
        self.s = torch.zeros(out_dim, out_dim, dtype=dtype, device=device)
        self.count = 0
        # a bias's column of ones is added to A here, not appended to every row
        # (appending copies the batch's activations: 0.3 s of a 60,000-row pass)
        self.ones_column = ones_column

    def add(self, acts, grads):
        """Add a batch's activation rows ``(batch, T, in)`` (without the ones column
        when ``ones_column``) and gradient rows."""
        # A averages a sample's T rows: scale them by 1 / sqrt(T)
        scale = acts.shape[1] ** -0.5
        rows = acts.flatten(0, 1)
        rows = rows if acts.shape[1] == 1 else rows * scale
        if self.ones_column:
            n = self.a.shape[0] - 1
            add_gram_upper_(self.a[:n, :n], rows)
            sums = rows.sum(0) * scale  # the ones, scaled as their rows are
            self.a[:n, n] += sums
            self.a[n, :n] += sums
            self.a[n, n] += acts.shape[0]  # batch x T rows of ones, scaled by 1 / T
        else:
            add_gram_upper_(self.a, rows)
        add_gram_upper_(self.s, grads.flatten(0, 1))
        self.count += acts.shape[0]

    def factors(self):
        """``(A, S)`` in float64."""
        n = self.a.shape[0] - self.ones_column
        mirror_upper_(self.a[:n, :n])
        return self.a.double() / self.count, mirror_upper_(self.s).double() / self.count

    def block(self):
        """K-FAC's eigenbasis and eigenvalues ``s a^T``."""
        A, S = self.factors()
        a_values, q_in = _symmetric_eigh(A)
        s_values, q_out = _symmetric_eigh(S)
        return KroneckerBlock(q_out, q_in, torch.outer(s_values, a_values))


class _DiagonalSums:
    """Running sum of squared per-sample gradients of one block (float64)."""

    def __init__(self):
        self.total = 0.0
        self.count = 0

    def add(self, per_sample):
        # squares in float32 or wider, one float64 sum per batch: no float64 copy
        squares = per_sample.to(accumulation_dtype(per_sample.dtype)).square()
        self.total = self.total + squares.sum(0, dtype=torch.float64)
        self.count += per_sample.shape[0]

    def block(self):
        return DiagonalBlock(self.total / self.count)


class _DenseSums:
    """Running second-moment matrix of one block's projected per-sample gradients."""

    def __init__(self):
        self.total = 0.0
        self.count = 0

    def add(self, projected):
        projected = projected.to(accumulation_dtype(projected.dtype))
        self.total = self.total + (projected.T @ projected).double()  # r x r: small
        self.count += projected.shape[0]

    def block(self):
        values, basis = _symmetric_eigh(self.total / self.count)
        return DenseBlock(basis, values)


def _block_sums(plan, projector):
    """One running sum per block: Kronecker factors for linear blocks, else the
    diagonal Fisher (or, projected, the dense Fisher of the projection)."""
    dtype, device = module_dtype(plan.module), module_device(plan.module)
    sums = []
    for index, block in enumerate(plan.blocks):
        if isinstance(block, LinearBlock):
            r_out, r_in = ((block.out_dim, block.in_dim) if projector is None
                           else projector.factor_shapes[index])
            sums.append(_KroneckerSums(r_in, r_out, dtype, device,
                                       ones_column=_ones_column(block, projector)))
        else:
            sums.append(_DiagonalSums() if projector is None else _DenseSums())
    return sums


def _kronecker_rows(block, calls, sides):
    """``(a, d)``: a linear block's augmented activation rows and output-gradient rows,
    ``(batch, T, in)`` and ``(batch, T, out)``, mapped by ``sides = (P_out, P_in, scale)``.

    ``scale * sum_t d_t a_t^T`` is then the projector's gradient of the block.
    """
    p_out, p_in, scale = sides
    # project_inputs maps without a ones column, a convolution's patches without unfolding
    a = _join_rows([block.project_inputs(x, p_in) for x, _ in calls])
    d = _join_rows([block.gradient_rows(g) for _, g in calls])
    if p_out is not None:
        d = d @ p_out.to(d.dtype)
    return a, d if scale == 1.0 else d * scale


def _join_rows(parts):
    """The rows of a block's calls side by side (dim 1); one call's as they are, uncopied."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


_UNPROJECTED = (None, None, 1.0)


def _factor_pass(plan, X, y, seed, batch_size, progress, projector=None):
    sums = _block_sums(plan, projector)
    generator = _labels_generator(plan, seed)
    n_hooked = len(plan.hook_blocks)
    with evaluating(plan.module), HookCapture(plan.hook_blocks) as capture:
        for _, X_batch, y_batch in _batches(plan, X, y, batch_size, progress=progress):
            targets, calls = _hook_calls(plan, capture, X_batch, y_batch, generator)
            for index, (block, block_calls) in enumerate(zip(plan.hook_blocks, calls)):
                if isinstance(sums[index], _KroneckerSums):
                    if sums[index].ones_column:
                        sums[index].add(*block.rows(block_calls))
                    else:
                        sides = _UNPROJECTED if projector is None else projector.sides(index)
                        sums[index].add(*_kronecker_rows(block, block_calls, sides))
                else:
                    per_sample = block.per_sample(*block.rows(block_calls))
                    sums[index].add(_projected(projector, index, per_sample))
            if plan.generic is not None:
                with capture.paused():
                    grads = _functional.per_sample_grads(plan, plan.generic.names, X_batch,
                                                         targets)
                per_sample = plan.generic.from_param_grads(grads)
                sums[n_hooked].add(_projected(projector, n_hooked, per_sample))
    return sums


def _ones_column(block, projector):
    """Whether ``A``'s sums take a bias's ones column apart: an unprojected block with
    both a weight and a bias (a projection maps the ones itself)."""
    return projector is None and bool(block.weight_name) and bool(block.bias_name)


def _projected(projector, index, per_sample):
    """Per-sample gradients of a block without Kronecker structure, projected if asked."""
    if projector is None:
        return per_sample
    return projector.flat(index, per_sample.reshape(per_sample.shape[0], -1))


def _symmetric_eigh(matrix):
    values, vectors = torch.linalg.eigh(matrix)
    return values.clamp_min(0), vectors  # a covariance: negatives are rounding


def _correct_eigenvalues(plan, X, y, blocks, seed, batch_size, progress, projector, columns):
    """EK-FAC: replace each Kronecker block's eigenvalues by ``mean_i (Q_S^T G_i Q_A)^2``.

    Projected, ``G_i`` is the projected gradient ``scale P_out^T G_i P_in``:
    its rotation is the full gradient's by ``P_out Q_S`` and ``P_in Q_A``.
    ``columns[i]``: the columns of ``Q_A`` to read for block ``i`` (``None``:
    all); the others get each row's remainder (:func:`_spread_remainder`).
    """
    dtype = module_dtype(plan.module)
    # the rotations in the net's dtype once, not per batch (a wide layer's are large)
    hooked = [(i, block, _rotation(blocks[i], projector, i, dtype, columns[i]))
              for i, block in enumerate(plan.hook_blocks)
              if isinstance(blocks[i], KroneckerBlock)]
    totals = {i: 0.0 for i, _, _ in hooked}
    row_totals = {i: 0.0 for i, _, _ in hooked if columns[i] is not None}
    count = 0
    generator = _labels_generator(plan, seed)
    with evaluating(plan.module), HookCapture(plan.hook_blocks) as capture:
        for _, X_batch, y_batch in _batches(plan, X, y, batch_size, progress=progress):
            _, calls = _hook_calls(plan, capture, X_batch, y_batch, generator)
            for i, block, rotation in hooked:
                a, d = _kronecker_rows(block, calls[i], rotation)
                totals[i] = totals[i] + _rotated_squares(a, d).double()
                if i in row_totals:
                    row_totals[i] = row_totals[i] + _row_moments(block, calls[i], d)
            count += y_batch.shape[0]
    for i, _, _ in hooked:
        if i in row_totals:
            blocks[i].eigenvalues = _spread_remainder(blocks[i], totals[i] / count, columns[i],
                                                      row_totals[i] / count)
        else:
            blocks[i].eigenvalues = totals[i] / count


def _row_moments(block, calls, d):
    """``sum_i ||(Q_S^T G_i)_o||^2`` for every output eigenvector ``o`` (float64), from the
    rotated gradient rows ``d``: a row's second moment over all of ``Q_A``'s columns,
    which, ``Q_A`` being orthogonal, needs no rotation of the activations."""
    a, _ = block.rows(calls)  # without a bias's ones column: its Gram entries are 1
    n_rows, n_in, n_out = a.shape[1], block.in_dim, d.shape[2]
    if n_rows * (n_in + n_out) <= n_in * n_out:
        # ||sum_t d_to a_t||^2 = d_o^T (a a^T) d_o: a (T, T) Gram matrix per sample
        gram = (torch.bmm(a, a.transpose(1, 2)) if block.weight_name
                else a.new_zeros(a.shape[0], n_rows, n_rows))
        if block.bias_name:
            gram = gram + 1.0
        return (torch.bmm(gram, d) * d).sum((0, 1)).double()
    a = block.augment(a)
    return torch.bmm(d.transpose(1, 2), a).square().sum((0, 2)).double()


def _spread_remainder(block, values, columns, row_moments):
    """The full ``(out, in)`` eigenvalues from those read on ``columns``: every row's
    remaining second moment spread over the other columns in proportion to ``A``'s
    eigenvalues (K-FAC's shape of a row), so that each row, and the block's mean, keep
    their exact totals."""
    kfac = block.eigenvalues  # s_o a_i: every row is proportional to A's eigenvalues
    columns = columns.to(kfac.device)
    full = torch.empty_like(kfac)
    full[:, columns] = values
    rest = torch.ones(kfac.shape[1], dtype=torch.bool, device=kfac.device)
    rest[columns] = False
    shares = kfac.sum(0)[rest].clamp_min(0)
    total = shares.sum()
    # no K-FAC mass on those columns (dead inputs): no gradient there, nothing to spread
    shares = shares / total if total > 0 else shares
    remainder = (row_moments.to(kfac) - values.sum(1)).clamp_min(0)  # rounding: >= 0
    full[:, rest] = remainder[:, None] * shares[None, :]
    return full


def _rotation(basis, projector, index, dtype, columns=None):
    """``(R_out, R_in, scale)``: the eigenbasis composed with the block's projection
    (or restricted to ``columns`` of ``Q_A``), in ``dtype``."""
    q_out, q_in, scale = basis.q_out, basis.q_in, 1.0
    if columns is not None:
        q_in = q_in[:, columns.to(q_in.device)]
    if projector is not None:
        p_out, p_in, scale = projector.sides(index)
        q_out = q_out if p_out is None else p_out.double() @ q_out
        q_in = q_in if p_in is None else p_in.double() @ q_in
    return q_out.to(dtype), q_in.to(dtype), scale


def _rotated_squares(a, d):
    """``sum_i (Q_S^T G_i Q_A)^2`` over a batch, from its rotated activation and gradient
    rows (:func:`_kronecker_rows`)."""
    if a.shape[1] == 1:  # G_i = d_i a_i^T: the square of a rank-one matrix
        return d[:, 0].square().T @ a[:, 0].square()
    return torch.bmm(d.transpose(1, 2), a).square().sum(0)


__all__ = [
    "HEURISTIC_DAMPING",
    "DenseBlock",
    "DiagonalBlock",
    "KFACPreconditioner",
    "KroneckerBlock",
    "fit_kfac",
]
