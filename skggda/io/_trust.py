"""Which types a saved file may name, and how a name becomes a type.

A file names every class (and function) it needs by ``module.qualname``.
Loading resolves a name only if it is trusted: the built-in list below
(skggda's estimators, modules, callbacks and properties, and the few
scikit-learn, skorch and torch classes their recipes use) or a name the
caller passes in ``trusted=``. Built-in names resolve to objects this
module imported itself; only a caller-trusted name is imported by name.
"""

from __future__ import annotations

import importlib

import torch
from sklearn import linear_model, neural_network, preprocessing
from sklearn.frozen import FrozenEstimator
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer
from sklearn.pipeline import Pipeline
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.dataset import Dataset, ValidSplit
from skorch.history import History


class UnsafeFileError(ValueError):
    """A file that :func:`skggda.io.load` refuses; nothing from it was built or run.

    Every refusal of :func:`~skggda.io.load` is this error (or its subclass
    :class:`UntrustedTypesError`): a damaged or altered file, a wrong key, a
    recipe that would reach code, processes, devices or files, sizes the file
    does not hold, values the estimator could not have produced. The message
    names the part of the file that is wrong.

    Examples
    --------
    >>> from skggda.io import UnsafeFileError
    >>> issubclass(UnsafeFileError, ValueError)
    True
    """


class UntrustedTypesError(UnsafeFileError):
    """A saved file names types that are not trusted; nothing was built.

    Parameters
    ----------
    path : str or path-like
        The file that was refused.
    types : iterable of str
        The untrusted names.

    Attributes
    ----------
    types : list of str
        The untrusted names, as ``module.qualname``, sorted.

    Examples
    --------
    >>> from skggda.io import UntrustedTypesError
    >>> UntrustedTypesError("model.skggda", ["mypackage.nets.MyNet"]).types
    ['mypackage.nets.MyNet']
    """

    def __init__(self, path, types):
        self.types = sorted(types)
        super().__init__(
            f"{path} names types that are not trusted: {self.types}. Nothing was "
            "loaded. If you trust the source of the file, pass these names in "
            "trusted=[...] (see skggda.io.get_untrusted_types)."
        )


def type_name(obj) -> str:
    """``module.qualname`` of a class or function."""
    return f"{obj.__module__}.{obj.__qualname__}"


def _builtin_objects():
    from .. import attribution, grouping, models, properties
    from .._engine import (DenseBlock, DiagonalBlock, KFACPreconditioner, KroneckerBlock,
                           Whitening)
    from ..attribution._kernel import KernelState
    from ..attribution._store import DiskStore
    from ..models._callbacks import CheckpointRecorder, DivergenceCheck, OneCycleSchedule
    from ..properties import _CallableProperty

    skggda_types = [
        attribution.TracInAttributor, attribution.InfluenceAttributor,
        attribution.TRAKAttributor, grouping.RandomGrouper, grouping.KMeansGrouper,
        grouping.ReprKMeansGrouper, grouping.GradKMeansGrouper,
        models.SeededNeuralNetClassifier, models.SeededNeuralNetRegressor, models.MLP,
        models.ResNet18, models.ConvertedModel,
        OneCycleSchedule, CheckpointRecorder, DivergenceCheck,
        properties.MeanLoss, properties.ClassLoss, properties.Margin,
        properties.SmoothAccuracy, properties.FairnessGap, _CallableProperty, KernelState,
        Whitening, KFACPreconditioner, KroneckerBlock, DiagonalBlock, DenseBlock, DiskStore,
    ]
    others = [
        FrozenEstimator, NeuralNetClassifier, NeuralNetRegressor, History, Dataset, ValidSplit,
        torch.nn.CrossEntropyLoss, torch.nn.NLLLoss,
        torch.nn.MSELoss, torch.nn.L1Loss, torch.nn.HuberLoss, torch.nn.SmoothL1Loss,
        torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.RMSprop,
        torch.optim.Adagrad, torch.utils.data.DataLoader,
    ]
    # the scikit-learn models skggda converts (and what they hold), and pipelines of
    # scalers before them: data-only objects, restored attribute by attribute
    scikit_learn = [
        linear_model.LogisticRegression, linear_model.SGDClassifier, linear_model.SGDRegressor,
        linear_model.LinearRegression, linear_model.Ridge, neural_network.MLPClassifier,
        neural_network.MLPRegressor, AdamOptimizer, SGDOptimizer, preprocessing.LabelBinarizer,
        Pipeline, preprocessing.StandardScaler, preprocessing.MinMaxScaler,
        preprocessing.MaxAbsScaler, preprocessing.RobustScaler,
    ]
    return {type_name(obj): obj for obj in skggda_types + others + scikit_learn}


_BUILTIN = None


def builtin_trusted() -> dict:
    """``{name: object}`` of the types every file may name."""
    global _BUILTIN
    if _BUILTIN is None:  # built on first use: skggda imports this package
        _BUILTIN = _builtin_objects()
    return _BUILTIN


def untrusted(names, trusted=None) -> list:
    """The names among ``names`` that are neither built-in nor in ``trusted``."""
    allowed = set(builtin_trusted()) | set(trusted or ())
    return sorted(set(names) - allowed)


def resolve(name: str, trusted=None):
    """The object a trusted ``name`` stands for (the caller checked that it is trusted)."""
    builtin = builtin_trusted()
    if name in builtin:
        return builtin[name]
    if name not in set(trusted or ()):
        raise UntrustedTypesError("The file", [name])
    module, obj = _import_longest_module(name)
    if obj is None:
        raise UnsafeFileError(f"Cannot import the trusted name {name!r} (module {module!r}).")
    return obj


def _import_longest_module(name):
    """Import the longest importable module prefix of ``name`` and read the rest from it."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        return module_name, obj
    return name, None
