"""Query-side benchmark (issue 20): what explaining one prediction costs, in units of L.

``attribute`` scores each query against every group. With a group store (see
the user guide's "Explaining predictions") it costs the queries' gradients
and one product with the store; without one, a pass over the training data
per block of 64 queries. Reported for every attributor, exact and projected,
as ratios to L (one forward + backward epoch over the training rows at
batch 512, timed beside each run, fastest kept):

* ``fit`` / L, and ``attribute`` per query / L (``--n-queries`` queries);
* in-memory workloads: MNIST's MLP 784-128-64-10 (5 epochs) on 10^4 and
  6x10^4 rows (the real images when ``--data-home`` holds them, else
  random data of their shape), Grad-K-Means groups of 1, 16 and 256;
* memmap workloads: 10^6 and 10^7 rows x 64 features (Gaussian clusters
  written once under ``--cache``), an MLP 64-128-64-10 trained on the first
  60,000 rows, random groups of 16 and 256 (and 1 at 10^6), projected
  methods with the store on disk (``memory=``): the cost of one block of
  64 queries against it;
* kronfluence's EK-FAC pairwise scores on the 10^4 workload's net, beside
  skggda's (``--kronfluence``, when it imports: it is not a dependency).

The LDS that projection costs is measured by ``bench_fidelity.py`` on
dattri's MNIST-10 protocol (rows ``ekfac-r256``, ``ekfac-r1024``,
``ekfac-r4096``).

Targets (issue 20), on the 6x10^4 MNIST MLP: projected EK-FAC (r = 1,024)
``fit`` <= 10 L and ``attribute`` <= 0.01 L per query; exact EK-FAC with
Grad-K-Means groups of 256 <= 0.05 L per query; on the 10^7-row memmap, one
block of 64 queries against the stored projected gradients <= 0.2 L.

Usage::

    PYTHONPATH=. python benchmarks/bench_queries.py --data-home ../shared/data
    PYTHONPATH=. python benchmarks/bench_queries.py --workloads 1e7 --methods ekfac-r1024
    PYTHONPATH=. python benchmarks/bench_queries.py --quick   # a smoke run, minutes
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.frozen import FrozenEstimator

from _harness import (EpochClock, PeakMemory, Table, benchmark_parser, default_data_home,
                     environment, print_closing, print_overall, print_verdicts, start,
                     timed, write_json)
from skggda import (GradKMeansGrouper, InfluenceAttributor, RandomGrouper, TracInAttributor,
                    TRAKAttributor)
from skggda.models import make_classifier

R = 1024
#: name -> (constructor keyword arguments, projected?)
METHODS = {
    "tracin": (dict(kind="tracin"), False),
    f"tracin-r{R}": (dict(kind="tracin", n_components=R), True),
    "ekfac": (dict(kind="influence", solver="ekfac"), False),
    f"ekfac-r{R}": (dict(kind="influence", solver="ekfac", n_components=R), True),
    f"ekfac-random-r{R}": (dict(kind="influence", solver="ekfac", n_components=R,
                                projection="random"), True),
    "kfac": (dict(kind="influence", solver="kfac"), False),
    f"kfac-r{R}": (dict(kind="influence", solver="kfac", n_components=R), True),
    f"fisher-r{R}": (dict(kind="influence", solver="fisher", n_components=R), True),
    f"trak-r{R}": (dict(kind="trak", n_components=R), True),
}
WORKLOADS = {
    "1e4": dict(n=10_000, memmap=False, group_sizes=(1, 16, 256)),
    "6e4": dict(n=60_000, memmap=False, group_sizes=(1, 16, 256)),
    "1e6": dict(n=1_000_000, memmap=True, group_sizes=(1, 16, 256)),
    "1e7": dict(n=10_000_000, memmap=True, group_sizes=(16, 256)),
}
MEMMAP_FEATURES, MEMMAP_TRAIN = 64, 60_000


# -- data and nets ------------------------------------------------------------------------


def mnist_like(n, data_home, n_queries):
    """``(X, y, X_query, y_query, source)``: MNIST's first ``n`` training images (or
    random data of that shape) and ``n_queries`` test images."""
    try:
        from skggda.datasets import load_mnist

        d = load_mnist(data_home=data_home, n_train=n, n_test=n_queries, random_state=0,
                       flatten=True)
        return (d["X_train"], d["y_train"], d["X_test"], d["y_test"], "MNIST")
    except Exception as error:  # no data: sizes are what the timing depends on
        print(f"  (MNIST unavailable: {error}; random data of its shape)")
        rng = np.random.RandomState(0)
        X = rng.normal(size=(n + n_queries, 784)).astype(np.float32)
        y = rng.randint(10, size=n + n_queries)
        return X[:n], y[:n], X[n:], y[n:], "random"


def memmap_data(n, cache, n_queries):
    """Gaussian clusters, ``n x 64``, written once to ``cache`` in chunks; labels in memory."""
    cache.mkdir(parents=True, exist_ok=True)
    path, labels = cache / f"X_{n}.npy", cache / f"y_{n}.npy"
    rng = np.random.RandomState(0)
    centers = rng.normal(scale=2.0, size=(10, MEMMAP_FEATURES)).astype(np.float32)
    if not (path.exists() and labels.exists()):
        print(f"  writing {n:,} x {MEMMAP_FEATURES} rows to {path} ...", flush=True)
        X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                      shape=(n, MEMMAP_FEATURES))
        y = np.empty(n, dtype=np.int64)
        for first in range(0, n, 1 << 20):
            stop = min(first + (1 << 20), n)
            y[first:stop] = rng.randint(10, size=stop - first)
            X[first:stop] = centers[y[first:stop]] + rng.normal(
                size=(stop - first, MEMMAP_FEATURES)).astype(np.float32)
        X.flush()
        del X
        np.save(labels, y)
    y_query = rng.randint(10, size=n_queries)
    X_query = centers[y_query] + rng.normal(size=(n_queries, MEMMAP_FEATURES)).astype(np.float32)
    return np.load(path, mmap_mode="r"), np.load(labels), X_query, y_query, "clusters"


def trained_net(X, y, hidden, epochs):
    return make_classifier(hidden, max_epochs=epochs, random_state=0).fit(
        np.asarray(X, dtype=np.float32), y)


# -- one measurement ---------------------------------------------------------------------


def make_attributor(method, net, *, memory, seed=0):
    spec, _ = METHODS[method]
    params = {k: v for k, v in spec.items() if k != "kind"}
    if spec["kind"] == "tracin":
        return TracInAttributor(net, memory=memory, random_state=seed, **params)
    if spec["kind"] == "trak":
        return TRAKAttributor(net, n_models=1, random_state=seed, **params)
    return InfluenceAttributor(net, memory=memory, random_state=seed, **params)


def measure(method, frozen, X, y, groups, X_query, y_query, clock, memory, n_queries):
    """``fit`` and ``attribute`` seconds of one method and grouping, and the store's size."""
    attributor = make_attributor(method, frozen, memory=memory)
    clock.tick()
    with PeakMemory() as peak:
        fit_s, _ = timed(lambda: attributor.fit(X, y, groups))
    clock.tick()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attribute_s, matrix = timed(lambda: attributor.attribute(X_query[:n_queries],
                                                                 y_query[:n_queries]))
    assert np.isfinite(matrix).all() and matrix.shape == (n_queries, attributor.n_groups_)
    store = _store_of(attributor)
    return dict(fit_s=fit_s, attribute_s=attribute_s, per_query_s=attribute_s / n_queries,
                n_groups=int(attributor.n_groups_), store=store, fit_peak_bytes=peak.growth)


def _store_of(attributor):
    """Where the attributor's group store lives: ``"memory"``, ``"disk"`` or ``"none"``."""
    from skggda.attribution._store import DiskStore

    found = getattr(attributor, "_group_features", None) or getattr(attributor,
                                                                    "_group_store", None)
    if isinstance(found, list):
        found = found[0]
    if getattr(attributor, "_state", None) is not None or getattr(attributor, "_states", None):
        # Fisher / TRAK: the kernel state
        return "kernel"
    if found is None:
        return "none"
    return "disk" if isinstance(found, DiskStore) else "memory"


def grouping(X, y, size, frozen, memmap):
    """Group labels of ``size``: Grad-K-Means in memory, random groups for the memmaps."""
    if size == 1:
        return None
    if memmap:
        return RandomGrouper(group_size=size, random_state=0).fit(X, y).labels_
    return GradKMeansGrouper(group_size=size, estimator=frozen, random_state=0).fit(X, y).labels_


def run_workload(name, spec, args):
    n_queries = args.n_queries
    if spec["memmap"]:
        X, y, X_query, y_query, source = memmap_data(spec["n"], Path(args.cache), n_queries)
        net = trained_net(X[:MEMMAP_TRAIN], y[:MEMMAP_TRAIN], (128, 64), epochs=2)
        # the projected methods whose store can live on disk; K-FAC's costs are EK-FAC's
        # first pass, shown on the in-memory workloads
        methods = [m for m in args.methods if m in (f"tracin-r{R}", f"ekfac-r{R}")]
    else:
        X, y, X_query, y_query, source = mnist_like(spec["n"], args.data_home, n_queries)
        net = trained_net(X, y, (128, 64), epochs=5)
        methods = list(args.methods)
    frozen = FrozenEstimator(net)
    clock = EpochClock(net.module_, X, y, args.device)
    clock.tick()
    print(f"\n=== {name}: {spec['n']:,} rows ({source}), L = {clock.fastest():.2f} s",
          flush=True)
    rows = []
    for size in spec["group_sizes"]:
        groups = grouping(X, y, size, frozen, spec["memmap"])
        for method in methods:
            if size == 1 and method.startswith("trak") and spec["n"] > 10_000:
                continue  # TRAK's kernel of n x r projected gradients: the 10^4 row shows it
            folder = tempfile.mkdtemp(dir=args.cache) if spec["memmap"] else None
            try:
                result = measure(method, frozen, X, y, groups, X_query, y_query, clock,
                                 folder, n_queries if not spec["memmap"] else 64)
            finally:
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
            result.update(workload=name, method=method, group_size=size)
            rows.append(result)
            L = clock.fastest()  # so far: the table divides by the fastest of the whole run
            print(f"  g={size:<4} {method:<12} fit {result['fit_s'] / L:6.2f} L   attribute "
                  f"{result['per_query_s'] / L:.5f} L/query   ({result['n_groups']:,} groups, "
                  f"store: {result['store']})", flush=True)
    L = clock.fastest()
    for result in rows:  # an L caught slow would flatter every ratio: the fastest epoch
        result.update(fit_L=result["fit_s"] / L, per_query_L=result["per_query_s"] / L,
                      block64_L=64 * result["per_query_s"] / L)
    kron = None
    if args.kronfluence and name == "1e4":
        kron = kronfluence_side_by_side(net, X, y, X_query[:n_queries], y_query[:n_queries],
                                        clock, args)
    return dict(workload=name, n=spec["n"], source=source, L=L, rows=rows, kronfluence=kron,
                L_samples=clock.samples)


# -- kronfluence beside skggda --------------------------------------------------------------


def kronfluence_side_by_side(net, X, y, X_query, y_query, clock, args):
    """kronfluence's EK-FAC pairwise scores and skggda's on the same net: seconds, L, Pearson."""
    try:
        from kronfluence.analyzer import Analyzer, prepare_model
        from kronfluence.arguments import FactorArguments, ScoreArguments
        from kronfluence.task import Task
    except ImportError as error:
        print(f"  kronfluence: not installed ({error})")
        return None

    class Classification(Task):
        def compute_train_loss(self, batch, model, sample=False):
            inputs, labels = batch
            logits = model(inputs)
            if sample:
                with torch.no_grad():
                    labels = torch.multinomial(torch.softmax(logits, -1), 1).flatten()
            return F.cross_entropy(logits, labels, reduction="sum")

        def compute_measurement(self, batch, model):
            inputs, labels = batch
            return F.cross_entropy(model(inputs), labels, reduction="sum")

    task = Classification()
    model = prepare_model(copy.deepcopy(net.module_).eval(), task)
    folder = tempfile.mkdtemp(dir=args.cache)
    train = torch.utils.data.TensorDataset(torch.as_tensor(np.asarray(X, dtype=np.float32)),
                                           torch.as_tensor(y))
    query = torch.utils.data.TensorDataset(torch.as_tensor(X_query), torch.as_tensor(y_query))
    analyzer = Analyzer("queries", model=model, task=task, cpu=True, disable_tqdm=True,
                        output_dir=folder)
    clock.tick()
    fit_s, _ = timed(lambda: analyzer.fit_all_factors(
        "ekfac", dataset=train, per_device_batch_size=512,
        factor_args=FactorArguments(strategy="ekfac")))
    clock.tick()
    scores_s, _ = timed(lambda: analyzer.compute_pairwise_scores(
        "scores", "ekfac", query_dataset=query, train_dataset=train,
        per_device_query_batch_size=64, per_device_train_batch_size=512,
        # damping None: kronfluence's heuristic, 0.1 x the mean eigenvalue, as skggda's
        score_args=ScoreArguments(damping_factor=None)))
    theirs = analyzer.load_pairwise_scores("scores")["all_modules"].numpy()
    shutil.rmtree(folder, ignore_errors=True)
    ours = make_attributor("ekfac", FrozenEstimator(net), memory=None)
    ours_fit_s, _ = timed(lambda: ours.fit(X, y))
    ours_s, matrix = timed(lambda: ours.attribute(X_query, y_query))
    L = clock.fastest()
    # kronfluence's scores sum the losses (no 1/n): skggda's up to a positive scale
    pearson = float(np.corrcoef(theirs.ravel(), matrix.ravel())[0, 1])
    out = dict(kronfluence_fit_L=fit_s / L, kronfluence_per_query_L=scores_s / len(y_query) / L,
               skggda_fit_L=ours_fit_s / L, skggda_per_query_L=ours_s / len(y_query) / L,
               pearson=pearson, n_queries=len(y_query))
    print(f"  kronfluence EK-FAC: fit {out['kronfluence_fit_L']:.1f} L, pairwise "
          f"{out['kronfluence_per_query_L']:.4f} L/query; skggda: fit {out['skggda_fit_L']:.1f}"
          f" L, {out['skggda_per_query_L']:.4f} L/query; Pearson {pearson:.3f}", flush=True)
    return out


# -- report --------------------------------------------------------------------------------


def report(results):
    for result in results:
        sizes = sorted({r["group_size"] for r in result["rows"]})
        table = Table(14, 10)
        print(f"\n{result['workload']} rows ({result['source']}), L = {result['L']:.2f} s: "
              "attribute, L per query (fit, L)")
        table.header("method", [f"g={s}" for s in sizes] + [f"fit g={s}" for s in sizes])
        for method in dict.fromkeys(r["method"] for r in result["rows"]):
            by = {r["group_size"]: r for r in result["rows"] if r["method"] == method}
            table.row(method, [f"{by[s]['per_query_L']:.5f}" if s in by else "-" for s in sizes]
                      + [f"{by[s]['fit_L']:.2f}" if s in by else "-" for s in sizes])
        print(table)


def verdicts(results):
    out = {}
    rows = {(r["workload"], r["method"], r["group_size"]): r
            for result in results for r in result["rows"]}
    projected = [rows[k] for k in rows if k[:2] == ("6e4", f"ekfac-r{R}")]
    if projected:
        worst_fit = max(r["fit_L"] for r in projected)
        worst_query = max(r["per_query_L"] for r in projected)
        out["6e4 projected EK-FAC fit <= 10 L"] = (worst_fit <= 10, f"{worst_fit:.2f} L")
        out["6e4 projected EK-FAC <= 0.01 L/query"] = (
            worst_query <= 0.01, f"{worst_query:.5f} L (worst group size)")
    exact = rows.get(("6e4", "ekfac", 256))
    if exact:
        out["6e4 exact EK-FAC g=256 <= 0.05 L/query"] = (exact["per_query_L"] <= 0.05,
                                                         f"{exact['per_query_L']:.5f} L")
    memmap = [rows[k] for k in rows if k[0] == "1e7" and k[1].endswith(f"-r{R}")]
    for r in memmap:
        out[f"1e7 {r['method']} g={r['group_size']}: 64 queries <= 0.2 L"] = (
            r["block64_L"] <= 0.2, f"{r['block64_L']:.3f} L ({r['store']} store)")
    return out


def parse_args(argv=None):
    parser = benchmark_parser(__doc__, repeats=1, repeats_help="runs of each measurement",
                              quick_help="a smoke run: 10^4 rows only, 16 queries, two methods")
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS),
                        default=["1e4", "6e4", "1e6", "1e7"])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--n-queries", type=int, default=128)
    parser.add_argument("--kronfluence", action="store_true",
                        help="kronfluence's pairwise EK-FAC scores beside skggda's (10^4 rows)")
    parser.add_argument("--data-home", default=str(default_data_home()))
    parser.add_argument("--cache", default="benchmarks/out/queries",
                        help="memmaps and on-disk stores (10^7 rows: 2.6 GB, stores more)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.device = start(args)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    workloads = args.workloads
    if args.quick:
        workloads, args.n_queries = ["1e4"], 16
        args.methods = [m for m in args.methods if m in ("ekfac", f"ekfac-r{R}")]
    meta = environment(args, args.device)
    wall = time.perf_counter()
    results = [run_workload(name, WORKLOADS[name], args) for name in workloads]
    report(results)
    checks = verdicts(results)
    print("\ntargets:")
    print_verdicts(checks, width=52)
    print_overall([checks])
    print_closing(meta, wall)
    if args.json:
        write_json(args.json, dict(meta=meta, results=results, verdicts=checks))


if __name__ == "__main__":
    main()
