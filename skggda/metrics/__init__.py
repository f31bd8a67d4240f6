"""Evaluation of attributions: what they are worth downstream (paper section 5.3)."""

from ._datamodels import (
    datamodel_retrainings,
    group_leave_one_out,
    lds_from_retrainings,
    linear_datamodeling_score,
)
from ._label_issues import label_issue_scores
from ._noisy_labels import corrupt_targets, detection_curve, flip_labels, noisy_label_auc
from ._removal import removal_baselines, removal_score
from ._scorers import make_lds_scorer, make_removal_scorer

__all__ = [
    "corrupt_targets",
    "flip_labels",
    "datamodel_retrainings",
    "detection_curve",
    "group_leave_one_out",
    "label_issue_scores",
    "lds_from_retrainings",
    "linear_datamodeling_score",
    "make_lds_scorer",
    "make_removal_scorer",
    "noisy_label_auc",
    "removal_baselines",
    "removal_score",
]
