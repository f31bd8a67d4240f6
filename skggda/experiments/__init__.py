"""Experiment grids: the paper's evaluation protocol, run from Python or the command line.

:func:`run_grid` runs every cell of a :class:`GridConfig` (data set, model,
attributors, groupers, group sizes, tasks, seeds) and returns one
:class:`GridRecord` per cell and measure; :func:`summarize`,
:func:`format_tables` and :func:`write_files` turn them into the paper's
tables, files and figures. The names a grid
accepts (the command line's choices) are in ``skggda.experiments._config``.
"""

from ._grid import GridConfig, GridRecord, run_grid
from ._report import format_tables, summarize, write_files

__all__ = [
    "GridConfig",
    "GridRecord",
    "format_tables",
    "run_grid",
    "summarize",
    "write_files",
]
