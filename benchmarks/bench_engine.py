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

Influence functions and TRAK (a second table per workload, same data and
frozen net; ``--no-influence`` skips it). Its L is the fastest of the
workload's L and one epoch timed before every run of this part: single
epochs timed between runs vary several-fold (after heavy runs, or under
other load), and an L caught slow would flatter every ratio. Every cell is
``fit(X, y)``
+ ``score_groups(X_test, y_test)`` (min over ``--repeats``), with all keys of
``attr.timings_`` printed as indented stage rows:

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
  passes); ``timings_['training']`` is the net
  trained once on all data (for the groupers), excluded from the per-model
  figures. ``one member trained alone`` is ``clone(recipe).fit`` on a random
  half, timed separately (min over ``--repeats``). Target: per-model overhead
  = ensemble / 10 - one member's training <= 6 L at every group size run (the
  row ``+ scoring / 10`` adds each member's share of ``score_groups``, for
  information). All group sizes on HELOC size; g = 1, 64, 1024 on MNIST size
  (each run trains 11 nets: ~35 s there on 2 cores).

``--quick`` also divides LiSSA's ``lissa_repeat`` by 10 (its cost does not
depend on n); quick ratios are dominated by fixed overheads and only check
that the script runs.

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

import argparse
import json
import os
import platform
import re
import resource
import time
import warnings

import numpy as np
import sklearn
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
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
# influence / TRAK part (its own table and targets per workload)
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

WORKLOADS = {
    "heloc": dict(
        title="HELOC size (ANN-S)", n=7896, n_features=23, n_classes=2,
        hidden=(50, 50), n_test=2000, naive_subset=2000, trak_group_sizes=GROUP_SIZES,
    ),
    "mnist": dict(
        title="MNIST size (MLP 150x3)", n=60000, n_features=784, n_classes=10,
        hidden=(150, 150, 150), n_test=2000, naive_subset=500,
        trak_group_sizes=(1, 64, 1024),  # ~1 min per TRAK run: three columns keep the run short
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
# influence functions and TRAK (Fisher, LiSSA, TRAK ensembles)
# ---------------------------------------------------------------------------


class EpochClock:
    """Times one epoch (L) before every timed run of the influence part.

    Single epochs vary several-fold between runs (after a heavy run, or
    under other load); an L taken only at the start can be caught slow and
    flatter every ratio. The influence tables divide by the fastest epoch
    seen anywhere in the part (or at the workload's start).
    """

    def __init__(self, module, X, y, device):
        self.module, self.X, self.y, self.device = module, X, y, device
        self.samples = []

    def tick(self):
        self.samples.append(epoch_seconds(self.module, self.X, self.y, self.device, 1))


def attributor_run(make_attr, data, device, repeats, clock=None):
    """Fastest of ``repeats`` runs of ``make_attr().fit(X, y).score_groups(X_test, y_test)``.

    Returns ``{"seconds", "timings", "warnings", "finite", "runs"}``: the
    fastest run's ``timings_``, the messages of the ``ConvergenceWarning``s
    it raised, whether its scores are all finite, and every run's seconds.
    Other warnings are shown as usual.
    """
    X, y, X_test, y_test = data
    runs = []
    for _ in range(repeats):
        if clock is not None:
            clock.tick()
        attr = make_attr()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            seconds, scores = timed(lambda: attr.fit(X, y).score_groups(X_test, y_test), device)
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        runs.append({
            "seconds": seconds, "timings": dict(attr.timings_),
            "warnings": [str(w.message) for w in caught
                         if issubclass(w.category, ConvergenceWarning)],
            "finite": bool(np.isfinite(scores).all()),
        })
        del attr, scores
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["runs"] = [r["seconds"] for r in runs]
    best["warnings_all_runs"] = sum(len(r["warnings"]) for r in runs)
    return best


def fisher_rows(net, data, variant, device, repeats, clock=None):
    """Fisher influence (``n_components=512``) of the frozen net at every group size."""

    def make(g):
        return lambda: skggda.InfluenceAttributor(
            FrozenEstimator(net), grouper=skggda.RandomGrouper(group_size=g, random_state=0),
            solver="fisher", fisher=variant, n_components=N_COMPONENTS,
            batch_size=BATCH_SIZE, random_state=0,
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
            FrozenEstimator(net), grouper=skggda.RandomGrouper(group_size=g, random_state=0),
            solver="lissa", batch_size=BATCH_SIZE, random_state=0, **lissa,
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


def trak_recipe(spec, device):
    """The unfitted net every TRAK member clones: 1 epoch, lr 1e-2."""
    return make_classifier(spec["hidden"], device=str(device), **TRAK_RECIPE)


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
            recipe, grouper=skggda.RandomGrouper(group_size=g, random_state=0),
            n_models=TRAK_MODELS, train_fraction=TRAK_TRAIN_FRACTION,
            n_components=N_COMPONENTS, batch_size=BATCH_SIZE, random_state=0,
        )

    return {g: attributor_run(make(g), data, device, repeats, clock) for g in group_sizes}


def run_influence(spec, device, repeats, quick=False, with_lissa=True):
    """Fisher (batched, empirical), LiSSA and TRAK on the workload's data and frozen net.

    ``quick`` divides LiSSA's ``lissa_repeat`` by 10 (its cost does not
    depend on n, so ``--quick`` would not shorten it otherwise);
    ``with_lissa=False`` skips LiSSA (no rows, no verdicts).
    """
    data, _, net = setup_workload(spec, device)
    X, y = data[:2]
    clock = EpochClock(net.module_, X, y, device)
    lissa = dict(LISSA, lissa_repeat=max(1, LISSA["lissa_repeat"] // 10)) if quick else LISSA
    recipe = trak_recipe(spec, device)
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
    lissa = inf["lissa"]
    if not lissa:
        return out | trak_verdict(inf, L)
    shares = {g: r["timings"].get("scoring.solve", 0.0) / r["seconds"] for g, r in lissa.items()}
    g = min(shares, key=shares.get)
    diverged = sum(r["hvp_steps"][0] < r["hvp_steps"][1] for r in lissa.values())
    note = f"; diverged early at {diverged} of {len(lissa)} group sizes" if diverged else ""
    out[f"LiSSA HVP share >= {T['lissa_min_hvp_share']:.0%}"] = (
        shares[g] >= T["lissa_min_hvp_share"], f"worst {shares[g]:.1%} at g={g}{note}")
    g_last = GROUP_SIZES[-1]
    growth = lissa[g_last]["seconds"] / lissa[1]["seconds"]
    out[f"LiSSA g={g_last} <= {T['lissa_max_growth']:g}x g=1"] = (
        growth <= T["lissa_max_growth"], f"{growth:.2f}x{note}")
    return out | trak_verdict(inf, L)


def trak_verdict(inf, L):
    """``{target: (passed, detail)}`` of TRAK's per-model overhead, on the worst cell."""
    T = INFLUENCE_TARGETS
    out = {}
    training = inf["trak_member_training_seconds"]
    overheads = {g: trak_per_model(r, training)[1] / L for g, r in inf["trak"].items()}
    g = max(overheads, key=overheads.get)
    out[f"TRAK per model <= training + {T['trak_overhead_max_L']:g} L"] = (
        overheads[g] <= T["trak_overhead_max_L"], f"worst overhead {overheads[g]:.2f} L at g={g}")
    return out


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
    width = 40
    head = f"{'method (ratio to L)':<{width}}" + "".join(f"{'g=' + str(g):>9}" for g in GROUP_SIZES)
    lines = [head, "-" * len(head)]

    def row(label, rows, value_of, fmt="{:.2f}"):
        cells = (fmt.format(value_of(rows[g])) if g in rows else "-" for g in GROUP_SIZES)
        lines.append(f"{label:<{width}}" + "".join(f"{c:>9}" for c in cells))

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
    return "\n".join(lines)


def print_contention(load, what):
    if load is not None:
        print(
            f"contention: other processes used {load['others_cpu']:.1f} CPU-s and steal "
            f"{load['steal']:.1f} s during {what}'s {load['wall']:.1f} s "
            f"(this process: {load['own_cpu']:.1f} CPU-s)"
        )


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
    for target, (ok, detail) in influence_verdicts(result).items():
        print(f"  target {target:<34} {'PASS' if ok else 'FAIL'}  ({detail})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n / 10 (and test / 10): smoke run")
    parser.add_argument(
        "--workloads", nargs="+", choices=sorted(WORKLOADS), default=["heloc", "mnist"]
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--no-influence", action="store_true",
                        help="skip the influence / TRAK part (Fisher, LiSSA, TRAK)")
    parser.add_argument("--no-lissa", action="store_true",
                        help="influence part without LiSSA (most of its time at MNIST size)")
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


def with_contention(fn):
    """``(fn(), contention)``: the result and the CPU others took while it ran."""
    start, counters = time.perf_counter(), cpu_counters()
    value = fn()
    return value, contention(counters, cpu_counters(), time.perf_counter() - start)


def all_verdicts(result):
    out = dict(verdicts(result))
    if "influence" in result:
        out.update(influence_verdicts(result))
    return out


def main(argv=None):
    wall_start = time.perf_counter()
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
        result, load = with_contention(lambda: run_workload(name, spec, device, args.repeats))
        result["contention"] = load
        print_report(result, meta)
        if not args.no_influence:
            result["influence"], load = with_contention(
                lambda: run_influence(spec, device, args.repeats, args.quick,
                                      with_lissa=not args.no_lissa))
            result["influence"]["contention"] = load
            result["influence"]["L_seconds"] = min(
                [result["L_seconds"], *result["influence"]["L_samples"]])
            print_influence_report(result, meta)
        results.append(result)
    meta["loadavg_after"] = round(os.getloadavg()[0], 2)
    meta["wall_seconds"] = time.perf_counter() - wall_start
    print(f"\nload average (1 min): before {meta['loadavg_before']}, after {meta['loadavg_after']}")
    print(f"total wall time: {meta['wall_seconds']:.1f} s")
    all_ok = all(ok for r in results for ok, _ in all_verdicts(r).values())
    skipped = " (LiSSA not run: --no-lissa)" if args.no_lissa and not args.no_influence else ""
    print(f"\nOVERALL: {'PASS' if all_ok else 'FAIL'}{skipped}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"meta": meta, "targets": TARGETS, "influence_targets": INFLUENCE_TARGETS,
                 "group_sizes": GROUP_SIZES, "results": results},
                f, indent=2, default=str,
            )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
