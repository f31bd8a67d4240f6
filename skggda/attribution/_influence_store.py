"""Stored group gradients of InfluenceAttributor: projections and preconditioning.

Solvers with a fixed curvature keep the group gradients after ``fit`` (see
:mod:`._store`); projected K-FAC / EK-FAC keep them projected, on the
curvature's top eigen-coordinates or LoGra's random projections. Scoring
preconditions the queries (or, when there are more queries than groups, the
groups once) with the damping set at that time.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .. import _engine
from ..utils._distributed import training_pass
from ._store import row_blocks, store_features

#: The solvers with Kronecker-factored curvature.
KRONECKER_SOLVERS = ("kfac", "ekfac")


class StoredGradients:
    """Projection, the projected store and preconditioning for the stored group gradients."""

    def _projected_kronecker(self):
        """Projected K-FAC / EK-FAC (either projection): scored only through the store."""
        return self.n_components is not None and self.solver in KRONECKER_SOLVERS

    def _projected_store(self, plan, X, y):
        """The projected group gradients: always kept (``(n_groups, r)``)."""
        projector = self._projector(plan)
        with self._stage("store"):
            (features,) = training_pass(
                "projected", plan, X, y, self.labels_, self.n_groups_, projector=projector,
                n_jobs=self.n_jobs, progress=self._progress("group gradients"),
                batch_size=plan.batch_size(self.batch_size, projector.n_components))
            return store_features(self, features)  # checked finite block by block

    def _precondition(self, plan, V, projector=None):
        """``(m, d)``: the inverse damped curvature applied to rows of stored width
        (projected for projected K-FAC / EK-FAC), with the damping set now.

        ``projector``: this fit's projector when the caller has built it already
        (the eigen-coordinates' carries their eigenvalues).
        """
        if self._projected_kronecker():
            with self._stage("solve"):
                if self.projection == "eigen":
                    projector = projector or self._projector(plan)
                    return projector.precondition(V, self._damping())
                return self._kfac.precondition_projected(V, self._damping())
        return self._inverse_hvp(plan, V)

    def _correction_columns(self, plan):
        """EK-FAC with the eigen projection corrects only the directions the projector can
        keep (:func:`~skggda._engine.eigen_correction_columns`); ``None``: all of them."""
        if not (self._projected_kronecker() and self.solver == "ekfac"
                and self.projection == "eigen"):
            return None
        return functools.partial(_engine.eigen_correction_columns, plan, self.n_components)

    def _projector(self, plan):
        """The projection of ``n_components`` (Kronecker-structured for K-FAC / EK-FAC)."""
        if self.n_components is None:
            return None
        kronecker = self.solver in KRONECKER_SOLVERS
        if kronecker and self.projection == "eigen":
            return _engine.EigenProjector(plan, self._kfac, self.n_components)
        if kronecker and self.n_components < len(plan.blocks):
            raise ValueError(
                f"n_components={self.n_components} is below the {len(plan.blocks)} parameter "
                f"blocks of the model: projected {self.solver!r} needs at least one "
                "component per block.")
        return _engine.Projector(plan, self.n_components, self._seed, kronecker=kronecker)

    def _stored_or_streamed_gradients(self, plan):
        """``(groups, flat gradients)`` blocks: read from the store, or from a pass over the
        training data when there is none."""
        if self._group_store is None:
            for groups, grads in self._group_gradient_blocks(plan):
                yield groups, plan.flatten(grads)
            return
        device = _engine.module_device(plan.module)
        for rows, block in row_blocks(self._group_store):
            yield rows, torch.as_tensor(block, device=device)

    def _preconditioned_store(self, plan):
        """``P G_k`` for every stored group, in memory (a call's worth: not kept)."""
        device = _engine.module_device(plan.module)
        out = None
        for rows, block in row_blocks(self._group_store):
            solved = self._precondition(plan, torch.as_tensor(block, device=device))
            if out is None:
                out = np.empty((self.n_groups_, solved.shape[1]), dtype=block.dtype)
            out[rows] = solved.cpu().numpy()
        return out


def mean_eigenvalue(kfac):
    """``trace(C) / p``: the mean eigenvalue of the fitted curvature over all its blocks."""
    total = count = 0.0
    for block in kfac.blocks:
        total += float(block.eigenvalues.double().sum())
        count += block.eigenvalues.numel()
    return total / count
