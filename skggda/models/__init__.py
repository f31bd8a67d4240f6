"""Networks and the paper's training recipe, as skorch classifiers and regressors;
scikit-learn's fitted models converted to torch."""

from ._callbacks import CheckpointRecorder, DivergenceCheck, OneCycleSchedule
from ._converted import ConvertedModel
from ._classifier import SeededNeuralNetClassifier, make_classifier, make_resnet_classifier
from ._mlp import MLP
from ._regressor import SeededNeuralNetRegressor, make_regressor
from ._resnet import ResNet18
from ._sklearn import Conversion, SklearnLoss, TwoLogits, to_torch
from ._text import LAST_BLOCK, PairTokenizer, TextClassifier, make_text_classifier

__all__ = [
    "LAST_BLOCK",
    "MLP",
    "PairTokenizer",
    "CheckpointRecorder",
    "Conversion",
    "ConvertedModel",
    "DivergenceCheck",
    "OneCycleSchedule",
    "ResNet18",
    "SeededNeuralNetClassifier",
    "SeededNeuralNetRegressor",
    "SklearnLoss",
    "TextClassifier",
    "TwoLogits",
    "make_classifier",
    "make_regressor",
    "make_resnet_classifier",
    "make_text_classifier",
    "to_torch",
]
