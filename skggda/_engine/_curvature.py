"""Curvature: Hessian-vector products and the inverse-curvature solvers of influence.

All solvers work on flat vectors in the plan's ``flatten`` order and solve
for several right-hand sides at once (``(m, p)`` in, ``(m, p)`` out). The
curvature is that of the *mean* training loss ``H = (1/n) sum_i H_i``.

* :func:`dense_hessian` -- the explicit ``p x p`` Hessian (small models),
  :func:`factor_dense` its eigendecomposition and :func:`solve_dense` the
  (pseudo-inverse) solves from it;
* :func:`conjugate_gradient` -- CG on ``(H + damping I) x = v`` with
  full-data Hessian-vector products;
* :func:`lissa` -- Agarwal et al.'s stochastic Neumann series as used by
  Koh & Liang: ``h <- v + (1 - damping) h - (H_batch h) / scale``, averaged
  over ``repeat`` runs of ``depth`` steps and divided by ``scale``; its fixed
  point solves ``(H + damping * scale * I) x = v``;
* :func:`solve_kernel` -- ``(K + damping I)^{-1}`` for an explicit PSD matrix
  (Fisher / TRAK kernels).

The iterative solvers return a :class:`Solution`: the estimate and the reasons
it may be inaccurate. The engine reports and warns nothing itself (it knows no
scikit-learn); the estimators turn those reasons into ``ConvergenceWarning``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.func import functional_call, grad, jvp, vmap
from tqdm.auto import tqdm

from ._data import module_device, module_dtype, n_samples, take, targets_to_device, to_device
from ._functional import kept_parameters
from ._passes import _batches, evaluating
from ._precision import accumulation_dtype, at_least_float32

#: Above this many parameters an explicit Hessian is refused.
MAX_DENSE_PARAMS = 20_000


class Solution(NamedTuple):
    """What an iterative solver returns.

    Attributes
    ----------
    x : torch.Tensor of shape (m, p)
        The estimate, one row per right-hand side (NaN where the solver gave up).
    issues : tuple of str
        Why ``x`` may be inaccurate, one sentence each, in the order met;
        empty when the solver converged.
    """

    x: torch.Tensor
    issues: tuple[str, ...] = ()


def _hvp_on_batch(plan, X_batch, y_batch):
    """``V (m, p) -> (m, p)``: products with the Hessian of the batch's mean loss."""
    names = list(plan.params)
    primals = {name: plan.params[name].detach() for name in names}
    constants = {n: p.detach() for n, p in plan.module.named_parameters() if n not in primals}

    def mean_loss(params):
        params = {**constants, **params}
        with kept_parameters(plan.module):
            output = (functional_call(plan.module, params, (), X_batch)
                      if isinstance(X_batch, dict)
                      else functional_call(plan.module, params, (X_batch,)))
        return plan.loss_fn(output, y_batch).mean()

    def product(flat):
        tangent = plan.to_param_grads(plan.unflatten(flat))
        tangent = {name: tangent[name] for name in names}
        _, out = jvp(grad(mean_loss), (primals,), (tangent,))
        return plan.flatten(plan.from_param_grads(out))

    return vmap(product)


def hessian_vector_products(plan, X, y, V, *, batch_size=512, max_pairs=None):
    """``(m, p)``: products of the full-data mean-loss Hessian with the rows of ``V``.

    A vectorised product holds the batch's activations once per row of
    ``V`` it is given: its memory grows with (batch rows) x (rows of ``V``).
    ``max_pairs`` bounds that product: batches shrink to
    ``max_pairs // min(m, max_pairs)`` rows (at most ``batch_size``) and
    ``V`` is split into chunks so that no product sees more pairs. ``None``
    takes ``batch_size`` rows with all of ``V`` at once.
    """
    n = n_samples(X)
    if max_pairs is not None:
        batch_size = min(batch_size, max(1, max_pairs // max(1, min(V.shape[0], max_pairs))))
    out = torch.zeros_like(V, dtype=accumulation_dtype(V.dtype))
    with evaluating(plan.module):
        # the engine's batch stream: read ahead into pinned memory on CUDA
        for index, X_batch, y_batch in _batches(plan, X, y, batch_size):
            out += len(index) / n * _batch_hvp(plan, X_batch, y_batch, V, max_pairs)
    return out.to(V.dtype)  # a mean over batches: within the range of its terms


def _batch_hvp(plan, X_batch, y_batch, V, max_pairs=None):
    """``(m, p)``: the batch's mean-loss Hessian times the rows of ``V``, in chunks
    of rows of ``V`` such that (batch rows) x (chunk rows) <= ``max_pairs``
    (one row at a time when the batch alone exceeds it; ``None``: all at once)."""
    m = V.shape[0]
    chunk = m if max_pairs is None else max(1, max_pairs // max(1, n_samples(X_batch)))
    if chunk >= m:
        return _hvp_on_batch(plan, X_batch, y_batch)(V)
    return torch.cat([_hvp_on_batch(plan, X_batch, y_batch)(V[start:start + chunk])
                      for start in range(0, m, chunk)])


def dense_hessian(plan, X, y, *, batch_size=512, chunk=256, progress=False):
    """The ``p x p`` Hessian of the mean training loss (for small models)."""
    p = plan.n_params
    if p > MAX_DENSE_PARAMS:
        raise ValueError(
            f"An explicit Hessian of {p} parameters is too large (limit "
            f"{MAX_DENSE_PARAMS}); use solver='cg' or 'lissa', or a smaller param_subset."
        )
    device, dtype = module_device(plan.module), module_dtype(plan.module)
    eye = torch.eye(p, dtype=dtype, device=device)
    columns = []
    for start in tqdm(range(0, p, chunk), desc=progress or None, disable=not progress,
                      leave=False):
        columns.append(hessian_vector_products(plan, X, y, eye[start:start + chunk],
                                               batch_size=batch_size))
    H = at_least_float32(torch.cat(columns))
    return (H + H.T) / 2  # symmetric up to rounding


_NON_POSITIVE = ("Conjugate gradients met non-positive curvature: the damped Hessian "
                 "is not positive definite. Increase damping.")


def conjugate_gradient(plan, X, y, V, *, damping, max_iter=100, tol=1e-6, batch_size=512,
                       max_pairs=None, progress=False):
    """Solve ``(H + damping I) x = v`` for every row of ``V`` by conjugate gradients.

    ``batch_size`` and ``max_pairs`` bound the Hessian-vector products'
    memory as in :func:`hessian_vector_products`. Returns a :class:`Solution`;
    its ``issues`` say when the damped Hessian met non-positive curvature or
    ``tol`` was not reached in ``max_iter`` iterations.
    """

    def apply(P):
        return (hessian_vector_products(plan, X, y, P, batch_size=batch_size,
                                        max_pairs=max_pairs) + damping * P)

    x = torch.zeros_like(V)
    r = V.clone()
    direction = r.clone()
    rs = (r * r).sum(1)
    target = (tol * V.norm(dim=1)) ** 2
    issues = []
    for _ in tqdm(range(max_iter), desc=progress or None, disable=not progress, leave=False):
        if bool((rs <= target).all()):
            break
        Ap = apply(direction)
        curvature = (direction * Ap).sum(1)
        if bool((curvature <= 0).any()) and _NON_POSITIVE not in issues:
            issues.append(_NON_POSITIVE)
        alpha = rs / curvature
        x += alpha[:, None] * direction
        r -= alpha[:, None] * Ap
        rs_new = (r * r).sum(1)
        direction = r + (rs_new / rs.clamp_min(1e-300))[:, None] * direction
        rs = rs_new
    else:
        if not bool((rs <= target).all()):
            issues.append(f"Conjugate gradients did not reach tol={tol} in {max_iter} iterations.")
    return Solution(x, tuple(issues))


def lissa(plan, X, y, V, *, damping, scale, depth, repeat, batch_size, generator,
          max_pairs=None, progress=False):
    """LiSSA estimates of ``(H + damping * scale * I)^{-1} v`` for every row of ``V``.

    Each of the ``depth`` steps of each of the ``repeat`` runs draws a fresh
    minibatch of ``batch_size`` training samples. Its products take the rows
    of ``V`` in chunks of ``max_pairs // batch_size`` (at least one), as in
    :func:`_batch_hvp`. Returns a :class:`Solution`;
    when the recursion diverges it stops, ``x`` is NaN and ``issues`` says
    where and why.
    """
    n = n_samples(X)
    device, dtype = module_device(plan.module), module_dtype(plan.module)
    estimate = torch.zeros_like(V)
    v_norm = V.norm(dim=1).clamp_min(1e-30)
    steps = tqdm(total=repeat * depth, desc=progress or None, disable=not progress, leave=False)
    with evaluating(plan.module), steps:
        for run in range(repeat):
            h = V.clone()
            flags = []  # per step, on the device: read back every DIVERGENCE_CHECK_EVERY steps
            for step in range(depth):
                index = torch.randint(n, (min(batch_size, n),), generator=generator).numpy()
                X_batch = to_device(take(X, index), device, dtype)
                y_batch = targets_to_device(take(y, index), device)
                product = _batch_hvp(plan, X_batch, y_batch, h, max_pairs)
                h = V + (1 - damping) * h - product / scale
                steps.update()
                flags.append(_divergence_flag(h, v_norm))
                if len(flags) < DIVERGENCE_CHECK_EVERY and step + 1 < depth:
                    continue
                first = _first_divergence(flags)
                if first is not None:
                    issue = (
                        f"LiSSA diverged in run {run + 1} at step {step + 2 - len(flags) + first}"
                        " (the estimate grew beyond 1e6 times the vector's norm): either "
                        f"scale={scale} is below the largest Hessian eigenvalue (increase "
                        "lissa_scale) or the Hessian has negative eigenvalues larger than "
                        "damping * scale (increase damping)."
                    )
                    return Solution(torch.full_like(V, float("nan")), (issue,))
                flags = []
            estimate += h / scale
    return Solution(estimate / repeat)


#: LiSSA reads its divergence flags back to the host every this many steps: one
#: device synchronisation per 50 steps instead of one per step. A run that
#: diverges is stopped at most this many steps late, and reports the first
#: step that diverged; a run that converges gives the same estimate.
DIVERGENCE_CHECK_EVERY = 50


def _divergence_flag(h, v_norm):
    """A 0-d bool tensor, left on the device: has any row of ``h`` diverged?"""
    norms = h.norm(dim=1)
    return (~torch.isfinite(norms)).any() | (norms > 1e6 * v_norm).any()


def _first_divergence(flags):
    """Index of the first true flag, or ``None``: one read back for all of them."""
    stacked = torch.stack(flags).cpu()
    hits = torch.nonzero(stacked)
    return int(hits[0, 0]) if len(hits) else None


#: Up to this many right-hand sides, :func:`solve_kernel` factors in float32 and refines.
REFINE_MAX_RHS = 16


def solve_kernel(K, V, damping):
    """``(K + damping I)^{-1} v`` for every row of ``V``; ``K`` symmetric PSD.

    The answer is that of a float64 solve (up to a relative residual of
    1e-10). For a few right-hand sides (a property gradient) a float32
    Cholesky factor plus iterative refinement in float64 gets there in about
    a quarter of the time of a float64 factor. ``K`` is not modified.
    :class:`KernelFactor` gives the same answers and keeps the factors for
    the next call.
    """
    return KernelFactor(K, damping).solve(V)


class KernelFactor:
    """``K + damping I`` factored on first use and kept: :func:`solve_kernel` for many calls.

    Scoring blocks of test points against one fitted kernel solves with the
    same matrix every time; the factors (float32 Cholesky for refinement,
    float64 Cholesky, or the pseudo-inverse when the damped kernel is not
    positive definite) are computed once, on ``K``'s device, and each one's
    success flag is read back once instead of on every call. Each solve
    returns exactly what :func:`solve_kernel` would.
    """

    def __init__(self, K, damping):
        self.K, self.damping = K, damping
        self._A64 = self._low = self._exact = None

    def solve(self, V):
        """``(K + damping I)^{-1} v`` for every row of ``V``, in ``V``'s dtype."""
        if self._A64 is None:
            self._A64 = _damped(self.K, self.damping, torch.float64)
        if self.K.dtype == torch.float32 and V.shape[0] <= REFINE_MAX_RHS:
            if self._low is None:
                factor, info = torch.linalg.cholesky_ex(_damped(self.K, self.damping, self.K.dtype))
                self._low = factor if int(info) == 0 else False
            if self._low is not False:
                solved = _refine(self._low, self._A64, V)
                if solved is not None:
                    return solved
        if self._exact is None:
            factor, info = torch.linalg.cholesky_ex(self._A64)
            # not positive definite (e.g. damping=0 with a rank-deficient kernel): pseudo-inverse
            self._exact = (("cholesky", factor) if int(info) == 0
                           else ("pinv", torch.linalg.pinv(self._A64, hermitian=True)))
        kind, factor = self._exact
        if kind == "cholesky":
            return torch.cholesky_solve(V.double().T, factor).T.to(V.dtype)
        return (factor @ V.double().T).T.to(V.dtype)


def _damped(K, damping, dtype):
    """``K + damping I`` as a new ``dtype`` tensor (the caller's ``K`` is never modified)."""
    A = K.to(dtype, copy=True)
    A.diagonal().add_(damping)
    return A


def _solve_refined(A, A64, V, max_steps=5, tol=1e-10):
    """Solve with a Cholesky factor of ``A`` (float32) refined against ``A64`` (the same
    damped matrix in float64); ``None`` if ``A`` has no factor or the refinement does not
    converge."""
    factor, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        return None
    return _refine(factor, A64, V, max_steps, tol)


def _refine(factor, A64, V, max_steps=5, tol=1e-10):
    """Solve with a float32 Cholesky ``factor`` refined against ``A64`` (the same damped
    matrix in float64); ``None`` if the refinement does not converge."""
    B = V.double().T
    x = torch.cholesky_solve(V.to(factor.dtype).T, factor).double()
    target = tol * B.norm()
    for _ in range(max_steps):
        residual = B - A64 @ x
        if residual.norm() <= target:
            return x.T.to(V.dtype)
        x += torch.cholesky_solve(residual.to(factor.dtype), factor).double()
    return None  # too ill-conditioned for a float32 factor


def factor_dense(H):
    """``(eigenvalues (p,), eigenvectors (p, p))`` of a symmetric ``H``, float64, on its device.

    Computed once per fitted Hessian; :func:`solve_dense` applies any damping
    to it. An eigendecomposition, not a least-squares solve, because CUDA's
    ``lstsq`` has only the ``gels`` driver, which assumes full rank and
    returns garbage for a singular damped Hessian.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(H.double())
    return eigenvalues, eigenvectors


def solve_dense(eigenvalues, eigenvectors, V, damping, *, rtol=None):
    """``(H + damping I)^+ v`` for every row of ``V``, from ``H = Q diag(w) Q^T``.

    ``eigenvalues`` and ``eigenvectors`` come from :func:`factor_dense` and
    move to ``V``'s device. An eigenvalue of the damped Hessian with
    ``|w + damping| <= rtol * max |w + damping|`` counts as zero and its
    component is dropped: the answer is the pseudo-inverse's (the
    minimum-norm least-squares solution), finite for a singular Hessian with
    ``damping=0`` (e.g. the parameters of dead ReLU units). ``rtol`` defaults
    to ``p`` times the machine epsilon of ``V``'s dtype (at least float32),
    the precision the Hessian was computed in. The solve is in float64.
    """
    w = eigenvalues.to(V.device) + damping
    Q = eigenvectors.to(V.device)
    if rtol is None:
        rtol = len(w) * torch.finfo(accumulation_dtype(V.dtype)).eps
    keep = w.abs() > rtol * w.abs().max()
    inverse = torch.where(keep, 1 / torch.where(keep, w, 1.0), 0.0)
    return (((V.double() @ Q) * inverse) @ Q.T).to(V.dtype)
