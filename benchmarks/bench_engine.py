"""Engine benchmark: what group attribution costs, in units of one training epoch.

What is measured
----------------
Two workloads of random data (only sizes matter for timing):

* ``heloc`` -- "HELOC size": 7,896 x 23, 2 classes, ANN-S (MLP (50, 50));
* ``mnist`` -- "MNIST size": 60,000 x 784, 10 classes, MLP (150, 150, 150).

Every timing is reported as a ratio to **L**: one forward + backward epoch
over the training set with the mean cross-entropy, batches of 512 (the batch
size of the attribution passes), a plain torch loop over numpy slices, no
optimizer step.

Every timing (L and each method) is the minimum over ``--repeats`` runs
(default 2), which filters out stalls caused by other processes.

Rows of each table (columns: random group sizes 1, 4, 16, 64, 256, 1024):

* ``TracIn end to end`` -- ``TracInAttributor(FrozenEstimator(net),
  grouper=RandomGrouper(group_size=g), batch_size=512)``, timing
  ``fit(X, y)`` + ``score_groups(X_test, y_test)``; the property is the mean
  loss over 2,000 random test points. ``net`` is ``make_classifier(hidden,
  max_epochs=1)`` fitted on the first 2,000 rows: frozen, so ``fit`` trains
  nothing. The indented rows below it are ``attr.timings_`` stages (``other``
  is input validation and checks: the total minus the stages).
* ``projected r=512`` -- ``_engine.projected_gradients`` to 512 dimensions,
  scatter-added into the groups (one pass; plan and projector built
  beforehand, not timed).
* ``naive loop`` -- the paper's baseline: for every training sample one
  forward + backward of that sample alone (``torch.autograd.grad`` over all
  parameters, flattened), a dot product with the property gradient, and an
  add into its group. It runs on a subset (2,000 samples for HELOC size, 500
  for MNIST size) and is extrapolated linearly to n; the property gradient
  (one batched pass over the test points) is added once. The loop does not
  depend on the group size: it is run once (per repeat), adding each sample into its group
  of every group size at the same time (one indexed add per sample).
* ``speedup`` -- naive time / TracIn time ("x faster").

The naive loop uses the same fitted module as TracIn, so at group size 1 the
two compute the same numbers on the subset; that agreement is printed as a
check.

Targets (PASS/FAIL per workload): TracIn <= 3 L and projected <= 5 L at every
group size, and TracIn >= 30x faster than the naive loop at every group size.

Influence functions and TRAK: a second table per workload, same data and
frozen net (``--no-influence`` skips it; ``--no-lissa`` skips LiSSA in it);
its rows, targets and L are described in ``_engine_influence.py``.

Timing, L, contention and the table layout come from ``_harness.py``.
Quick ratios (``--quick``: n / 10, and LiSSA's ``lissa_repeat`` / 10) are
dominated by fixed overheads and only check that the script runs.

How to read it
--------------
A ratio of 1.5 means the method costs one and a half training epochs,
whatever the hardware; ratios near 1-2 that stay flat across the columns mean
the cost does not grow with the number of groups. Absolute seconds for L are
printed with each table. On a shared or small CPU, expect ~10-20% noise;
another busy process makes multi-threaded CPU timings erratic (each parallel
region waits for a preempted thread), sometimes by orders of magnitude. Each
workload therefore prints the CPU time that *other* processes (and the
hypervisor, as steal) took while it ran: trust a table only when that is
small next to the workload's wall time.

Usage
-----
::

    python benchmarks/bench_engine.py                    # both workloads
    python benchmarks/bench_engine.py --quick            # n / 10: smoke run
    python benchmarks/bench_engine.py --workloads heloc --json out.json
    python benchmarks/bench_engine.py --device cuda --threads 8
    python benchmarks/bench_engine.py --no-influence     # TracIn table only (~4 min)
    python benchmarks/bench_engine.py --no-lissa         # influence part without LiSSA

A full run takes ~30 minutes on 2 cores, most of it LiSSA at MNIST size
(~80 s a run, 12 runs).

``--threads`` defaults to the number of cores available to the process;
``--device`` defaults to ``cuda`` when available. Data stays in host memory
as numpy arrays; the modules live on the device and the library moves
batches.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.frozen import FrozenEstimator

import skggda
from _engine_influence import (
    INFLUENCE_TARGETS, influence_verdicts, print_influence_report, run_influence,
)
from _harness import (BATCH_SIZE, GROUP_SIZES, N_COMPONENTS, SIZES, Table, benchmark_parser,
                     environment, epoch_seconds, group_columns, print_closing,
                     print_contention, print_overall, print_verdicts, start, timed,
                     with_contention, workload_specs, write_json)
from skggda import _engine
from skggda.utils import record_timings
from skggda.models import MLP, make_classifier

N_FIT_NET = 2000
REPEATS = 2
TARGETS = {"tracin_max_L": 3.0, "projected_max_L": 5.0, "min_speedup": 30.0}

WORKLOADS = {
    "heloc": dict(SIZES["heloc"], n_test=2000, naive_subset=2000, trak_group_sizes=GROUP_SIZES),
    "mnist": dict(
        SIZES["mnist"], n_test=2000, naive_subset=500,
        trak_group_sizes=(1, 64, 1024),  # ~1 min per TRAK run: three columns keep the run short
    ),
}
for _spec in WORKLOADS.values():
    _spec["title"] = f"{_spec['title']} ({_spec['model']})"


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


def per_sample_cross_entropy(output, target):
    """The engine's loss: one cross-entropy per sample."""
    return F.cross_entropy(output, target, reduction="none")


def make_data(spec, seed=0):
    """Random train and test data of the workload's size (float32, int64)."""
    rng = np.random.RandomState(seed)
    n, d, c = spec["n"], spec["n_features"], spec["n_classes"]
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.randint(c, size=n).astype(np.int64)
    X_test = rng.normal(size=(spec["n_test"], d)).astype(np.float32)
    y_test = rng.randint(c, size=spec["n_test"]).astype(np.int64)
    return X, y, X_test, y_test


def random_groups(X, group_size):
    """Labels and number of groups of ``RandomGrouper(group_size, random_state=0)``."""
    grouper = skggda.RandomGrouper(group_size=group_size, random_state=0).fit(X)
    return grouper.labels_, grouper.n_groups_


def batches(X, y, device, batch_size=BATCH_SIZE):
    for first in range(0, len(X), batch_size):
        stop = first + batch_size
        yield (torch.from_numpy(X[first:stop]).to(device),
               torch.from_numpy(y[first:stop]).to(device))


# ---------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------


def tracin_end_to_end(net, X, y, X_test, y_test, group_size, device, repeats):
    """Seconds of ``fit`` + ``score_groups``, the fastest run's stage timings, the scores."""
    runs = []

    def run():
        attr = skggda.TracInAttributor(
            FrozenEstimator(net),
            grouper=skggda.RandomGrouper(group_size=group_size, random_state=0),
            batch_size=BATCH_SIZE,
            random_state=0,
        )
        with record_timings() as stages:
            seconds, scores = timed(lambda: attr.fit(X, y).score_groups(X_test, y_test), device)
        runs.append((seconds, dict(stages), scores))

    for _ in range(repeats):
        run()
    return min(runs, key=lambda r: r[0])


def projected_features(module, X, y, group_size, device, repeats):
    """Seconds of one ``projected_gradients`` pass into the groups of ``group_size``."""
    probe = torch.from_numpy(X[:5]).to(device)
    plan = _engine.make_plan(module, per_sample_cross_entropy, probe)
    projector = _engine.Projector(plan, N_COMPONENTS, seed=0)
    labels, n_groups = random_groups(X, group_size)
    seconds, _ = timed(
        lambda: _engine.projected_gradients(
            plan, X, y, projector, labels=labels, n_groups=n_groups, batch_size=BATCH_SIZE
        ),
        device,
        repeats,
    )
    return seconds


def property_gradient(module, X_test, y_test, device):
    """Flat gradient of the mean test loss, in ``module.parameters()`` order."""
    params = list(module.parameters())
    total = [torch.zeros_like(p) for p in params]
    for X_batch, y_batch in batches(X_test, y_test, device):
        loss = F.cross_entropy(module(X_batch), y_batch, reduction="sum") / len(X_test)
        for acc, g in zip(total, torch.autograd.grad(loss, params)):
            acc += g
    return torch.cat([t.reshape(-1) for t in total])


def naive_loop(module, X, y, prop_grad, slots, n_slots, device):
    """Per-sample gradient, dot with the property gradient, add to the group(s).

    ``slots[i]`` holds sample ``i``'s group in every grouping at once, offset
    into one score vector of length ``n_slots``.
    """
    params = list(module.parameters())
    scores = torch.zeros(n_slots, dtype=prop_grad.dtype, device=device)
    for i in range(len(slots)):
        x_i = torch.from_numpy(X[i : i + 1]).to(device)
        y_i = torch.from_numpy(y[i : i + 1]).to(device)
        grads = torch.autograd.grad(F.cross_entropy(module(x_i), y_i), params)
        scores[slots[i]] += torch.dot(torch.cat([g.reshape(-1) for g in grads]), prop_grad)
    return scores


def naive_baseline(module, X, y, X_test, y_test, subset, device, repeats):
    """Extrapolated seconds of the naive loop over all of X, and its g=1 scores.

    Returns ``(seconds, details, scores_g1)`` where ``scores_g1[j]`` is the
    naive score of singleton group ``j`` (only the subset's groups are filled).
    """
    m = min(subset, len(X))
    groupings = [random_groups(X, g) for g in GROUP_SIZES]
    offsets = np.cumsum([0] + [k for _, k in groupings])
    slots = np.stack([labels[:m] + off for (labels, _), off in zip(groupings, offsets)], 1)
    slots = torch.as_tensor(slots, device=device)

    t_prop, prop_grad = timed(
        lambda: property_gradient(module, X_test, y_test, device), device, repeats
    )
    t_loop, scores = timed(
        lambda: naive_loop(module, X, y, prop_grad, slots, int(offsets[-1]), device),
        device,
        repeats,
    )
    seconds = t_prop + t_loop * len(X) / m
    details = {"subset": m, "loop_seconds": t_loop, "property_seconds": t_prop}
    scores_g1 = scores[offsets[0] : offsets[1]].double().cpu().numpy()
    return seconds, details, scores_g1


def naive_agreement(naive_g1, tracin_g1, X, subset):
    """Max |naive - TracIn| / max |TracIn| over the singleton groups of the subset."""
    labels, _ = random_groups(X, 1)
    touched = labels[: min(subset, len(X))]
    a, b = naive_g1[touched], np.asarray(tracin_g1)[touched]
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# ---------------------------------------------------------------------------
# one workload
# ---------------------------------------------------------------------------


def setup_workload(spec, device):
    """``(X, y, X_test, y_test), module, net``: data, the L module and the frozen net.

    Deterministic: calling it again gives the same data, module and net.
    """
    X, y, X_test, y_test = make_data(spec)
    torch.manual_seed(0)
    module = MLP(spec["n_features"], spec["n_classes"], spec["hidden"]).to(device).eval()
    net = make_classifier(spec["hidden"], max_epochs=1, random_state=0, device=str(device))
    net.fit(X[:N_FIT_NET], y[:N_FIT_NET])
    net.module_.eval()
    return (X, y, X_test, y_test), module, net


def run_workload(name, spec, device, repeats=REPEATS):
    (X, y, X_test, y_test), module, net = setup_workload(spec, device)

    L = epoch_seconds(module, X, y, device, repeats)
    tracin, stages, projected = {}, {}, {}
    tracin_g1_scores = None
    for g in GROUP_SIZES:
        tracin[g], stages[g], scores = tracin_end_to_end(
            net, X, y, X_test, y_test, g, device, repeats
        )
        if g == 1:
            tracin_g1_scores = scores
        projected[g] = projected_features(module, X, y, g, device, repeats)
    naive, naive_details, naive_g1 = naive_baseline(
        net.module_, X, y, X_test, y_test, spec["naive_subset"], device, repeats
    )
    return {
        "name": name,
        "title": spec["title"],
        "n": len(X),
        "n_features": spec["n_features"],
        "n_classes": spec["n_classes"],
        "hidden": list(spec["hidden"]),
        "n_test": len(X_test),
        "n_params": sum(p.numel() for p in module.parameters()),
        "L_seconds": L,
        "tracin_seconds": tracin,
        "tracin_stages": stages,
        "projected_seconds": projected,
        "naive_seconds": naive,
        "naive": naive_details,
        "naive_vs_tracin_rel_err_g1": naive_agreement(
            naive_g1, tracin_g1_scores, X, naive_details["subset"]
        ),
    }


def verdicts(result):
    """``{target: (passed, detail)}``, judged on the worst group size."""
    L = result["L_seconds"]
    slowest_tracin = max(result["tracin_seconds"].values())
    worst_tracin = slowest_tracin / L
    worst_projected = max(result["projected_seconds"].values()) / L
    worst_speedup = result["naive_seconds"] / slowest_tracin
    t_max, p_max, s_min = (
        TARGETS["tracin_max_L"], TARGETS["projected_max_L"], TARGETS["min_speedup"]
    )
    return {
        f"TracIn <= {t_max:g} L": (worst_tracin <= t_max, f"worst {worst_tracin:.2f} L"),
        f"projected <= {p_max:g} L": (worst_projected <= p_max, f"worst {worst_projected:.2f} L"),
        f">= {s_min:g}x faster than naive": (worst_speedup >= s_min, f"worst {worst_speedup:.0f}x"),
    }


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def format_table(result):
    """Rows = methods, columns = group sizes, cells = ratio to L (speedup row: x)."""
    L = result["L_seconds"]
    tracin, stages = result["tracin_seconds"], result["tracin_stages"]
    table = Table(34)
    table.header("method (ratio to L)", group_columns(GROUP_SIZES))

    def row(label, value_of, fmt="{:.2f}"):
        table.row(label, [fmt.format(value_of(g)) for g in GROUP_SIZES])

    row("TracIn end to end (fit+score)", lambda g: tracin[g] / L)
    for stage in ("training", "grouping", "gradients", "scoring"):
        row(f"  timings_['{stage}']", lambda g: stages[g].get(stage, 0.0) / L)
    row("  other (validation, checks)", lambda g: (tracin[g] - sum(stages[g].values())) / L)
    row(f"projected r={N_COMPONENTS} (engine pass)", lambda g: result["projected_seconds"][g] / L)
    row("naive per-sample loop (extrap.)", lambda g: result["naive_seconds"] / L)
    row("TracIn speedup vs naive", lambda g: result["naive_seconds"] / tracin[g], "{:.0f}x")
    return str(table)


def print_report(result, meta):
    naive = result["naive"]
    print(
        f"\n=== {result['title']}: n={result['n']} x {result['n_features']}, "
        f"{result['n_classes']} classes, hidden {tuple(result['hidden'])}, "
        f"{result['n_params']} params, property = mean loss of {result['n_test']} test points ==="
    )
    print(
        f"L = {result['L_seconds']:.4f} s (fwd+bwd epoch, batch {BATCH_SIZE}, "
        f"min of {meta['repeats']}); device {meta['device']}, torch {meta['torch']}, "
        f"{meta['threads']} threads"
    )
    print(format_table(result))
    print(
        f"naive: {naive['subset']} samples in {naive['loop_seconds']:.3f} s, extrapolated "
        f"x {result['n'] / naive['subset']:.2f}, + property gradient "
        f"{naive['property_seconds']:.4f} s = {result['naive_seconds']:.2f} s"
    )
    print(
        "check: naive vs TracIn scores at g=1 on the subset, max rel. error "
        f"{result['naive_vs_tracin_rel_err_g1']:.1e}"
    )
    print_contention(result.get("contention"), "this workload")
    print_verdicts(verdicts(result))


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def parse_args(argv=None):
    parser = benchmark_parser(__doc__, workloads=WORKLOADS, repeats=REPEATS,
                              repeats_help="time every measurement this many times")
    parser.add_argument("--no-influence", action="store_true",
                        help="skip the influence / TRAK part (Fisher, LiSSA, TRAK)")
    parser.add_argument("--no-lissa", action="store_true",
                        help="influence part without LiSSA (most of its time at MNIST size)")
    return parser.parse_args(argv)


def run_both_parts(name, spec, device, args, meta):
    """The TracIn table, then (unless ``--no-influence``) the influence / TRAK table."""
    result, load = with_contention(lambda: run_workload(name, spec, device, args.repeats))
    result["contention"] = load
    print_report(result, meta)
    if not args.no_influence:
        def influence():
            data, _, net = setup_workload(spec, device)  # the same data and frozen net again
            return run_influence(data, net, spec, device, args.repeats, args.quick,
                                 with_lissa=not args.no_lissa)

        result["influence"], load = with_contention(influence)
        result["influence"]["contention"] = load
        result["influence"]["L_seconds"] = min(
            [result["L_seconds"], *result["influence"]["L_samples"]])
        print_influence_report(result, meta)
    return result


def all_verdicts(result):
    out = dict(verdicts(result))
    if "influence" in result:
        out.update(influence_verdicts(result))
    return out


def main(argv=None):
    wall_start = time.perf_counter()
    args = parse_args(argv)
    device = start(args)
    meta = environment(args, device)
    print("skggda engine benchmark: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    results = []
    for name, spec in workload_specs(WORKLOADS, args.workloads, args.quick):
        results.append(run_both_parts(name, spec, device, args, meta))
    print_closing(meta, wall_start)
    skipped = " (LiSSA not run: --no-lissa)" if args.no_lissa and not args.no_influence else ""
    print_overall([all_verdicts(r) for r in results], skipped)
    if args.json:
        write_json(args.json, {"meta": meta, "targets": TARGETS,
                               "influence_targets": INFLUENCE_TARGETS,
                               "group_sizes": GROUP_SIZES, "results": results})


if __name__ == "__main__":
    main()
