"""Networks and the paper's training recipe, as skorch classifiers."""

from ._callbacks import CheckpointRecorder, OneCycleSchedule
from ._classifier import SeededNeuralNetClassifier, make_classifier, make_resnet_classifier
from ._mlp import MLP
from ._resnet import ResNet18

__all__ = [
    "MLP",
    "CheckpointRecorder",
    "OneCycleSchedule",
    "ResNet18",
    "SeededNeuralNetClassifier",
    "make_classifier",
    "make_resnet_classifier",
]
