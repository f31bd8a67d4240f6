"""Constructor parameters stored as scikit-learn expects."""

from __future__ import annotations


def store_init_params(estimator, arguments):
    """Set every ``__init__`` parameter of ``estimator`` as the attribute of its name.

    scikit-learn's convention: ``__init__`` only stores its arguments, no
    logic and no validation (that happens in ``fit``), so that ``get_params``,
    ``set_params`` and ``clone`` see exactly what was passed. Estimators with
    many parameters call this with their ``locals()`` instead of one
    assignment per parameter.

    Parameters
    ----------
    estimator : BaseEstimator
        The estimator being constructed.
    arguments : dict
        ``locals()`` at the top of its ``__init__``: every parameter by name.
    """
    for name in type(estimator)._get_param_names():
        setattr(estimator, name, arguments[name])
