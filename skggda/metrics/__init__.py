"""Evaluation of attributions: what they are worth downstream (paper section 5.3)."""

from ._datamodels import (
    DatamodelRetrainings,
    GroupLOOResult,
    LDSResult,
    datamodel_retrainings,
    group_leave_one_out,
    lds_from_retrainings,
    linear_datamodeling_score,
    random_subsets,
)
from ._noisy_labels import corrupt_targets, detection_curve, flip_labels, noisy_label_auc
from ._orders import PRUNING_ORDERS, harmful_then_random, points_to_remove, removal_order
from ._removal import RemovalBaselines, RemovalResult, removal_baselines, removal_score
from ._removal_tasks import pruning_score, retraining_score
from ._scorers import make_lds_scorer, make_pruning_scorer, make_retraining_scorer

__all__ = [
    "PRUNING_ORDERS",
    "DatamodelRetrainings",
    "GroupLOOResult",
    "LDSResult",
    "RemovalBaselines",
    "RemovalResult",
    "corrupt_targets",
    "flip_labels",
    "datamodel_retrainings",
    "detection_curve",
    "group_leave_one_out",
    "harmful_then_random",
    "lds_from_retrainings",
    "linear_datamodeling_score",
    "make_lds_scorer",
    "make_pruning_scorer",
    "make_retraining_scorer",
    "noisy_label_auc",
    "points_to_remove",
    "pruning_score",
    "random_subsets",
    "removal_baselines",
    "removal_order",
    "removal_score",
    "retraining_score",
]
