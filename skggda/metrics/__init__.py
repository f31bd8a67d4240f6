"""Evaluation of attributions: what they are worth downstream (paper section 5.3)."""

from ._datamodels import GroupLOOResult, LDSResult, group_leave_one_out, linear_datamodeling_score
from ._noisy_labels import corrupt_targets, detection_curve, noisy_label_auc
from ._removal import (
    RemovalBaselines,
    RemovalResult,
    points_to_remove,
    pruning_score,
    removal_baselines,
    removal_order,
    removal_score,
    retraining_score,
)
from ._scorers import make_lds_scorer, make_pruning_scorer, make_retraining_scorer

__all__ = [
    "GroupLOOResult",
    "LDSResult",
    "RemovalBaselines",
    "RemovalResult",
    "corrupt_targets",
    "detection_curve",
    "group_leave_one_out",
    "linear_datamodeling_score",
    "make_lds_scorer",
    "make_pruning_scorer",
    "make_retraining_scorer",
    "noisy_label_auc",
    "points_to_remove",
    "pruning_score",
    "removal_baselines",
    "removal_order",
    "removal_score",
    "retraining_score",
]
