"""The one-pass group-gradient engine: pure torch, no scikit-learn.

Estimators compose these functions; nothing here knows about skorch or
scikit-learn. See ``_passes`` for the streaming passes, ``_plan`` for how
parameters are split into hook-friendly linear blocks and a ``torch.func``
generic block, ``_projection`` for the seeded (factorised) projections,
``_curvature`` and ``_kfac`` for the inverse-curvature solvers of influence,
``_kmeans`` and ``_assign`` for the groupers' scalable K-Means and streaming
assignment, and ``_budget`` for ``batch_size="auto"``.

``__all__`` holds what the rest of skggda composes (every other package reaches
the engine through it); what only the tests use is imported from its module.
"""

from ._assign import CenterIndex, Whitening, anchors_of, repair_empty
from ._budget import activation_floats, auto_batch_size
from ._curvature import (
    MAX_DENSE_PARAMS,
    KernelFactor,
    Solution,
    conjugate_gradient,
    dense_hessian,
    factor_dense,
    lissa,
    solve_dense,
    solve_kernel,
)
from ._data import (
    BatchedForward,
    IndexedRows,
    forward,
    module_device,
    module_dtype,
    n_samples,
    rows,
    take,
    to_device,
)
from ._eigen_projection import EigenProjector, correction_columns as eigen_correction_columns
from ._features import penultimate_representations, preactivation_gradients
from ._gram import gram
from ._kfac import DenseBlock, DiagonalBlock, KFACPreconditioner, KroneckerBlock, fit_kfac
from ._kmeans import center_distances, kmeans
from ._passes import (
    function_gradient,
    gradient_dots,
    group_gradients,
    iter_per_sample_gradients,
    loss_gradient,
    per_sample_statistics,
    projected_gradients,
    sample_values,
)
from ._plan import make_plan, probe_batch
from ._precision import accumulation_dtype
from ._projection import Projector

__all__ = [
    "MAX_DENSE_PARAMS",
    "BatchedForward",
    "CenterIndex",
    "DenseBlock",
    "DiagonalBlock",
    "EigenProjector",
    "IndexedRows",
    "KFACPreconditioner",
    "KernelFactor",
    "KroneckerBlock",
    "Projector",
    "Solution",
    "Whitening",
    "accumulation_dtype",
    "activation_floats",
    "anchors_of",
    "auto_batch_size",
    "center_distances",
    "conjugate_gradient",
    "dense_hessian",
    "eigen_correction_columns",
    "factor_dense",
    "fit_kfac",
    "forward",
    "function_gradient",
    "gradient_dots",
    "gram",
    "group_gradients",
    "iter_per_sample_gradients",
    "kmeans",
    "lissa",
    "loss_gradient",
    "make_plan",
    "module_device",
    "module_dtype",
    "n_samples",
    "penultimate_representations",
    "per_sample_statistics",
    "preactivation_gradients",
    "probe_batch",
    "projected_gradients",
    "repair_empty",
    "rows",
    "sample_values",
    "solve_dense",
    "solve_kernel",
    "take",
    "to_device",
]
