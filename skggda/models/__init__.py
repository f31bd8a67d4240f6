"""Networks and the paper's training recipe, as skorch classifiers and regressors;
scikit-learn's fitted models converted to torch."""

from ._converted import ConvertedModel
from ._classifier import SeededNeuralNetClassifier, make_classifier, make_resnet_classifier
from ._mlp import MLP
from ._regressor import SeededNeuralNetRegressor, make_regressor
from ._resnet import ResNet18
from ._text import TEXT_LAST_BLOCK, PairTokenizer, make_text_classifier

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
