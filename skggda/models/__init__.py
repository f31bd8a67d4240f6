"""Networks and the paper's training recipe, as skorch classifiers."""

from ._callbacks import CheckpointRecorder, OneCycleSchedule
from ._classifier import SeededNeuralNetClassifier, make_classifier
from ._mlp import MLP

__all__ = [
    "MLP",
    "CheckpointRecorder",
    "OneCycleSchedule",
    "SeededNeuralNetClassifier",
    "make_classifier",
]
