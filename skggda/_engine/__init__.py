"""The one-pass group-gradient engine: pure torch, no scikit-learn.

Estimators compose these functions; nothing here knows about skorch or
scikit-learn. See ``_passes`` for the streaming passes, ``_plan`` for how
parameters are split into hook-friendly linear blocks and a ``torch.func``
generic block, ``_projection`` for the seeded (factorised) projections,
``_curvature`` and ``_kfac`` for the inverse-curvature solvers of influence,
``_kmeans`` and ``_assign`` for the groupers' scalable K-Means and streaming
assignment, and ``_budget`` for ``batch_size="auto"``.
"""

from ._assign import CenterIndex, Whitening, anchors_of, repair_empty
from ._budget import activation_floats, auto_batch_size
from ._curvature import (
    MAX_DENSE_PARAMS,
    Solution,
    conjugate_gradient,
    dense_hessian,
    hessian_vector_products,
    lissa,
    solve_dense,
    solve_kernel,
)
from ._data import (
    IndexedRows,
    forward,
    module_device,
    module_dtype,
    n_samples,
    rows,
    take,
    to_device,
)
from ._features import find_head, penultimate_representations, preactivation_gradients
from ._gram import GramAccumulator, gram
from ._kfac import HEURISTIC_DAMPING, DiagonalBlock, KFACPreconditioner, KroneckerBlock, fit_kfac
from ._kmeans import KMeansResult, center_distances, kmeans, nearest_center
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
from ._precision import accumulation_dtype, at_least_float32
from ._projection import Projector, allocate_components

__all__ = [
    "HEURISTIC_DAMPING",
    "MAX_DENSE_PARAMS",
    "CenterIndex",
    "ChunkLayout",
    "DiagonalBlock",
    "GradientPlan",
    "GramAccumulator",
    "IndexedRows",
    "KFACPreconditioner",
    "KroneckerBlock",
    "KMeansResult",
    "Projector",
    "Solution",
    "Whitening",
    "accumulation_dtype",
    "activation_floats",
    "allocate_components",
    "anchors_of",
    "at_least_float32",
    "auto_batch_size",
    "center_distances",
    "conjugate_gradient",
    "dense_hessian",
    "evaluating",
    "find_head",
    "fit_kfac",
    "forward",
    "function_gradient",
    "gradient_dots",
    "gram",
    "group_gradients",
    "hessian_vector_products",
    "iter_per_sample_gradients",
    "kmeans",
    "lissa",
    "loss_gradient",
    "make_plan",
    "module_device",
    "module_dtype",
    "n_samples",
    "nearest_center",
    "penultimate_representations",
    "per_sample_gradients",
    "per_sample_statistics",
    "preactivation_gradients",
    "probe_batch",
    "projected_gradients",
    "repair_empty",
    "rows",
    "sample_values",
    "select_parameters",
    "solve_dense",
    "solve_kernel",
    "take",
    "to_device",
]
