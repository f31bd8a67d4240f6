"""The one-pass group-gradient engine: pure torch, no scikit-learn.

Estimators compose these functions; nothing here knows about skorch or
scikit-learn. See ``_passes`` for the streaming passes, ``_plan`` for how
parameters are split into hook-friendly linear blocks and a ``torch.func``
generic block, ``_projection`` for the seeded (factorised) projections, and
``_curvature`` and ``_kfac`` for the inverse-curvature solvers of influence.
"""

from ._data import module_device, module_dtype, n_samples, take, to_device
from ._passes import (
    ChunkLayout,
    evaluating,
    function_gradient,
    gradient_dots,
    group_gradients,
    iter_per_sample_gradients,
    loss_gradient,
    per_sample_gradients,
    per_sample_statistics,
    projected_gradients,
    sample_values,
)
from ._plan import GradientPlan, make_plan, probe_batch, select_parameters
from ._curvature import (
    MAX_DENSE_PARAMS,
    conjugate_gradient,
    dense_hessian,
    hessian_vector_products,
    lissa,
    solve_dense,
    solve_kernel,
)
from ._gram import GramAccumulator, gram
from ._kfac import HEURISTIC_DAMPING, KFACPreconditioner, fit_kfac
from ._projection import Projector, allocate_components

__all__ = [
    "HEURISTIC_DAMPING",
    "MAX_DENSE_PARAMS",
    "ChunkLayout",
    "GradientPlan",
    "GramAccumulator",
    "KFACPreconditioner",
    "Projector",
    "allocate_components",
    "conjugate_gradient",
    "dense_hessian",
    "hessian_vector_products",
    "lissa",
    "solve_dense",
    "solve_kernel",
    "evaluating",
    "fit_kfac",
    "function_gradient",
    "gram",
    "gradient_dots",
    "group_gradients",
    "iter_per_sample_gradients",
    "loss_gradient",
    "make_plan",
    "module_device",
    "module_dtype",
    "n_samples",
    "per_sample_gradients",
    "per_sample_statistics",
    "probe_batch",
    "projected_gradients",
    "sample_values",
    "select_parameters",
    "take",
    "to_device",
]
