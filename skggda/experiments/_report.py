"""Tables, files and plots of an experiment grid's records."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def summarize(records):
    """Mean and standard error over seeds per (task, metric, attributor, grouper, group size).

    Parameters
    ----------
    records : list of GridRecord
        The grid's results, one per cell and seed (from :func:`run_grid`).

    Returns
    -------
    summary : list of dict
        One row per task, metric, attributor, grouper and group size:
        ``mean``, ``sem``, ``n_seeds``, mean ``runtime_s``, ``baseline``
        and ``full_accuracy``.

    Examples
    --------
    >>> from skggda.experiments import GridRecord, summarize
    >>> records = [GridRecord("noisy", "digits", "ann-s", "tracin", "grad", 16, seed, "auc",
    ...                   auc, 90, 0.1, 0.2, 1.0) for seed, auc in [(0, 0.7), (1, 0.8)]]
    >>> row = summarize(records)[0]
    >>> round(row["mean"], 2), round(row["sem"], 2), row["n_seeds"]
    (0.75, 0.05, 2)
    """
    groups = defaultdict(list)
    for r in records:
        groups[(r.task, r.metric, r.attributor, r.grouper, r.group_size)].append(r)
    rows = []
    for (task, metric, attributor, grouper, size), rs in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3], kv[0][4])):
        values = np.array([r.value for r in rs])
        sem = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
        rows.append(dict(
            task=task, metric=metric, attributor=attributor, grouper=grouper, group_size=size,
            mean=float(values.mean()), sem=float(sem), n_seeds=len(values),
            runtime_s=float(np.mean([r.runtime_s for r in rs])),
            baseline=float(np.mean([r.baseline for r in rs])),
            full_accuracy=float(np.mean([r.full_accuracy for r in rs])),
            kept_class_share=rs[0].kept_class_share,
            stratified=rs[0].stratified,
        ))
    return rows


def format_tables(summary):
    """Paper-shaped tables: one per task and metric, rows attributor/grouper, columns group size.

    Cells read ``value ± sem / runtime s`` as in the paper's Table 3; a
    value measured with a single seed has no standard error, so its cell
    (or, when every cell is so, the table's title) says "1 seed" instead.

    Parameters
    ----------
    summary : list of dict
        The output of :func:`summarize`.

    Returns
    -------
    tables : str
        The tables, as printed by the command line.

    Examples
    --------
    >>> from skggda.experiments import GridRecord, summarize
    >>> records = [GridRecord("noisy", "digits", "ann-s", "tracin", "grad", 16, seed, "auc",
    ...                   auc, 90, 0.1, 0.2, 1.0) for seed, auc in [(0, 0.7), (1, 0.8)]]
    >>> from skggda.experiments import format_tables
    >>> print(format_tables(summarize(records)).splitlines()[4])
    tracin     grad         0.750±0.050 / 0.3
    """
    out = []
    by_table = defaultdict(list)
    for row in summary:
        by_table[(row["task"], row["metric"])].append(row)
    for (task, metric), rows in by_table.items():
        sizes = sorted({r["group_size"] for r in rows})
        single = all(r["n_seeds"] == 1 for r in rows)
        legend = "value / runtime s, 1 seed" if single else "value ± s.e. / runtime s"
        out.append(f"\n{_TITLES.get(task, task)} -- {metric} ({legend})")
        header = f"{'attributor':<10} {'grouper':<8}" + "".join(f"{s:>22}" for s in sizes)
        out += [header, "-" * len(header)]
        for (attributor, grouper), cells in _series(rows).items():
            out.append(f"{attributor:<10} {grouper:<8}" + "".join(
                f"{_cell(cells.get(s), single):>22}" for s in sizes))
        out.append(_baseline_line(rows))
    return "\n".join(out)


def _series(rows):
    """``{(attributor, grouper): {group_size: row}}``; group size 1 joins every grouper's line."""
    per_point = {r["attributor"]: r for r in rows if r["group_size"] == 1}
    series = defaultdict(dict)
    for r in rows:
        if r["group_size"] > 1:
            series[(r["attributor"], r["grouper"])][r["group_size"]] = r
    for attributor, row in per_point.items():
        lines = [key for key in series if key[0] == attributor] or [(attributor, "-")]
        for key in lines:
            series[key][1] = row
    return dict(sorted(series.items()))


_TITLES = {"noisy": "Noisy-label detection", "retraining": "Retraining score (lower is better)",
           "pruning": "Dataset pruning (higher is better)"}


def _cell(row, single_seed_table=False):
    """``mean±sem / runtime``; a single seed has no standard error to print (not ± 0)."""
    if row is None:
        return "-"
    scale = 100 if row["metric"].startswith("accuracy") else 1
    digits = 1 if scale == 100 else 3
    value = f"{scale * row['mean']:.{digits}f}"
    if row["n_seeds"] > 1:
        value += f"±{scale * row['sem']:.{digits}f}"
    elif not single_seed_table:  # the title says "1 seed" when every cell has one
        value += " (1 seed)"
    return f"{value} / {row['runtime_s']:.2g}"


def _baseline_line(rows):
    row = rows[0]
    if row["metric"] == "auc":
        return (f"baseline: random order 0.500; the attributed net's test accuracy "
                f"{100 * row['full_accuracy']:.1f}%")
    how = "stratified random removal" if row.get("stratified") else "random removal"
    return (f"baselines: no removal {100 * row['full_accuracy']:.1f}%, {how} "
            f"{100 * row['baseline']:.1f}%")


def write_files(records, summary, folder, *, plots=True):
    """Write ``records.csv``, ``summary.json`` and the runtime-vs-fidelity figures.

    The figures are one PNG per task and metric: the metric against the
    runtime (grouping + attribution, log scale), one line per attributor and
    grouper, each point labelled with its group size and the random
    baseline dashed. They need matplotlib; without it only the two files
    are written.

    Parameters
    ----------
    records : list of GridRecord
        The grid's results, one per cell and seed (from :func:`run_grid`).
    summary : list of dict
        The output of :func:`summarize`.
    folder : str or path-like
        Folder the files are written to (created if missing).
    plots : bool, default=True
        Also write the figures (when matplotlib is installed).

    Returns
    -------
    paths : list of Path
        The files written: ``records.csv``, ``summary.json``, then the PNGs.

    Examples
    --------
    One pruning record, written with its summary:

    >>> import tempfile
    >>> from skggda.experiments import GridRecord, summarize, write_files
    >>> records = [GridRecord(task="pruning", dataset="digits", model="lr", attributor="trak",
    ...                   grouper="random", group_size=8, seed=0, metric="accuracy@25%",
    ...                   value=0.9, n_groups=180, grouping_s=0.1, attribution_s=2.0,
    ...                   training_s=1.0)]
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     [p.name for p in write_files(records, summarize(records), folder, plots=False)]
    ['records.csv', 'summary.json']
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [r.as_dict() for r in records]
    csv_path = folder / "records.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path = folder / "summary.json"
    json_path.write_text(json.dumps(summary, indent=2))
    return [csv_path, json_path, *(_plot_runtime_fidelity(summary, folder) if plots else [])]


def _plot_runtime_fidelity(summary, folder):
    """The PNGs of :func:`write_files` (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    Path(folder).mkdir(parents=True, exist_ok=True)
    paths = []
    by_task = defaultdict(list)
    for row in summary:
        by_task[(row["task"], row["metric"])].append(row)
    for (task, metric), rows in by_task.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for (attributor, grouper), cells in _series(rows).items():
            rs = sorted(cells.values(), key=lambda r: r["runtime_s"])
            ax.errorbar([r["runtime_s"] for r in rs], [r["mean"] for r in rs],
                        yerr=[r["sem"] for r in rs], marker="o", capsize=2,
                        label=f"{attributor} / {grouper}")
            for r in rs:
                ax.annotate(str(r["group_size"]), (r["runtime_s"], r["mean"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        ax.axhline(rows[0]["baseline"], color="grey", ls="--", lw=1, label="random baseline")
        ax.set(xscale="log", xlabel="runtime: grouping + attribution (s)", ylabel=metric,
               title=f"{_TITLES.get(task, task)} -- runtime vs fidelity\n(labels: group size)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(folder) / f"{task}_{metric.replace('@', '_at_').replace('%', 'pct')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
