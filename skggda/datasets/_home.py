"""Where the real data sets live: the data folder and its missing-file errors."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that names the data folder.
DATA_ENV = "SKGGDA_DATA"

#: Folder used when neither ``data_home`` nor ``SKGGDA_DATA`` is given.
DEFAULT_DATA_HOME = "~/skggda_data"


def _resolve(data_home=None):
    """Data folder and a phrase that says where it came from (for error texts)."""
    if data_home is not None:
        if not isinstance(data_home, (str, os.PathLike)):
            raise TypeError(
                f"data_home must be a str, a path or None, got {data_home!r} "
                f"of type {type(data_home).__name__}."
            )
        source = "from the data_home argument"
    elif os.environ.get(DATA_ENV):  # an empty variable counts as unset
        data_home, source = os.environ[DATA_ENV], f"from the environment variable {DATA_ENV}"
    else:
        data_home, source = DEFAULT_DATA_HOME, "the default folder"
    # absolute() rather than resolve(): it touches no file system, so no side effect
    return Path(data_home).expanduser().absolute(), source


def get_data_home(data_home=None):
    """Folder that holds the real data sets.

    The folder is, in this order: the ``data_home`` argument, the
    environment variable ``SKGGDA_DATA`` (when set and not empty), or
    ``~/skggda_data``. Nothing is created or checked: reading a data home
    never has a side effect on the file system, and the loaders say which
    file they miss.

    Parameters
    ----------
    data_home : str, path-like or None, default=None
        Folder to use. ``~`` is expanded.

    Returns
    -------
    data_home : pathlib.Path
        Absolute path of the data folder (it may not exist).

    Examples
    --------
    >>> from skggda.datasets._home import get_data_home
    >>> get_data_home("/data/skggda").name
    'skggda'
    """
    return _resolve(data_home)[0]


def _data_file(data_home, relative, name, description):
    """Absolute path of ``relative`` under the data folder; FileNotFoundError if absent.

    ``name`` and ``description`` go into the error, e.g. ``"HELOC"`` and
    ``"the FICO HELOC file"``.
    """
    return _data_files(data_home, [relative], name, description)[0]


def _data_files(data_home, relatives, name, description):
    """Like :func:`_data_file` for several files; the error lists every missing one."""
    home, source = _resolve(data_home)
    paths = [home / rel for rel in relatives]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        expected = ", ".join(missing)
        layout = ", ".join(relatives)
        raise FileNotFoundError(
            f"{name} data not found: expected {expected} (data folder {home}, "
            f"{source}). Put {description} there, or pass data_home=..., or set "
            f"{DATA_ENV} to the folder that holds {layout} (without either, the "
            f"default folder {DEFAULT_DATA_HOME} = {Path(DEFAULT_DATA_HOME).expanduser()} "
            f"is used)."
        )
    return paths
