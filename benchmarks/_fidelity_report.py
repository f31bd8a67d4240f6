"""bench_fidelity.py's report: its tables, targets and plots (kept apart for length).

The constants the report and the benchmark share (the dataset of the run,
dattri's published figures, the projected and ensemble rows) live here;
``bench_fidelity.py`` imports them.
"""

from __future__ import annotations

import numpy as np

#: The dataset of this run (set by ``main``): picks the recipes and the loader.
DATASET = {"name": "mnist"}
#: dattri's published LDS for MNIST-10 (read from its benchmark chart, about +-0.02).
DATTRI = {
    "lr": {"exact": 0.80, "cg": 0.80, "lissa": 0.79, "tracin-last": 0.33, "grad-dot": 0.33,
           "trak-1": 0.42, "trak-10": 0.64},
    "mlp": {"cg": 0.26, "lissa": 0.14, "tracin-last": 0.15, "trak-1": 0.11, "trak-10": 0.33,
            "trak-50": 0.45},
}
#: Projected EK-FAC at these dimensions: rows ``ekfac-r<dim>`` (the curvature's top
#: eigen-coordinates, ``projection="eigen"``) and ``ekfac-random-r<dim>`` (LoGra's seeded
#: Kronecker projections, ``projection="random"``).
PROJECTIONS = (256, 1024, 4096)
#: Influence ensembles (issue 22): EK-FAC over ``M`` seeds (``-m<M>``) and / or over every
#: epoch's checkpoint (``-all``).
ENSEMBLES = ("ekfac-m2", "ekfac-m3", "ekfac-m5", "ekfac-all", "ekfac-m3-all", "ekfac-m5-all")


# -- report -------------------------------------------------------------------------------


def format_report(result, group_sizes):
    L = result["L"]
    lines = [f"\n=== {result['model']}: test accuracy {result['accuracy']:.3f}, "
             f"L = {L:.3f} s; LDS (held-out half / all / first 100 test images)",
             f"{'method':<12}{'damping':>9}{'LDS':>8}{'all':>7}{'100':>7}"
             + "".join(f"{'g=' + str(s):>8}" for s in group_sizes)
             + f"{'cost/L':>9}{'train.':>8}{'dattri':>8}"]
    for row in result["rows"]:
        ref = dattri(result).get(row["method"])
        if not np.isfinite(row["lds"]):
            lines.append(f"{row['method']:<12}  diverged at every damping")
            continue
        lines.append(
            f"{row['method']:<12}{_fmt(row['damping']):>9}{row['lds']:>8.3f}"
            f"{row['lds_all']:>7.3f}{row['lds_first100']:>7.3f}"
            + "".join(f"{row.get(f'lds_g{s}', float('nan')):>8.3f}" for s in group_sizes)
            + f"{row['seconds'] / row.get('L', L):>9.1f}"
            + f"{row.get('trainings', float('nan')):>8.2f}"
            + f"{'-' if ref is None else f'{ref:.2f}':>8}")
    return "\n".join(lines)


def _fmt(damping):
    if damping == "auto":
        return "auto"
    if isinstance(damping, str):
        return "-"  # no damping to tune
    return "default" if damping is None else f"{damping:g}"


def dattri(result):
    """dattri's published LDS for this result's model (MNIST-10 only)."""
    return DATTRI[result["model"]] if DATASET["name"] == "mnist" else {}


def targets(results):
    """The issue's targets, as ``(name, verdict)`` lines."""
    out = []
    for result in results:
        model = result["model"]
        by = {r["method"]: r for r in result["rows"]}
        if "ekfac-m5" in by:  # issue 22
            m5 = by["ekfac-m5"]
            out.append((f"{DATASET['name']} {model} ekfac-m5 LDS {m5['lds']:.3f} (held-out "
                        f"half; all {m5['lds_all']:.3f}) >= 0.65", m5["lds"] >= 0.65))
            if "lissa" in by:
                out.append((f"{DATASET['name']} {model} ekfac-m5 LDS on the first "
                            f"{by['lissa']['n_test']} >= lissa's "
                            f"({m5['lds_first100']:.3f} vs {by['lissa']['lds_first100']:.3f}) "
                            f"at <= 6 trainings ({m5['trainings']:.2f})",
                            m5["lds_first100"] >= by["lissa"]["lds_first100"]
                            and m5["trainings"] <= 6))
        for method, ref in dattri(result).items():
            if method in by:
                value = by[method]["lds_all"]
                out.append((f"{model} {method} LDS {value:.3f} >= dattri {ref:.2f} - 0.03",
                            value >= ref - 0.03))
        if model == "mlp" and "ekfac" in by:
            e = by["ekfac"]["lds_all"]
            out.append((f"mlp ekfac LDS {e:.3f} >= 0.33", e >= 0.33))
            if "lissa" in by:
                out.append((f"mlp ekfac LDS on the first 100 >= lissa's "
                            f"({by['ekfac']['lds_first100']:.3f} vs "
                            f"{by['lissa']['lds_first100']:.3f})",
                            by["ekfac"]["lds_first100"] >= by["lissa"]["lds_first100"]))
        for r in PROJECTIONS:
            if "ekfac" in by and f"ekfac-r{r}" in by:
                gap = by["ekfac"]["lds_all"] - by[f"ekfac-r{r}"]["lds_all"]
                out.append((f"{model} projected ekfac r={r} LDS within 0.02 of exact's "
                            f"({by[f'ekfac-r{r}']['lds_all']:.3f} vs "
                            f"{by['ekfac']['lds_all']:.3f})", gap <= 0.02))
        if "ekfac" in by and "tracin-last" in by:
            ratio = by["ekfac"]["attribute_s"] / by["tracin-last"]["attribute_s"]
            out.append((f"{model} ekfac attribute of 500 test images within 2x TracIn's "
                        f"({ratio:.2f}x)", ratio <= 2))
        if "ekfac" in by:
            ratio = by["ekfac"]["aggregate_s"] / by["ekfac"].get("L", result["L"])
            out.append((f"{model} ekfac fit + score_groups <= 5 L ({ratio:.1f} L)", ratio <= 5))
    return out


def plot(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: matplotlib is missing)")
        return None
    fig, panels = _panels(results, plt)
    for ax, result in panels:
        for row in result["rows"]:
            if np.isfinite(row["lds_all"]):
                _point(ax, row["seconds"] / row.get("L", result["L"]), row["lds_all"],
                       row["method"])
        for method, ref in dattri(result).items():
            ax.axhline(ref, color="grey", lw=0.6, ls=":")
            ax.annotate(f"dattri {method}", (ax.get_xlim()[0], ref), fontsize=6, color="grey")
        _label(ax, result, "fit + attribute(500 test images) / L",
               "LDS (per test image, 50 halves)", "runtime vs LDS")
    _save(fig, path, plt)
    plot_cost(results, path.with_name("lds_vs_cost.png"), plt)
    return path


TITLES = {"mnist": "MNIST-10", "heloc": "HELOC"}


def plot_cost(results, path, plt):
    """LDS against cost in trainings; the ensembles (and checkpoints) joined by lines."""
    fig, panels = _panels(results, plt)
    for ax, result in panels:
        by = {r["method"]: r for r in result["rows"]
              if np.isfinite(r["lds_all"]) and "trainings" in r}
        for method, row in by.items():
            _point(ax, row["trainings"], row["lds_all"], method,
                   marker="s" if method in ENSEMBLES else "o")
        for suffix in ("", "-all"):
            line = [m for m in ("ekfac" if not suffix else "ekfac-all", *(
                f"ekfac-m{k}{suffix}" for k in (2, 3, 5))) if m in by]
            if len(line) > 1:
                ax.plot([by[m]["trainings"] for m in line], [by[m]["lds_all"] for m in line],
                        color="grey", lw=0.8)
        ax.axvline(6, color="grey", lw=0.6, ls=":")
        _label(ax, result, "cost: trainings (fit + attribute 500 test points)",
               "LDS (per test point)", "LDS vs cost")
    _save(fig, path, plt)


def _panels(results, plt):
    """A figure with one panel per model, and its ``(axis, result)`` pairs: both plots' layout."""
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    return fig, zip(axes[0], results)


def _point(ax, x, y, name, **scatter):
    """A method's point, labelled with its name beside it."""
    ax.scatter(x, y, **scatter)
    ax.annotate(name, (x, y), fontsize=8, textcoords="offset points", xytext=(4, 3))


def _label(ax, result, xlabel, ylabel, what):
    """Log-scaled x axis, the axis labels and a title naming the data set, model and ``what``."""
    ax.set(xscale="log", xlabel=xlabel, ylabel=ylabel,
           title=f"{TITLES[DATASET['name']]}, {result['model'].upper()}: {what}")


def _save(fig, path, plt):
    """Write ``fig`` to ``path`` (120 dpi) and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
