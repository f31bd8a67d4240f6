"""Networks and the paper's training recipe, as skorch classifiers and regressors;
scikit-learn's fitted models converted to torch."""

from ._converted import ConvertedModel
from ._classifier import SeededNeuralNetClassifier
from ._mlp import MLP
from ._recipes import (
    make_classifier,
    make_regressor,
    make_resnet_classifier,
    make_text_classifier,
)
from ._regressor import SeededNeuralNetRegressor
from ._resnet import ResNet18
from ._text import TEXT_LAST_BLOCK, PairTokenizer

__all__ = [
    "TEXT_LAST_BLOCK",
    "MLP",
    "PairTokenizer",
    "ConvertedModel",
    "ResNet18",
    "SeededNeuralNetClassifier",
    "SeededNeuralNetRegressor",
    "make_classifier",
    "make_regressor",
    "make_resnet_classifier",
    "make_text_classifier",
]
