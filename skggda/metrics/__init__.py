"""Evaluation of attributions: what they are worth downstream."""

from ._noisy_labels import detection_curve, noisy_label_auc

__all__ = ["detection_curve", "noisy_label_auc"]
