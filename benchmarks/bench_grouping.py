"""Grouping benchmark: what forming the groups costs, in units of one training epoch.

What is measured
----------------
Two workloads of the engine benchmark's sizes, but *structured* random data
(so that clustering means something): class-conditional Gaussian blobs,
``BLOBS_PER_CLASS`` blobs per class in a ``LATENT``-dimensional space, mapped
linearly to the features, plus isotropic noise, standardised (training mean
and scale), float32; a sample's label is its blob's class. The blobs overlap
enough that the nets are not perfect (see ``SEPARATION``): a net that fits
every point has vanishing loss gradients, which is not what Grad-K-Means is
for.

* ``heloc`` -- "HELOC size": 7,896 x 23, 2 classes, MLP (50, 50);
* ``mnist`` -- "MNIST size": 60,000 x 784, 10 classes, MLP (150, 150, 150).

The net of each workload is ``make_classifier(hidden, max_epochs=2, lr=1e-2,
random_state=0)`` fitted on the first 5,000 rows, wrapped in
:class:`~sklearn.frozen.FrozenEstimator` (so nothing below trains it).

Every timing is reported as a ratio to **L**, measured in the same run as
in ``bench_engine.py`` (``_harness.epoch_seconds``): one forward + backward
epoch over the training set (mean cross-entropy, batches of 512, plain torch
loop, no optimizer step), minimum over ``--repeats`` runs.

Part 1 -- grouping (both workloads). Rows: ``RandomGrouper``,
``KMeansGrouper``, ``ReprKMeansGrouper(estimator=frozen)``,
``GradKMeansGrouper(estimator=frozen)``, all ``random_state=0``; columns:
group sizes 4, 16, 64, 256, 1024; cell: seconds of ``.fit(X, y)`` (minimum
over ``--repeats``) / L. The model groupers' time includes their forward pass
over the training set (features), not training. Under every K-Means
grouper, a ``Lloyd (full)`` row gives the time of the same grouper with
``algorithm="lloyd"`` (k-means++ and Lloyd over all ``k`` clusters) where it
can run (group size >= 64), fitted once (not repeated: it is the slow
reference). The default ``algorithm="auto"`` *is* Lloyd up to 128 groups;
there the auto fit is the Lloyd fit, shown with ``=`` and inertia ratio 1.00.
``n_iter_`` and ``inertia_`` of every fit are printed under the table.

Part 2 -- per-test-point attribution matrix (MNIST size).
``TracInAttributor(frozen, grouper=GradKMeansGrouper(group_size=g,
random_state=0), n_components=512, random_state=0)``, timing ``fit(X, y)`` +
``attribute(X_test, y_test)`` with 10,000 test points, for g = 1 (``grouper=
None``: singletons, no grouping) and 4 ... 1024. The stage rows are
``attr.timings_`` (``other`` = total minus the stages: validation, checks).
The g = 1 matrix is 10,000 x 60,000 float32 (2.2 GiB; ``attribute`` holds
about three such buffers at its peak, ~5.5 GiB RSS measured): it is only run
when ``MemAvailable`` allows, and every matrix is freed before the next one.
Each g is run ``--attr-repeats`` times (default 1: the g = 1 run alone moves
several GiB). Check: summing the g = 1
matrix's columns over the groups of g must give the g matrix (the projection
is linear and seeded identically); the max relative difference on the first
``CHECK_ROWS`` test rows is printed.

Targets: every grouper at every group size <= 20 L on MNIST size (HELOC
size: printed, no target); K-Means inertia (auto) within 15% of full Lloyd
(ratio <= 1.15) wherever both ran, on both workloads; the attribution matrix
at every group size >= 16, grouping included, faster than at group size 1.

How to read it: see ``bench_engine.py``. ``contention:`` lines give the CPU
time other processes (and the hypervisor, as steal) took during each part;
trust a table only when that is small next to the part's wall time.

Usage
-----
::

    python benchmarks/bench_grouping.py                  # everything (~10 min on 2 cores)
    python benchmarks/bench_grouping.py --quick          # n / 10, test / 10: smoke run
    python benchmarks/bench_grouping.py --workloads heloc --no-attribution
    python benchmarks/bench_grouping.py --json out.json --device cuda --threads 8
"""

from __future__ import annotations

import gc
import math
import resource
import sys
import time

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator

import skggda
from _harness import (BATCH_SIZE, N_COMPONENTS, SIZES, Table, benchmark_parser, environment,
                     epoch_seconds, group_columns, print_closing, print_contention,
                     print_overall, print_verdicts, proc_bytes, start, timed,
                     with_contention, workload_specs, write_json)
from _harness import GROUP_SIZES as ATTR_GROUP_SIZES
from skggda.utils import record_timings
from skggda.models import MLP, make_classifier

GROUP_SIZES = ATTR_GROUP_SIZES[1:]  # grouping into singletons costs nothing
GROUPERS = ("RandomGrouper", "KMeansGrouper", "ReprKMeansGrouper", "GradKMeansGrouper")
KMEANS_GROUPERS = GROUPERS[1:]
LLOYD_MIN_GROUP_SIZE = 64
# KMeansGrouper's documented behaviour ("auto" uses Lloyd up to 128 groups): there
# the auto fit is the Lloyd fit and is not run twice
AUTO_LLOYD_MAX_GROUPS = 128
N_FIT_NET = 5000
N_TEST = 10000
CHECK_ROWS = 100
REPEATS = 2
ATTR_REPEATS = 1
BLOBS_PER_CLASS = 4
LATENT = 16
NOISE = 0.3
# Blob separation per workload: the frozen nets reach ~0.77 (HELOC size; real
# HELOC models reach ~0.72) and ~0.9 (MNIST size) training accuracy, so their
# loss gradients are neither all large nor all vanishing.
SEPARATION = {"heloc": 0.5, "mnist": 1.2}
TARGETS = {"grouping_max_L": 20.0, "inertia_max_ratio": 1.15, "attr_faster_from_g": 16}

WORKLOADS = {name: dict(size, n_test=N_TEST, sep=SEPARATION[name]) for name, size in SIZES.items()}


# ---------------------------------------------------------------------------
# data and net
# ---------------------------------------------------------------------------


def make_blob_data(spec, seed=0):
    """Class-conditional Gaussian blobs plus noise, standardised; train and test sets.

    The blobs live in a latent space of ``q = min(LATENT, d)`` dimensions:
    blob ``b`` (class ``b % n_classes``) has center ``sep * N(0, I_q)`` and unit
    spread, so ``sep`` sets how much the classes overlap. Latent points are
    mapped to the ``d`` features by one random linear map, isotropic noise of
    standard deviation ``NOISE`` is added, and features are standardised with
    the training mean and scale.
    """
    rng = np.random.RandomState(seed)
    d, c = spec["n_features"], spec["n_classes"]
    q, n_blobs = min(LATENT, d), c * BLOBS_PER_CLASS
    centers = spec["sep"] * rng.normal(size=(n_blobs, q))
    embedding = rng.normal(size=(q, d)) / np.sqrt(q)

    def sample(n):
        blob = rng.randint(n_blobs, size=n)
        latent = centers[blob] + rng.normal(size=(n, q))
        X = latent @ embedding + NOISE * rng.normal(size=(n, d))
        return X, (blob % c).astype(np.int64)

    X, y = sample(spec["n"])
    X_test, y_test = sample(spec["n_test"])
    mean, scale = X.mean(0), X.std(0)
    standardise = lambda A: ((A - mean) / scale).astype(np.float32)  # noqa: E731
    return standardise(X), y, standardise(X_test), y_test


def frozen_net(spec, X, y, device):
    """``FrozenEstimator`` of the workload's MLP, trained 2 epochs on the first rows."""
    net = make_classifier(spec["hidden"], max_epochs=2, lr=1e-2, random_state=0,
                          device=str(device))
    net.fit(X[:N_FIT_NET], y[:N_FIT_NET])
    net.module_.eval()
    return FrozenEstimator(net)


def make_grouper(name, group_size, frozen, device, algorithm="auto"):
    if name == "RandomGrouper":
        return skggda.RandomGrouper(group_size=group_size, random_state=0)
    if name == "KMeansGrouper":
        return skggda.KMeansGrouper(group_size=group_size, algorithm=algorithm,
                                    device=str(device), random_state=0)
    cls = getattr(skggda, name)
    return cls(group_size=group_size, estimator=frozen, algorithm=algorithm, random_state=0)


def auto_is_lloyd(n, group_size):
    return math.ceil(n / group_size) <= AUTO_LLOYD_MAX_GROUPS


# ---------------------------------------------------------------------------
# part 1: grouping
# ---------------------------------------------------------------------------


def fit_summary(grouper):
    return {
        "n_groups": int(grouper.n_groups_),
        "n_iter": getattr(grouper, "n_iter_", None),
        "inertia": getattr(grouper, "inertia_", None),
        "fit_time_": float(grouper.fit_time_),
    }


def grouping_part(spec, X, y, frozen, device, repeats):
    """Fit seconds (min of ``repeats``) and summaries per grouper and group size; Lloyd refs."""
    auto, lloyd = {name: {} for name in GROUPERS}, {name: {} for name in KMEANS_GROUPERS}
    n = len(X)
    for g in GROUP_SIZES:
        for name in GROUPERS:
            seconds, grouper = timed(
                lambda: make_grouper(name, g, frozen, device).fit(X, y), device, repeats
            )
            auto[name][g] = {"seconds": seconds, **fit_summary(grouper)}
            del grouper
            if name not in KMEANS_GROUPERS or g < LLOYD_MIN_GROUP_SIZE:
                continue
            if auto_is_lloyd(n, g):
                lloyd[name][g] = {**auto[name][g], "same_as_auto": True}
                continue
            seconds, grouper = timed(
                lambda: make_grouper(name, g, frozen, device, "lloyd").fit(X, y), device, 1
            )
            lloyd[name][g] = {"seconds": seconds, **fit_summary(grouper), "same_as_auto": False}
            del grouper
            gc.collect()
    return {"auto": auto, "lloyd": lloyd}


# ---------------------------------------------------------------------------
# part 2: the attribution matrix
# ---------------------------------------------------------------------------


def mem_available_bytes():
    return proc_bytes("/proc/meminfo", "MemAvailable")


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def attribution_part(X, y, X_test, y_test, frozen, device, repeats):
    """End-to-end seconds, stages and checks of fit + attribute per group size."""
    n, n_test = len(X), len(X_test)
    rows = {}
    reference = None  # first CHECK_ROWS rows of the g=1 matrix
    for g in ATTR_GROUP_SIZES:
        k = n if g == 1 else math.ceil(n / g)
        # attribute's float32 output + the float32 product + its weighted copy
        need = n_test * k * (4 + 4 + 4)
        available = mem_available_bytes()
        if available is not None and need > 0.8 * available:
            rows[g] = {"skipped": f"needs ~{need / 2**30:.1f} GiB, "
                                  f"{available / 2**30:.1f} GiB available"}
            continue
        runs = []
        for _ in range(repeats):
            grouper = None if g == 1 else skggda.GradKMeansGrouper(group_size=g, random_state=0)
            attr = skggda.TracInAttributor(frozen, grouper=grouper, n_components=N_COMPONENTS,
                                           random_state=0)
            with record_timings() as stages:
                seconds, A = timed(lambda attr=attr: attr.fit(X, y).attribute(X_test, y_test), device)
            runs.append(seconds)
            stages = dict(stages)
            labels, n_groups = attr.labels_, attr.n_groups_
            shape, nbytes, dtype = A.shape, A.nbytes, str(A.dtype)
            if g == 1:
                reference = np.array(A[:CHECK_ROWS], dtype=np.float64)
                check = None
            elif reference is not None:
                summed = torch.zeros(n_groups, len(reference), dtype=torch.float64).index_add_(
                    0, torch.as_tensor(labels).long(), torch.as_tensor(reference.T)).numpy().T
                check = float(np.abs(summed - A[:CHECK_ROWS]).max()
                              / max(np.abs(summed).max(), 1e-30))
            else:
                check = None
            del A, attr, grouper
            gc.collect()
        rows[g] = {
            "seconds": min(runs), "runs": runs, "stages": stages, "n_groups": int(n_groups),
            "shape": list(shape), "dtype": dtype, "matrix_bytes": int(nbytes),
            "peak_rss_bytes": peak_rss_bytes(), "check_vs_g1": check,
        }
    return rows


# ---------------------------------------------------------------------------
# verdicts and report
# ---------------------------------------------------------------------------


def grouping_verdicts(result):
    L = result["L_seconds"]
    verdicts = {}
    auto, lloyd = result["grouping"]["auto"], result["grouping"]["lloyd"]
    worst_name, worst_g = max(
        ((name, g) for name in GROUPERS for g in GROUP_SIZES),
        key=lambda ng: auto[ng[0]][ng[1]]["seconds"],
    )
    worst = auto[worst_name][worst_g]["seconds"] / L
    limit = TARGETS["grouping_max_L"]
    label = f"every grouper <= {limit:g} L"
    detail = f"worst {worst:.2f} L: {worst_name} g={worst_g}"
    if result["name"] == "mnist":
        verdicts[label] = (worst <= limit, detail)
    else:
        verdicts[label + " (no target here)"] = (None, detail)
    ratios = [(auto[name][g]["inertia"] / lloyd[name][g]["inertia"], name, g)
              for name in KMEANS_GROUPERS for g in lloyd[name]]
    if ratios:
        ratio, name, g = max(ratios)
        bound = TARGETS["inertia_max_ratio"]
        verdicts[f"inertia auto/lloyd <= {bound:g}"] = (
            ratio <= bound, f"worst {ratio:.3f}: {name} g={g}")
    return verdicts


def attribution_verdicts(result):
    rows = result["attribution"]
    base = rows[1]
    label = f"matrix at g >= {TARGETS['attr_faster_from_g']} faster than g=1"
    if "skipped" in base:
        return {label: (False, "g=1 was not run: " + base["skipped"])}
    verdicts = {}
    for g in ATTR_GROUP_SIZES:
        if g < TARGETS["attr_faster_from_g"]:
            continue
        if "skipped" in rows[g]:
            verdicts[f"  g={g}"] = (False, rows[g]["skipped"])
            continue
        speedup = base["seconds"] / rows[g]["seconds"]
        verdicts[f"  g={g} faster than g=1"] = (speedup > 1, f"{speedup:.2f}x")
    worst = min(base["seconds"] / rows[g]["seconds"] for g in ATTR_GROUP_SIZES
                if g >= TARGETS["attr_faster_from_g"] and "skipped" not in rows[g])
    return {label: (all(ok for ok, _ in verdicts.values()), f"worst {worst:.2f}x"), **verdicts}


def format_grouping(result):
    L, n = result["L_seconds"], result["n"]
    auto, lloyd = result["grouping"]["auto"], result["grouping"]["lloyd"]
    columns = group_columns(GROUP_SIZES)
    table = Table(36)
    table.header("grouper fit (ratio to L)", columns)
    table.row("n_groups", [str(math.ceil(n / g)) for g in GROUP_SIZES])

    def lloyd_cells(name, value_of):
        """A Lloyd (full) cell per group size: ``-`` where it was not run, ``=`` where
        it is the auto fit."""
        return ["-" if g not in lloyd[name] else value_of(g, lloyd[name][g])
                + ("=" if lloyd[name][g]["same_as_auto"] else "") for g in GROUP_SIZES]

    for name in GROUPERS:
        table.row(name, [f"{auto[name][g]['seconds'] / L:.2f}" for g in GROUP_SIZES])
        if name in KMEANS_GROUPERS:
            table.row("  Lloyd (full)",
                      lloyd_cells(name, lambda g, ref: f"{ref['seconds'] / L:.2f}"))
    table.line()
    table.header("inertia auto / Lloyd (full)", columns, rule=False)
    for name in KMEANS_GROUPERS:
        table.row(name, lloyd_cells(
            name, lambda g, ref: f"{auto[name][g]['inertia'] / ref['inertia']:.3f}"))
    table.line()
    table.header("n_iter_ (auto; Lloyd)", columns, rule=False)
    for name in KMEANS_GROUPERS:
        table.row(name, [str(auto[name][g]["n_iter"]) for g in GROUP_SIZES])
        table.row("  Lloyd (full)", ["-" if g not in lloyd[name] else
                                     str(lloyd[name][g]["n_iter"]) for g in GROUP_SIZES])
    table.line()
    table.header("inertia_ (auto, whitened space)", columns, rule=False, cell_width=11)
    for name in KMEANS_GROUPERS:
        table.row(name, [f"{auto[name][g]['inertia']:.4g}" for g in GROUP_SIZES], cell_width=11)
    table.line("(= : k <= 128, where algorithm='auto' is Lloyd: the same fit; "
               "Lloyd (full) is fitted once, auto is the min of the repeats)")
    return str(table)


def format_attribution(result):
    L, rows = result["L_seconds"], result["attribution"]
    ran = [g for g in ATTR_GROUP_SIZES if "skipped" not in rows[g]]
    table = Table(36)
    table.header("attribution matrix (ratio to L)", group_columns(ATTR_GROUP_SIZES))

    def row(label, value_of, fmt="{:.2f}"):
        table.row(label, [fmt.format(value_of(rows[g])) if g in ran else "skip"
                          for g in ATTR_GROUP_SIZES])

    row("n_groups", lambda r: r["n_groups"], "{}")
    row("fit + attribute (end to end)", lambda r: r["seconds"] / L)
    for stage in ("training", "grouping", "gradients", "attribution"):
        row(f"  timings_['{stage}']", lambda r: r["stages"].get(stage, 0.0) / L)
    row("  other (validation, checks)", lambda r: (r["seconds"] - sum(r["stages"].values())) / L)
    if 1 in ran:
        row("speed-up over g=1", lambda r: rows[1]["seconds"] / r["seconds"], "{:.2f}x")
    dtypes = sorted({rows[g]["dtype"] for g in ran})
    row(f"matrix (GiB, {'/'.join(dtypes)})", lambda r: r["matrix_bytes"] / 2**30, "{:.3f}")
    row("peak RSS so far (GiB)", lambda r: r["peak_rss_bytes"] / 2**30, "{:.1f}")
    row("check: group sums of g=1 (rel.)",
        lambda r: r["check_vs_g1"] if r["check_vs_g1"] is not None else float("nan"), "{:.0e}")
    for g in ATTR_GROUP_SIZES:
        if g not in ran:
            table.line(f"g={g} skipped: {rows[g]['skipped']}")
    return str(table)


def print_header(result, meta):
    print(
        f"\n=== {result['title']} (structured blobs): n={result['n']} x "
        f"{result['n_features']}, {result['n_classes']} classes, hidden "
        f"{tuple(result['hidden'])}, {result['n_params']} params; net: 2 epochs on "
        f"{result['n_fit_net']} rows, train accuracy {result['net_accuracy']:.3f}, frozen ==="
    )
    print(
        f"L = {result['L_seconds']:.4f} s (fwd+bwd epoch, batch {BATCH_SIZE}, "
        f"min of {meta['repeats']}); device {meta['device']}, torch {meta['torch']}, "
        f"{meta['threads']} threads; data + net setup {result['setup_seconds']:.1f} s"
    )


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def parse_args(argv=None):
    parser = benchmark_parser(__doc__, workloads=WORKLOADS, repeats=REPEATS,
                              repeats_help="time L and every grouping fit this many times")
    parser.add_argument("--no-attribution", action="store_true",
                        help="skip part 2 (the MNIST-size attribution matrix)")
    parser.add_argument(
        "--attr-repeats", type=int, default=ATTR_REPEATS,
        help=f"runs of each attribution matrix, fastest kept (default {ATTR_REPEATS})",
    )
    return parser.parse_args(argv)


def setup_workload(name, spec, device, repeats):
    start = time.perf_counter()
    X, y, X_test, y_test = make_blob_data(spec)
    frozen = frozen_net(spec, X, y, device)
    accuracy = float((frozen.predict(X) == y).mean())
    torch.manual_seed(0)
    module = MLP(spec["n_features"], spec["n_classes"], spec["hidden"]).to(device).eval()
    setup = time.perf_counter() - start
    L = epoch_seconds(module, X, y, device, repeats)
    result = {
        "name": name, "title": spec["title"], "n": len(X), "n_features": spec["n_features"],
        "n_classes": spec["n_classes"], "hidden": list(spec["hidden"]), "n_test": len(X_test),
        "n_params": sum(p.numel() for p in module.parameters()),
        "n_fit_net": min(N_FIT_NET, len(X)), "net_accuracy": accuracy,
        "setup_seconds": setup, "L_seconds": L,
    }
    return result, (X, y, X_test, y_test, frozen)


def part_1(name, spec, device, args, meta):
    """Setup and grouping, reported; returns the result and the data for part 2."""

    def run():
        result, data = setup_workload(name, spec, device, args.repeats)
        X, y, _, _, frozen = data
        result["grouping"] = grouping_part(spec, X, y, frozen, device, args.repeats)
        return result, data

    (result, data), load = with_contention(run)
    result["contention_grouping"] = load
    print_header(result, meta)
    print(f"\n-- Part 1: grouping, fit(X, y), min of {args.repeats} "
          f"(Lloyd (full): one run) --")
    print(format_grouping(result))
    print_contention(result["contention_grouping"], "setup + part 1")
    result["verdicts"] = grouping_verdicts(result)
    print_verdicts(result["verdicts"], width=40)
    sys.stdout.flush()
    return result, data


def part_2(result, data, device, args):
    """The attribution matrix at every group size, reported."""
    X, y, X_test, y_test, frozen = data
    result["attribution"], result["contention_attribution"] = with_contention(
        lambda: attribution_part(X, y, X_test, y_test, frozen, device, args.attr_repeats))
    print(
        f"\n-- Part 2: attribution matrix, TracInAttributor(frozen, grouper="
        f"GradKMeansGrouper(g), n_components={N_COMPONENTS}), fit(X, y) + attribute"
        f"(X_test, y_test) with {len(X_test)} test points; each g run "
        f"{args.attr_repeats}x"
        + (" (once: g=1 alone moves several GiB)" if args.attr_repeats == 1 else ", fastest")
        + " --"
    )
    print(format_attribution(result))
    print_contention(result["contention_attribution"], "part 2")
    if args.quick:
        print("  (--quick: the g=1 matrix is n_test x n, 100x smaller than at full size, "
              "while grouping shrinks ~10x: this target only means something at full size)")
    attr_verdicts = attribution_verdicts(result)
    print_verdicts(attr_verdicts, width=40)
    result["verdicts"].update(attr_verdicts)


def main(argv=None):
    wall_start = time.perf_counter()
    args = parse_args(argv)
    device = start(args)
    meta = environment(args, device)
    meta.update(attr_repeats=args.attr_repeats, n_components=N_COMPONENTS,
                blobs_per_class=BLOBS_PER_CLASS, latent=LATENT, noise=NOISE)
    print("skggda grouping benchmark: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    results = []
    for name, spec in workload_specs(WORKLOADS, args.workloads, args.quick):
        result, data = part_1(name, spec, device, args, meta)
        if name == "mnist" and not args.no_attribution:
            part_2(result, data, device, args)
        results.append(result)
        del data
        gc.collect()
    print_closing(meta, wall_start)
    print_overall([r["verdicts"] for r in results])
    if args.json:
        write_json(args.json, {"meta": meta, "targets": TARGETS, "group_sizes": GROUP_SIZES,
                               "attr_group_sizes": ATTR_GROUP_SIZES, "results": results})


if __name__ == "__main__":
    main()
