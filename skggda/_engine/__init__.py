"""The one-pass group-gradient engine: pure torch, no scikit-learn.

Estimators compose these functions; nothing here knows about skorch or
scikit-learn. See ``_passes`` for the streaming passes, ``_plan`` for how
parameters are split into hook-friendly linear blocks and a ``torch.func``
generic block, and ``_projection`` for the seeded (factorised) projections.
"""

from ._data import module_device, module_dtype, n_samples, take, to_device
from ._passes import (
    ChunkLayout,
    evaluating,
    gradient_dots,
    group_gradients,
    iter_per_sample_gradients,
    loss_gradient,
    per_sample_gradients,
    projected_gradients,
)
from ._plan import GradientPlan, make_plan, probe_batch, select_parameters
from ._projection import Projector, allocate_components

__all__ = [
    "ChunkLayout",
    "GradientPlan",
    "Projector",
    "allocate_components",
    "evaluating",
    "gradient_dots",
    "group_gradients",
    "iter_per_sample_gradients",
    "loss_gradient",
    "make_plan",
    "module_device",
    "module_dtype",
    "n_samples",
    "per_sample_gradients",
    "probe_batch",
    "projected_gradients",
    "select_parameters",
    "take",
    "to_device",
]
