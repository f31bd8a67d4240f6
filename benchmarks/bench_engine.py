"""Engine benchmark: what group attribution costs, in units of one training epoch.

What is measured
----------------
Two workloads of random data (only sizes matter for timing):

* ``heloc`` -- "HELOC size": 7,896 x 23, 2 classes, ANN-S (MLP (50, 50));
* ``mnist`` -- "MNIST size": 60,000 x 784, 10 classes, MLP (150, 150, 150).

Every timing is reported as a ratio to **L**: one forward + backward epoch
over the training set with the mean cross-entropy, batches of 512 (the batch
size of the attribution passes), a plain torch loop over numpy slices
(``torch.from_numpy``), no optimizer step.

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

``--threads`` defaults to the number of cores available to the process;
``--device`` defaults to ``cuda`` when available. Data stays in host memory
as numpy arrays; the modules live on the device and the library moves
batches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np
import sklearn
import torch
import torch.nn.functional as F
from sklearn.frozen import FrozenEstimator

import skggda
from skggda import _engine
from skggda.models import MLP, make_classifier

GROUP_SIZES = (1, 4, 16, 64, 256, 1024)
BATCH_SIZE = 512
N_COMPONENTS = 512
N_FIT_NET = 2000
REPEATS = 2
TARGETS = {"tracin_max_L": 3.0, "projected_max_L": 5.0, "min_speedup": 30.0}

WORKLOADS = {
    "heloc": dict(
        title="HELOC size (ANN-S)", n=7896, n_features=23, n_classes=2,
        hidden=(50, 50), n_test=2000, naive_subset=2000,
    ),
    "mnist": dict(
        title="MNIST size (MLP 150x3)", n=60000, n_features=784, n_classes=10,
        hidden=(150, 150, 150), n_test=2000, naive_subset=500,
    ),
}


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def per_sample_cross_entropy(output, target):
    """The engine's loss: one cross-entropy per sample."""
    return F.cross_entropy(output, target, reduction="none")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats=1):
    """``(seconds, result)``: the fastest of ``repeats`` calls of ``fn()`` (device synchronised)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def cpu_counters():
    """``(busy, steal, own)`` CPU seconds: all CPUs, hypervisor steal, this process.

    ``None`` where ``/proc/stat`` is missing (not Linux).
    """
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    hz = os.sysconf("SC_CLK_TCK")
    own = resource.getrusage(resource.RUSAGE_SELF)
    return (user + nice + system + irq + softirq) / hz, steal / hz, own.ru_utime + own.ru_stime


def contention(before, after, wall):
    """CPU seconds other processes and the hypervisor took during ``wall`` seconds."""
    if before is None or after is None:
        return None
    busy, steal, own = (b - a for a, b in zip(before, after))
    return {"wall": wall, "own_cpu": own, "others_cpu": max(busy - own, 0.0), "steal": steal}


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
    for start in range(0, len(X), batch_size):
        stop = start + batch_size
        yield (torch.from_numpy(X[start:stop]).to(device),
               torch.from_numpy(y[start:stop]).to(device))


# ---------------------------------------------------------------------------
# the reference: one training epoch
# ---------------------------------------------------------------------------


def epoch_seconds(module, X, y, device, repeats):
    """L: min over ``repeats`` of one forward+backward epoch (mean cross-entropy)."""

    def epoch():
        for X_batch, y_batch in batches(X, y, device):
            module.zero_grad(set_to_none=True)
            F.cross_entropy(module(X_batch), y_batch).backward()

    best, _ = timed(epoch, device, repeats)
    module.zero_grad(set_to_none=True)
    return best


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
        seconds, scores = timed(lambda: attr.fit(X, y).score_groups(X_test, y_test), device)
        runs.append((seconds, dict(attr.timings_), scores))

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


def run_workload(name, spec, device, repeats=REPEATS):
    X, y, X_test, y_test = make_data(spec)
    torch.manual_seed(0)
    module = MLP(spec["n_features"], spec["n_classes"], spec["hidden"]).to(device).eval()
    net = make_classifier(spec["hidden"], max_epochs=1, random_state=0, device=str(device))
    net.fit(X[:N_FIT_NET], y[:N_FIT_NET])
    net.module_.eval()

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
    head = f"{'method (ratio to L)':<34}" + "".join(f"{'g=' + str(g):>9}" for g in GROUP_SIZES)
    lines = [head, "-" * len(head)]

    def row(label, value_of, fmt="{:.2f}"):
        cells = (fmt.format(value_of(g)) for g in GROUP_SIZES)
        lines.append(f"{label:<34}" + "".join(f"{c:>9}" for c in cells))

    row("TracIn end to end (fit+score)", lambda g: tracin[g] / L)
    for stage in ("training", "grouping", "gradients", "scoring"):
        row(f"  timings_['{stage}']", lambda g: stages[g].get(stage, 0.0) / L)
    row("  other (validation, checks)", lambda g: (tracin[g] - sum(stages[g].values())) / L)
    row(f"projected r={N_COMPONENTS} (engine pass)", lambda g: result["projected_seconds"][g] / L)
    row("naive per-sample loop (extrap.)", lambda g: result["naive_seconds"] / L)
    row("TracIn speedup vs naive", lambda g: result["naive_seconds"] / tracin[g], "{:.0f}x")
    return "\n".join(lines)


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
    load = result.get("contention")
    if load is not None:
        print(
            f"contention: other processes used {load['others_cpu']:.1f} CPU-s and steal "
            f"{load['steal']:.1f} s during this workload's {load['wall']:.1f} s "
            f"(this process: {load['own_cpu']:.1f} CPU-s)"
        )
    for target, (ok, detail) in verdicts(result).items():
        print(f"  target {target:<34} {'PASS' if ok else 'FAIL'}  ({detail})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n / 10 (and test / 10): smoke run")
    parser.add_argument(
        "--workloads", nargs="+", choices=sorted(WORKLOADS), default=["heloc", "mnist"]
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--repeats", type=int, default=REPEATS,
        help=f"time every measurement this many times, keep the fastest (default {REPEATS})",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: available cores)"
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"],
        default="cuda" if torch.cuda.is_available() else "cpu",
    )
    return parser.parse_args(argv)


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def environment(args, device):
    """What the numbers depend on: versions, threads, device, settings, load."""
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return {
        "device": name, "torch": torch.__version__, "sklearn": sklearn.__version__,
        "numpy": np.__version__, "skggda": skggda.__version__,
        "threads": torch.get_num_threads(), "python": platform.python_version(),
        "machine": platform.machine(), "quick": args.quick, "repeats": args.repeats,
        "batch_size": BATCH_SIZE, "n_components": N_COMPONENTS,
        "loadavg_before": round(os.getloadavg()[0], 2),
    }


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads or available_cores())
    torch.manual_seed(0)
    np.random.seed(0)
    device = torch.device(args.device)
    meta = environment(args, device)
    print("skggda engine benchmark: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    results = []
    for name in args.workloads:
        spec = dict(WORKLOADS[name])
        if args.quick:
            spec.update(n=spec["n"] // 10, n_test=spec["n_test"] // 10)
        start, counters = time.perf_counter(), cpu_counters()
        result = run_workload(name, spec, device, args.repeats)
        result["contention"] = contention(
            counters, cpu_counters(), time.perf_counter() - start
        )
        print_report(result, meta)
        results.append(result)
    meta["loadavg_after"] = round(os.getloadavg()[0], 2)
    print(f"\nload average (1 min): before {meta['loadavg_before']}, after {meta['loadavg_after']}")
    all_ok = all(ok for r in results for ok, _ in verdicts(r).values())
    print(f"\nOVERALL: {'PASS' if all_ok else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"meta": meta, "targets": TARGETS, "group_sizes": GROUP_SIZES, "results": results},
                f, indent=2, default=str,
            )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
