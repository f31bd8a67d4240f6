"""bench_engine.py's second table per workload: influence functions and TRAK.

Same data and frozen net as the TracIn table (``--no-influence`` skips this
part). Its L is the fastest of the workload's L and one epoch timed before
every run of this part (:class:`_harness.EpochClock`). Every cell is
``fit(X, y)`` + ``score_groups(X_test, y_test)`` (min over ``--repeats``),
with all keys of ``attr.timings_`` printed as indented stage rows:

* ``Fisher r=512, batched`` / ``empirical`` --
  ``InfluenceAttributor(FrozenEstimator(net), grouper=RandomGrouper(g),
  solver="fisher", fisher=..., n_components=512)``. Target: <= 6 L at every
  group size (each variant).
* ``LiSSA`` -- ``solver="lissa"`` with the paper's defaults (damping 1e-3,
  ``lissa_repeat`` 20, ``lissa_depth`` 200, ``lissa_scale`` 50,
  ``lissa_batch_size`` 128): its cost is the same at every group size by
  design. Run at every group size unless one run at g=1 takes more than
  ``LISSA_MAX_RUN_SECONDS`` (then g=1 and g=1024 only; the report says so).
  Targets: the Hessian-vector products (``timings_['scoring.solve']``) are
  >= 80% of the total at every group size ("dominated by HVPs"), and the
  total at g=1024 is within 1.3x of g=1 ("does not grow with k"). LiSSA stops
  early with a ``ConvergenceWarning`` (and NaN scores) when it diverges --
  possible on random-data nets, whose Hessian is indefinite; the rows ``HVPs
  done`` and ``ConvergenceWarnings`` show it, and a truncated run makes its
  time meaningless.
* ``TRAK 10 models`` -- ``TRAKAttributor(recipe, grouper=RandomGrouper(g),
  n_models=10, n_components=512)`` with ``recipe = make_classifier(hidden,
  max_epochs=1, lr=1e-2, random_state=0)`` unfitted: each member trains one
  epoch on a random half (the ensemble: ``timings_['gradients.training']``,
  the 10 trainings, plus ``timings_['gradients.kernels']``, their gradient
  passes); ``timings_['training']`` is the net trained once on all data (for
  the groupers), excluded from the per-model figures. ``one member trained
  alone`` is ``clone(recipe).fit`` on a random half, timed separately (min
  over ``--repeats``). Target: per-model overhead = ensemble / 10 - one
  member's training <= 6 L at every group size run (the row ``+ scoring /
  10`` adds each member's share of ``score_groups``, for information). All
  group sizes on HELOC size; g = 1, 64, 1024 on MNIST size (each run trains
  11 nets: ~35 s there on 2 cores).

``--quick`` also divides LiSSA's ``lissa_repeat`` by 10 (its cost does not
depend on n).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator

import skggda
from _harness import (
    BATCH_SIZE, GROUP_SIZES, N_COMPONENTS, EpochClock, Table, group_columns, print_contention,
    print_verdicts, timed,
)
from skggda.utils import record_timings
from skggda.models import make_classifier

INFLUENCE_TARGETS = {
    "fisher_max_L": 6.0,  # Fisher (both variants) at every group size
    "lissa_min_hvp_share": 0.80,  # timings_['scoring.solve'] / end to end
    "lissa_max_growth": 1.30,  # LiSSA total at g=1024 / at g=1
    "trak_overhead_max_L": 6.0,  # ensemble / n_models - one member's training
}
LISSA = dict(damping=1e-3, lissa_repeat=20, lissa_depth=200, lissa_scale=50.0,
             lissa_batch_size=128)  # the paper's defaults
LISSA_MAX_RUN_SECONDS = 180.0  # beyond this (one run at g=1), LiSSA runs at g=1 and 1024 only
TRAK_MODELS = 10
TRAK_RECIPE = dict(max_epochs=1, lr=1e-2, random_state=0)
TRAK_TRAIN_FRACTION = 0.5  # TRAKAttributor's default


# ---------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------


def attributor_run(make_attr, data, device, repeats, clock=None):
    """Fastest of ``repeats`` runs of ``make_attr().fit(X, y).score_groups(X_test, y_test)``.

    Returns ``{"seconds", "timings", "warnings", "finite", "runs"}``: the
    fastest run's stage times (``fit``'s ``timings_`` and ``score_groups``'s,
    from :func:`skggda.utils.record_timings`), the messages of the ``ConvergenceWarning``s
    it raised, whether its scores are all finite, and every run's seconds.
    Other warnings are shown as usual.
    """
    X, y, X_test, y_test = data
    runs = []
    for _ in range(repeats):
        if clock is not None:
            clock.tick()
        attr = make_attr()
        with warnings.catch_warnings(record=True) as caught, record_timings() as stages:
            warnings.simplefilter("always", ConvergenceWarning)
            seconds, scores = timed(lambda attr=attr: attr.fit(X, y).score_groups(X_test, y_test), device)
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        runs.append({
            "seconds": seconds, "timings": dict(stages),
            "warnings": [str(w.message) for w in caught
                         if issubclass(w.category, ConvergenceWarning)],
            "finite": bool(np.isfinite(scores).all()),
        })
        del attr, scores
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["runs"] = [r["seconds"] for r in runs]
    best["warnings_all_runs"] = sum(len(r["warnings"]) for r in runs)
    return best


def grouped(g):
    """``RandomGrouper(group_size=g, random_state=0)``: the groups of every cell."""
    return skggda.RandomGrouper(group_size=g, random_state=0)


def fisher_rows(net, data, variant, device, repeats, clock=None):
    """Fisher influence (``n_components=512``) of the frozen net at every group size."""

    def make(g):
        return lambda: skggda.InfluenceAttributor(
            FrozenEstimator(net), grouper=grouped(g), solver="fisher", fisher=variant,
            n_components=N_COMPONENTS, batch_size=BATCH_SIZE, random_state=0,
        )

    return {g: attributor_run(make(g), data, device, repeats, clock) for g in GROUP_SIZES}


def lissa_steps_done(messages, lissa):
    """Hessian-vector products LiSSA took before it stopped, from its divergence warning."""
    total = lissa["lissa_repeat"] * lissa["lissa_depth"]
    for message in messages:
        found = re.search(r"diverged in run (\d+) at step (\d+)", message)
        if found:
            run, step = (int(v) for v in found.groups())
            return (run - 1) * lissa["lissa_depth"] + step, total
    return total, total


def lissa_rows(net, data, lissa, device, repeats, clock=None):
    """LiSSA (paper defaults) of the frozen net: ``(rows, note)``.

    All group sizes, unless the run at g=1 takes longer than
    ``LISSA_MAX_RUN_SECONDS``: then g=1 and g=1024 only (``note`` says so).
    """

    def make(g):
        return lambda: skggda.InfluenceAttributor(
            FrozenEstimator(net), grouper=grouped(g), solver="lissa", batch_size=BATCH_SIZE,
            random_state=0, **lissa,
        )

    rows, note = {}, None
    for g in GROUP_SIZES:
        if note is not None and g != GROUP_SIZES[-1]:
            continue
        rows[g] = attributor_run(make(g), data, device, repeats, clock)
        rows[g]["hvp_steps"] = lissa_steps_done(rows[g]["warnings"], lissa)
        if g == 1 and rows[g]["seconds"] > LISSA_MAX_RUN_SECONDS:
            note = (f"one LiSSA run took {rows[g]['seconds']:.0f} s > "
                    f"{LISSA_MAX_RUN_SECONDS:.0f} s: run at g=1 and g={GROUP_SIZES[-1]} only")
    return rows, note


def member_training_seconds(recipe, X, y, device, repeats):
    """Seconds to train one member alone: ``clone(recipe).fit`` on a random half (min)."""
    n = len(X)
    half = np.sort(np.random.RandomState(0).choice(
        n, max(1, int(round(TRAK_TRAIN_FRACTION * n))), replace=False))
    seconds, _ = timed(lambda: clone(recipe).fit(X[half], y[half]), device, repeats)
    return seconds


def trak_rows(recipe, data, group_sizes, device, repeats, clock=None):
    """TRAK (10 members, ``n_components=512``) at ``group_sizes``."""

    def make(g):
        return lambda: skggda.TRAKAttributor(
            recipe, grouper=grouped(g), n_models=TRAK_MODELS,
            train_fraction=TRAK_TRAIN_FRACTION, n_components=N_COMPONENTS,
            batch_size=BATCH_SIZE, random_state=0,
        )

    return {g: attributor_run(make(g), data, device, repeats, clock) for g in group_sizes}


def run_influence(data, net, spec, device, repeats, quick=False, with_lissa=True):
    """Fisher (batched, empirical), LiSSA and TRAK on the workload's data and frozen net.

    ``quick`` divides LiSSA's ``lissa_repeat`` by 10 (its cost does not
    depend on n, so ``--quick`` would not shorten it otherwise);
    ``with_lissa=False`` skips LiSSA (no rows, no verdicts).
    """
    X, y = data[:2]
    clock = EpochClock(net.module_, X, y, device)
    lissa = dict(LISSA, lissa_repeat=max(1, LISSA["lissa_repeat"] // 10)) if quick else LISSA
    # the unfitted net every TRAK member clones: 1 epoch, lr 1e-2
    recipe = make_classifier(spec["hidden"], device=str(device), **TRAK_RECIPE)
    out = {
        "fisher_batched": fisher_rows(net, data, "batched", device, repeats, clock),
        "fisher_empirical": fisher_rows(net, data, "empirical", device, repeats, clock),
        "lissa_params": lissa,
    }
    out["lissa"], out["lissa_note"] = (lissa_rows(net, data, lissa, device, repeats, clock)
                                       if with_lissa else ({}, "skipped (--no-lissa)"))
    out["trak_group_sizes"] = list(spec["trak_group_sizes"])
    out["trak_member_training_seconds"] = member_training_seconds(recipe, X, y, device, repeats)
    out["trak"] = trak_rows(recipe, data, spec["trak_group_sizes"], device, repeats, clock)
    out["L_samples"] = clock.samples
    return out


# ---------------------------------------------------------------------------
# verdicts
# ---------------------------------------------------------------------------


def trak_per_model(row, training):
    """``(ensemble / n_models, overhead = that - one member's training)`` in seconds."""
    t = row["timings"]
    ensemble = t.get("gradients.training", float("nan")) + t.get("gradients.kernels", 0.0)
    per_model = ensemble / TRAK_MODELS
    return per_model, per_model - training


def influence_verdicts(result):
    """``{target: (passed, detail)}`` of the influence / TRAK part, on the worst cell."""
    inf = result["influence"]
    L = inf["L_seconds"]
    T = INFLUENCE_TARGETS
    out = {}
    for variant in ("batched", "empirical"):
        rows = inf[f"fisher_{variant}"]
        g = max(rows, key=lambda g: rows[g]["seconds"])
        worst = rows[g]["seconds"] / L
        out[f"Fisher ({variant}) <= {T['fisher_max_L']:g} L"] = (
            worst <= T["fisher_max_L"], f"worst {worst:.2f} L at g={g}")
    if inf["lissa"]:
        out.update(lissa_verdicts(inf["lissa"]))
    return out | trak_verdict(inf, L)


def lissa_verdicts(lissa):
    """``{target: (passed, detail)}`` of LiSSA's HVP share and growth with k."""
    T = INFLUENCE_TARGETS
    shares = {g: r["timings"].get("scoring.solve", 0.0) / r["seconds"] for g, r in lissa.items()}
    g = min(shares, key=shares.get)
    diverged = sum(r["hvp_steps"][0] < r["hvp_steps"][1] for r in lissa.values())
    note = f"; diverged early at {diverged} of {len(lissa)} group sizes" if diverged else ""
    g_last = GROUP_SIZES[-1]
    growth = lissa[g_last]["seconds"] / lissa[1]["seconds"]
    return {
        f"LiSSA HVP share >= {T['lissa_min_hvp_share']:.0%}": (
            shares[g] >= T["lissa_min_hvp_share"], f"worst {shares[g]:.1%} at g={g}{note}"),
        f"LiSSA g={g_last} <= {T['lissa_max_growth']:g}x g=1": (
            growth <= T["lissa_max_growth"], f"{growth:.2f}x{note}"),
    }


def trak_verdict(inf, L):
    """``{target: (passed, detail)}`` of TRAK's per-model overhead, on the worst cell."""
    T = INFLUENCE_TARGETS
    training = inf["trak_member_training_seconds"]
    overheads = {g: trak_per_model(r, training)[1] / L for g, r in inf["trak"].items()}
    g = max(overheads, key=overheads.get)
    return {f"TRAK per model <= training + {T['trak_overhead_max_L']:g} L": (
        overheads[g] <= T["trak_overhead_max_L"], f"worst overhead {overheads[g]:.2f} L at g={g}")}


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def stage_keys(rows):
    """``timings_`` keys of all ``rows``: top-level stages in pipeline order, each
    followed by its dotted sub-stages."""
    keys = []
    for row in rows.values():
        keys += [k for k in row["timings"] if k not in keys]
    order = ["training", "grouping", "gradients", "scoring"]
    tops = [k for k in order if k in keys] + [k for k in keys if "." not in k and k not in order]
    return [(top, [k for k in keys if k.startswith(top + ".")]) for top in tops]


def format_influence(result):
    """Rows = methods and their stages, columns = group sizes, cells = ratio to L."""
    inf = result["influence"]
    L = inf["L_seconds"]
    table = Table(40)
    table.header("method (ratio to L)", group_columns(GROUP_SIZES))

    def row(label, rows, value_of, fmt="{:.2f}"):
        table.row(label, [fmt.format(value_of(rows[g])) if g in rows else "-"
                          for g in GROUP_SIZES])

    def method(label, rows):
        row(label, rows, lambda r: r["seconds"] / L)
        for top, subs in stage_keys(rows):
            row(f"  timings_['{top}']", rows, lambda r: r["timings"].get(top, 0.0) / L)
            for sub in subs:
                row(f"    ['{sub}']", rows, lambda r: r["timings"].get(sub, 0.0) / L)
        row("  other (validation, checks)", rows, lambda r: (
            r["seconds"] - sum(v for k, v in r["timings"].items() if "." not in k)) / L)

    for variant in ("batched", "empirical"):
        method(f"Fisher r={N_COMPONENTS}, {variant} (fit+score)", inf[f"fisher_{variant}"])
    lissa, p = inf["lissa"], inf["lissa_params"]
    if lissa:
        method(f"LiSSA {p['lissa_repeat']}x{p['lissa_depth']} HVPs of {p['lissa_batch_size']} "
               "(fit+score)", lissa)
        row("  HVP share: scoring.solve / total", lissa,
            lambda r: r["timings"].get("scoring.solve", 0.0) / r["seconds"], "{:.1%}")
        row("  HVPs done (fastest run)", lissa, lambda r: r["hvp_steps"][0], "{}")
        row("  ConvergenceWarnings (all repeats)", lissa, lambda r: r["warnings_all_runs"], "{}")
        row("  scores finite (fastest run)", lissa, lambda r: "yes" if r["finite"] else "NO",
            "{}")
    trak, training = inf["trak"], inf["trak_member_training_seconds"]
    method(f"TRAK {TRAK_MODELS} models, r={N_COMPONENTS} (fit+score)", trak)
    row(f"  per model: ensemble / {TRAK_MODELS}", trak,
        lambda r: trak_per_model(r, training)[0] / L)
    row("  per model: one member trained alone", trak, lambda r: training / L)
    row("  per model: overhead (ensemble - train)", trak,
        lambda r: trak_per_model(r, training)[1] / L)
    row(f"  same, + scoring / {TRAK_MODELS} (info)", trak, lambda r: (
        trak_per_model(r, training)[1] + r["timings"].get("scoring", 0.0) / TRAK_MODELS) / L)
    return str(table)


def print_influence_report(result, meta):
    inf, p = result["influence"], result["influence"]["lissa_params"]
    print(
        f"\n-- {result['title']}: influence functions and TRAK, fit + score_groups(X_test, "
        f"y_test), min of {meta['repeats']} --"
    )
    samples = inf["L_samples"]
    print(
        f"L = {inf['L_seconds']:.4f} s: the fastest of the workload's L and {len(samples)} "
        f"epochs timed before the runs below (those ranged {min(samples):.4f}-"
        f"{max(samples):.4f} s)"
    )
    print(
        f"Fisher: InfluenceAttributor(frozen net, solver='fisher', n_components={N_COMPONENTS}); "
        f"LiSSA: damping {p['damping']:g}, repeat {p['lissa_repeat']}, depth "
        f"{p['lissa_depth']}, scale {p['lissa_scale']:g}, batch {p['lissa_batch_size']}; "
        f"TRAK: make_classifier({tuple(result['hidden'])}, max_epochs="
        f"{TRAK_RECIPE['max_epochs']}, lr={TRAK_RECIPE['lr']:g}), {TRAK_MODELS} members on "
        f"random halves (timings_['training'] = the net on all data, for the groupers)"
    )
    print(format_influence(result))
    if inf["lissa_note"]:
        print(f"LiSSA: {inf['lissa_note']}")
    skipped = [g for g in GROUP_SIZES if g not in inf["trak"]]
    if skipped:
        print(f"TRAK: run at g={', '.join(map(str, inf['trak_group_sizes']))} only on this "
              f"workload (each run trains {TRAK_MODELS + 1} nets)")
    warned = {m for r in inf["lissa"].values() for m in r["warnings"]}
    for message in sorted(warned):
        print(f"LiSSA warning: {message}")
    print(f"TRAK member training alone: {inf['trak_member_training_seconds']:.3f} s "
          f"(clone(recipe).fit on a random half, min of {meta['repeats']})")
    print_contention(inf.get("contention"), "the influence part")
    print_verdicts(influence_verdicts(result))
