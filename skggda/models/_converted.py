"""A scikit-learn model as the attributors see a net: a torch module, a loss, a penalty."""

from __future__ import annotations

from textwrap import dedent

import numpy as np
from sklearn.base import BaseEstimator, _fit_context, clone, is_classifier
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _num_samples, check_is_fitted

from ._sklearn import check_supported, to_torch


#: The Parameters section of the delegated prediction methods.
_X_PARAMETER = """Parameters
----------
X : array-like of shape (n_samples, n_features)
    Samples, as the scikit-learn model takes them."""


def _inner_has(name):
    return lambda self: hasattr(self.estimator, name)


def _delegated(name, summary, returns):
    """A :class:`ConvertedModel` method that returns the fitted model's ``name(X)``.

    Parameters
    ----------
    name : str
        The scikit-learn method.
    summary : str
        The first line of its docstring.
    returns : str
        Its numpydoc Returns entry.

    Returns
    -------
    method : function
        ``method(self, X)``, documented.
    """
    def method(self, X):
        check_is_fitted(self)
        return getattr(self.estimator_, name)(X)

    method.__name__, method.__qualname__ = name, f"ConvertedModel.{name}"
    method.__doc__ = (f"{summary}\n\n{_X_PARAMETER}\n\nReturns\n-------\n"
                      f"{dedent(returns).strip()}\n")
    return method


class ConvertedModel(BaseEstimator):
    """A scikit-learn model attributed through an equivalent torch module.

    ``fit`` fits a clone of ``estimator`` with scikit-learn itself, then
    converts it (:func:`~skggda.models.to_torch`): ``module_`` holds the
    same weights, activations and output link, ``criterion_`` the
    per-sample training loss and ``penalty_`` the L2 penalty as
    scikit-learn scales it. Predictions are scikit-learn's. The attributors
    wrap a scikit-learn ``estimator`` in this class themselves: an unfitted
    model is fitted here, a fitted one is converted as it is
    (:meth:`from_fitted`), never refitted; ``clone`` gives the unfitted
    recipe that retraining-based metrics refit.

    Parameters
    ----------
    estimator : estimator
        A :class:`~sklearn.linear_model.LogisticRegression`,
        :class:`~sklearn.linear_model.SGDClassifier`,
        :class:`~sklearn.linear_model.SGDRegressor`,
        :class:`~sklearn.linear_model.LinearRegression`,
        :class:`~sklearn.linear_model.Ridge`,
        :class:`~sklearn.neural_network.MLPClassifier` or
        :class:`~sklearn.neural_network.MLPRegressor`.
    random_state : int, RandomState instance or None, default=None
        Set as the model's own ``random_state`` (when it has one) before
        fitting; ``None`` leaves the model's.

    Attributes
    ----------
    estimator_ : estimator
        The fitted scikit-learn model (the given one itself after
        :meth:`from_fitted`).
    module_ : torch.nn.Module
        Its torch equivalent, float64.
    criterion_ : torch.nn.Module
        Per-sample training loss on ``module_``'s output.
    penalty_ : dict of str to float
        L2 strength of each penalised parameter of ``module_``: the training
        objective is the mean loss plus ``mu / 2 * ||param||^2`` per entry.
    classes_ : ndarray of shape (n_classes,)
        The classifier's classes (classifiers only).
    n_train_samples_ : int
        Training samples the penalty was scaled with.
    n_features_in_ : int
        Number of features seen during ``fit``.

    Examples
    --------
    scikit-learn fits; the torch module gives the same probabilities:

    >>> import numpy as np
    >>> import torch
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skggda.models import ConvertedModel
    >>> X = np.random.RandomState(0).normal(size=(50, 3))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> model = ConvertedModel(LogisticRegression(C=0.5)).fit(X, y)
    >>> logits = model.module_(torch.as_tensor(X))
    >>> bool(np.allclose(torch.softmax(logits, 1).detach(), model.predict_proba(X)))
    True
    >>> round(model.penalty_["module.head.weight"], 6)  # 1 / (C n)
    0.04
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"])],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, *, random_state=None):
        self.estimator = estimator
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit a clone of ``estimator`` with scikit-learn and convert it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples, as the scikit-learn model takes them.
        y : array-like of shape (n_samples,)
            Class labels or regression targets.

        Returns
        -------
        self : object
            The fitted and converted model.
        """
        check_supported(self.estimator)
        model = clone(self.estimator)
        if self.random_state is not None and "random_state" in model.get_params(deep=False):
            model.set_params(random_state=self.random_state)
        if getattr(X, "dtype", None) == np.float32:
            # scikit-learn solves in the data's precision: train as on float64 data
            X = X.astype(np.float64)
        return self._adopt(model.fit(X, y), _num_samples(X))

    @classmethod
    def from_fitted(cls, model, n_samples):
        """Convert a fitted ``model`` as it is (no refit).

        Parameters
        ----------
        model : estimator
            Fitted, of a supported class.
        n_samples : int
            Samples it was trained on (scales the penalty).

        Returns
        -------
        converted : ConvertedModel
            Holding ``model`` itself as ``estimator_``.
        """
        converted = cls(model, random_state=model.get_params(deep=False).get("random_state"))
        return converted._adopt(model, n_samples)

    def _adopt(self, model, n_samples):
        conversion = to_torch(model, n_samples)
        self.estimator_ = model
        self.module_, self.criterion_ = conversion.module, conversion.criterion
        self.penalty_ = conversion.penalty
        self.n_train_samples_ = int(n_samples)
        self.__dict__.pop("classes_", None)
        if is_classifier(model):
            self.classes_ = model.classes_
        self.n_features_in_ = model.n_features_in_
        return self

    predict = _delegated("predict", "scikit-learn's predictions.", """
        y_pred : ndarray of shape (n_samples,)
            Predicted classes or targets.""")
    predict_proba = available_if(_inner_has("predict_proba"))(_delegated(
        "predict_proba", "scikit-learn's class probabilities.", """
        proba : ndarray of shape (n_samples, n_classes)
            Probability of every class, in the order of ``classes_``."""))
    decision_function = available_if(_inner_has("decision_function"))(_delegated(
        "decision_function", "scikit-learn's decision function.", """
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Signed distances to the decision boundary (one column for a
            binary classifier)."""))

    def __sklearn_is_fitted__(self):
        return hasattr(self, "module_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags, tags.regressor_tags = inner.classifier_tags, inner.regressor_tags
        tags.target_tags = inner.target_tags
        tags.input_tags.sparse = inner.input_tags.sparse  # scikit-learn fits; torch holds weights
        return tags
