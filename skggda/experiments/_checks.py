"""What makes a grid configuration unusable before any work: :class:`ConfigError`.

A configuration error is one its user fixes by changing the configuration or
the environment it names: an unknown name, a value out of range, options that
do not go together, a data file missing from the data folder, an optional
package the chosen model needs. ``check_config`` (in ``_grid``, which knows
the names) finds the first two before any data is read;
:func:`~skggda.experiments.load_dataset` the others. Every other exception is
a fault of the program, not of its use.
"""

from __future__ import annotations

from numbers import Integral, Real

import torch


class ConfigError(ValueError):
    """A grid configuration that cannot run as given; its message says what to change.

    The command line reports it as a usage error (exit status 2, one line on
    stderr, no traceback). A ``ValueError``, so code that caught the
    ``ValueError`` this replaced still works.

    Examples
    --------
    >>> from skggda.experiments import GridConfig, run_grid
    >>> from skggda.experiments._checks import ConfigError
    >>> try:
    ...     run_grid(GridConfig(attributors=("shapley",)))
    ... except ConfigError as error:
    ...     print(error)
    Unknown attributor 'shapley'; choose from ('tracin', 'fisher', 'lissa', 'trak', 'cg', 'exact').
    """


ConfigError.__module__ = "skggda.experiments"  # tracebacks name where users import it


def check_names(kind, names, known):
    """Raise :class:`ConfigError` unless every one of ``names`` is in ``known``."""
    for name in names:
        if name not in known:
            raise ConfigError(f"Unknown {kind} {name!r}; choose from {known}.")


def check_values(config):
    """Raise :class:`ConfigError` for the first value of ``config`` out of its range."""
    checks = [
        ("group_sizes", config.group_sizes, lambda v: all(_is_int(g) and g >= 1 for g in v),
         "positive integers"),
        ("seeds", config.seeds, lambda v: all(_is_int(s) and 0 <= s < 2**32 for s in v),
         "integers in [0, 2**32)"),
        ("lr", config.lr, lambda v: v is None or (_is_real(v) and v > 0), "a positive number"),
        ("damping", config.damping, lambda v: _is_real(v) and v >= 0, "a number >= 0"),
        ("noise", config.noise, lambda v: _is_real(v) and 0 <= v < 1, "in [0, 1)"),
        ("n_jobs", config.n_jobs, lambda v: v is None or (_is_int(v) and v != 0),
         "None or a non-zero integer (joblib)"),
    ]
    for name, value, valid, expected in checks:
        if not valid(value):
            raise ConfigError(f"{name} must be {expected}, got {value!r}.")
    try:
        torch.device(config.device)
    except RuntimeError as error:
        raise ConfigError(f"device={config.device!r} is not a torch device: {error}") from None


def check_recipe(recipe):
    """Raise :class:`ConfigError` unless ``recipe`` is ``"short"`` or ``"paper"``."""
    if recipe not in ("short", "paper"):
        raise ConfigError(f"recipe must be 'short' or 'paper', not {recipe!r}.")


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, Real) and not isinstance(value, bool)
