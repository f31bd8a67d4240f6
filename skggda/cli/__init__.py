"""The command line: ``skggda`` (or ``python -m skggda``).

Two applications built on the library, kept out of it:

* ``skggda [options]`` runs a grid of GGDA experiments and prints tables
  shaped like the paper's (:mod:`skggda.cli._grid`, on
  :mod:`skggda.experiments`); with no options, a short noisy-label run on
  data bundled with scikit-learn.
* ``skggda explain DATA --target COLUMN`` explains a model of the user's own
  table: a report folder of which training groups help or hurt
  (:mod:`skggda.cli._explain`, on :func:`skggda.inspection.group_report`).
"""

from __future__ import annotations

import sys

def main(argv=None) -> int:
    """Run the command; returns its exit status.

    Usage errors -- what the user fixes by changing the command: options
    argparse rejects, and a :class:`~skggda.experiments.ConfigError` (unknown
    names, values out of range, options that do not go together, a missing
    data file or optional package) -- exit with status 2 and one line on
    stderr. Any other exception is an internal error and propagates: the
    interpreter prints its traceback and exits with status 1.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments; ``None`` reads ``sys.argv``. A first argument
        ``explain`` runs ``skggda explain`` with the rest.

    Returns
    -------
    status : int
        0 on success.

    Examples
    --------
    >>> from skggda.cli import main
    >>> main(["--help"])  # doctest: +SKIP
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["explain"]:
        from ._explain import main as explain  # pandas and its readers only when asked

        return explain(argv[1:])
    from ._grid import main as grid

    return grid(argv)
