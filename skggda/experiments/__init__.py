"""Experiment grids: the paper's evaluation protocol, run from Python or the command line."""

from ._grid import (
    ATTRIBUTORS,
    DATASETS,
    DETECTORS,
    GROUPERS,
    MODELS,
    TASKS,
    GridConfig,
    Record,
    check_config,
    flip_labels,
    load_dataset,
    run_grid,
)
from ._checks import ConfigError
from ._report import format_tables, plot_runtime_fidelity, summarize, write_files

__all__ = [
    "ATTRIBUTORS",
    "DATASETS",
    "DETECTORS",
    "GROUPERS",
    "MODELS",
    "TASKS",
    "ConfigError",
    "GridConfig",
    "Record",
    "check_config",
    "flip_labels",
    "format_tables",
    "load_dataset",
    "plot_runtime_fidelity",
    "run_grid",
    "summarize",
    "write_files",
]
