"""scikit-learn's estimator checks over every public estimator of the package.

Estimators are found by walking ``skggda`` (so a new one cannot be forgotten)
and instantiated with small, fast parameters from ``FAST_PARAMS``, and once
more at their defaults, as a new user would (slow: the default TRAK trains
ten nets per check).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.utils.estimator_checks import check_param_validation, parametrize_with_checks

import skggda
from skggda.models import make_regressor

from conftest import tiny_net


def public_estimators():
    """Public (non-abstract, non-underscore) estimator classes defined in skggda."""
    found = {}
    for info in pkgutil.walk_packages(skggda.__path__, "skggda."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseEstimator)
                and obj.__module__.startswith("skggda.")
                and not name.startswith(("_", "Base"))
            ):
                found[name] = obj
    return found


def fast_net():
    return tiny_net(hidden=(4,), epochs=2, batch_size=16)


def fast_regressor():
    return make_regressor((4,), max_epochs=2, lr=1e-2, batch_size=16, random_state=0)


FAST_PARAMS = {
    "ConvertedModel": dict(estimator=LogisticRegression()),
    "GradKMeansGrouper": dict(group_size=3, estimator=fast_net(), random_state=0),
    "InfluenceAttributor": dict(estimator=fast_net(), random_state=0),
    "KMeansGrouper": dict(group_size=3, random_state=0),
    # scikit-learn's checks feed numbers; a tokenizer takes text, so only the
    # API checks apply (the text tests exercise it on real pairs)
    "PairTokenizer": dict(max_length=8),
    "RandomGrouper": dict(group_size=3, random_state=0),
    "ReprKMeansGrouper": dict(group_size=3, estimator=fast_net(), random_state=0),
    "TRAKAttributor": dict(estimator=fast_net(), n_models=2, random_state=0),
    "TracInAttributor": dict(estimator=fast_net(), random_state=0),
}

#: The estimators that wrap a model, checked a second time with a regressor
#: inside (scikit-learn's checks feed them numeric targets).
REGRESSOR_PARAMS = {
    "GradKMeansGrouper": dict(group_size=3, estimator=fast_regressor(), random_state=0),
    "InfluenceAttributor": dict(estimator=fast_regressor(), random_state=0),
    "ReprKMeansGrouper": dict(group_size=3, estimator=fast_regressor(), random_state=0),
    "TRAKAttributor": dict(estimator=fast_regressor(), n_models=2, random_state=0),
    "TracInAttributor": dict(estimator=fast_regressor(), random_state=0),
}

#: Wrappers checked with scikit-learn's own models inside (converted to torch).
SKLEARN_PARAMS = {
    "GradKMeansGrouper": dict(group_size=3, estimator=LogisticRegression(), random_state=0),
    "InfluenceAttributor": dict(estimator=LogisticRegression()),
    "TracInAttributor": dict(estimator=Ridge()),
}

#: Estimators that are not checked here, and why.
NOT_CHECKED = {
    # skorch's own NeuralNetClassifier / NeuralNetRegressor with a seed added:
    # their constructor and parameter handling are skorch's, which does not
    # follow scikit-learn's estimator checks (they are tested in
    # test_models.py and test_regression.py).
    "SeededNeuralNetClassifier",
    "SeededNeuralNetRegressor",
}


def instances():
    estimators = public_estimators()
    missing = set(estimators) - set(FAST_PARAMS) - NOT_CHECKED
    assert not missing, f"add fast parameters for {sorted(missing)} to FAST_PARAMS"
    return [estimators[name](**params[name]) for params in (FAST_PARAMS, REGRESSOR_PARAMS,
                                                            SKLEARN_PARAMS)
            for name in sorted(params)]


def default_instances():
    """Every checked estimator at its defaults: only required arguments are passed."""
    estimators = public_estimators()
    return [estimators[name](**required_arguments(estimators[name], FAST_PARAMS[name]))
            for name in sorted(FAST_PARAMS)]


def required_arguments(cls, params):
    """The entries of ``params`` that ``cls`` cannot do without (``ConvertedModel``'s model)."""
    signature = inspect.signature(cls.__init__)
    required = {name for name, parameter in signature.parameters.items()
                if parameter.default is parameter.empty and name != "self"
                and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)}
    return {name: value for name, value in params.items() if name in required}


def test_walk_finds_the_public_estimators():
    assert {"GradKMeansGrouper", "InfluenceAttributor", "KMeansGrouper", "RandomGrouper",
            "ReprKMeansGrouper", "TRAKAttributor", "TracInAttributor"} <= set(public_estimators())


@parametrize_with_checks(instances())
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks(default_instances())
def test_sklearn_compatible_estimator_at_defaults(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", instances(), ids=lambda e: type(e).__name__)
def test_param_validation(estimator):
    check_param_validation(type(estimator).__name__, estimator)
