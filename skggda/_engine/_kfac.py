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
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from . import _functional
from ._capture import HookCapture
from ._data import forward, module_device, module_dtype
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


def _inverse(eigenvalues, damping):
    """``1 / (eigenvalues + damping)``, 0 where that is 0 (a pseudo-inverse)."""
    damped = eigenvalues + damping
    return torch.where(damped > 0, 1.0 / damped.clamp_min(torch.finfo(damped.dtype).tiny), 0.0)


class KFACPreconditioner:
    """Inverse damped K-FAC / EK-FAC curvature, one factor per block of a plan.

    Parameters
    ----------
    blocks : list of KroneckerBlock or DiagonalBlock
        One per block of the plan it was fitted on, in ``plan.blocks`` order.
    """

    def __init__(self, blocks):
        self.blocks = blocks

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


def fit_kfac(plan, X, y, *, corrected=True, fisher="true", seed=0, batch_size=512,
             progress=False, stage=None):
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

    Returns
    -------
    KFACPreconditioner
    """
    if fisher not in ("true", "empirical"):
        raise ValueError(f"fisher must be 'true' or 'empirical', got {fisher!r}.")
    stage = stage or (lambda name: nullcontext())
    seed = seed if fisher == "true" else None
    with stage("factors"):
        sums = _factor_pass(plan, X, y, seed, batch_size, progress)
    with stage("eigendecomposition"):
        blocks = [_eigendecomposition(s) if isinstance(s, _KroneckerSums) else
                  DiagonalBlock(s.total / s.count) for s in sums]
    if corrected and any(isinstance(b, KroneckerBlock) for b in blocks):
        with stage("correction"):
            _correct_eigenvalues(plan, X, y, blocks, seed, batch_size, progress)
    return KFACPreconditioner(blocks)


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

    def __init__(self, block, dtype, device):
        self.block = block
        self.a = torch.zeros(block.in_dim, block.in_dim, dtype=dtype, device=device)
        self.s = torch.zeros(block.out_dim, block.out_dim, dtype=dtype, device=device)
        self.count = 0

    def add(self, calls):
        acts, grads = self.block.rows(calls)
        # A averages a sample's T rows: scale them by 1 / sqrt(T)
        add_gram_upper_(self.a, self.block.augment(acts).flatten(0, 1) / acts.shape[1] ** 0.5)
        add_gram_upper_(self.s, grads.flatten(0, 1))
        self.count += acts.shape[0]

    def factors(self):
        """``(A, S)`` in float64."""
        return (mirror_upper_(self.a).double() / self.count,
                mirror_upper_(self.s).double() / self.count)


class _DiagonalSums:
    """Running sum of squared per-sample gradients of one block (float64)."""

    def __init__(self):
        self.total = 0.0
        self.count = 0

    def add(self, per_sample):
        self.total = self.total + per_sample.double().square().sum(0)
        self.count += per_sample.shape[0]


def _factor_pass(plan, X, y, seed, batch_size, progress):
    dtype, device = module_dtype(plan.module), module_device(plan.module)
    sums = [_KroneckerSums(b, dtype, device) if isinstance(b, LinearBlock)
            else _DiagonalSums() for b in plan.hook_blocks]
    generic = _DiagonalSums() if plan.generic is not None else None
    generator = _labels_generator(plan, seed)
    with evaluating(plan.module), HookCapture(plan.hook_blocks) as capture:
        for _, X_batch, y_batch in _batches(plan, X, y, batch_size, progress=progress):
            targets, calls = _hook_calls(plan, capture, X_batch, y_batch, generator)
            for block, block_sums, block_calls in zip(plan.hook_blocks, sums, calls):
                if isinstance(block_sums, _KroneckerSums):
                    block_sums.add(block_calls)
                else:
                    block_sums.add(block.per_sample(*block.rows(block_calls)))
            if generic is not None:
                with capture.paused():
                    grads = _functional.per_sample_grads(plan, plan.generic.names, X_batch,
                                                         targets)
                generic.add(plan.generic.from_param_grads(grads))
    return sums + ([generic] if generic is not None else [])


def _eigendecomposition(sums):
    """K-FAC's eigenbasis and eigenvalues ``s a^T`` from a block's factor sums."""
    A, S = sums.factors()
    a_values, q_in = _symmetric_eigh(A)
    s_values, q_out = _symmetric_eigh(S)
    return KroneckerBlock(q_out, q_in, torch.outer(s_values, a_values))


def _symmetric_eigh(matrix):
    values, vectors = torch.linalg.eigh(matrix)
    return values.clamp_min(0), vectors  # a covariance: negatives are rounding


def _correct_eigenvalues(plan, X, y, blocks, seed, batch_size, progress):
    """EK-FAC: replace each Kronecker block's eigenvalues by ``mean_i (Q_S^T G_i Q_A)^2``."""
    hooked = [(i, block) for i, block in enumerate(plan.hook_blocks)
              if isinstance(blocks[i], KroneckerBlock)]
    totals = {i: 0.0 for i, _ in hooked}
    count = 0
    generator = _labels_generator(plan, seed)
    with evaluating(plan.module), HookCapture(plan.hook_blocks) as capture:
        for _, X_batch, y_batch in _batches(plan, X, y, batch_size, progress=progress):
            _, calls = _hook_calls(plan, capture, X_batch, y_batch, generator)
            for i, block in hooked:
                totals[i] = totals[i] + _rotated_squares(block, calls[i], blocks[i]).double()
            count += y_batch.shape[0]
    for i, _ in hooked:
        blocks[i].eigenvalues = totals[i] / count


def _rotated_squares(block, calls, basis):
    """``sum_i (Q_S^T G_i Q_A)^2`` over a batch, from its activation and gradient rows."""
    q_in = basis.q_in.to(calls[0][0].dtype)
    # project_inputs rotates without a ones column, and a convolution's
    # patches without unfolding them
    a = torch.cat([block.project_inputs(x, q_in) for x, _ in calls], dim=1)  # (batch, T, in)
    d = torch.cat([block.gradient_rows(g) for _, g in calls], dim=1)
    d = d @ basis.q_out.to(a.dtype)  # (batch, T, out)
    if a.shape[1] == 1:  # G_i = d_i a_i^T: the square of a rank-one matrix
        return d[:, 0].square().T @ a[:, 0].square()
    return torch.bmm(d.transpose(1, 2), a).square().sum(0)


__all__ = [
    "HEURISTIC_DAMPING",
    "DiagonalBlock",
    "KFACPreconditioner",
    "KroneckerBlock",
    "fit_kfac",
]
