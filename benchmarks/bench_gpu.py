"""GPU readiness: CUDA tests, syncs per batch, GPU idle share, peak memory, CPU = CUDA,
ratios to L on the GPU (issue 20 part 5, issue 23's bench_gpu section).

One prepared script for one GPU, under 8 minutes. Parts, in order:

1. ``tests``: the test suite's CUDA tests (``tests/test_gpu.py`` and the CUDA
   test of ``tests/test_kfac.py``), in a subprocess.
2. ``syncs``: device synchronisations under ``torch.cuda.set_sync_debug_mode
   ("warn")`` for every pass kind (property gradient, dots, projected per
   group and per sample, exact group gradients on hook and ``torch.func``
   blocks, per-sample statistics, K-FAC factors, Hessian-vector products)
   and the K-Means assignment, each run with few and with many batches:
   syncs per extra batch must be 0 (the lines that synchronise are listed).
3. ``idle``: a 10^6 x 64 float32 memmap streamed through projected TracIn
   (``fit``) under ``torch.profiler``: the GPU's idle share of the wall time
   (1 - union of kernel and copy intervals / wall).
4. ``memory``: CG ``self_influence`` under ``set_per_process_memory_fraction
   (0.5)``: completes, and its peak allocated memory.
5. ``agree``: CPU against CUDA, the same frozen weights: labels of every
   grouper, scores of TracIn, TRAK's kernel and every influence solver
   (max |difference| / max |score| <= 1e-4; labels agree on >= 99%).
6. ``ratios``: TracIn and EK-FAC (``fit``, ``score_groups``, ``attribute`` per
   query) as ratios to L (one forward + backward epoch) on the MNIST MLP
   (784-128-64-10, synthetic MNIST-shaped data), ResNet-18 on CIFAR-shaped
   data, and MiniLM's last block (skipped cleanly when the text model is
   not installed); the peak GPU memory of each.

Without CUDA the script says so and exits (status 0). ``--dry-run`` (or
``--device cpu``) runs every part at toy sizes on the CPU (or on the GPU with
``--dry-run`` on a CUDA machine) to check the script end to end in under a
minute; syncs and idle share are then not measured (CUDA only).

Usage::

    PYTHONPATH=. python benchmarks/bench_gpu.py                  # on a CUDA machine
    PYTHONPATH=. python benchmarks/bench_gpu.py --parts syncs agree
    PYTHONPATH=. python benchmarks/bench_gpu.py --dry-run        # anywhere, tiny
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.frozen import FrozenEstimator

import skggda.models
from _harness import (PeakMemory, Table, benchmark_parser, environment, epoch_seconds,
                     print_closing, print_overall, print_verdicts, start, synchronize,
                     timed, write_json)
from skggda import (
    GradKMeansGrouper, InfluenceAttributor, KMeansGrouper, RandomGrouper, ReprKMeansGrouper,
    TracInAttributor, TRAKAttributor, _engine,
)

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("tests", "syncs", "idle", "memory", "agree", "ratios")
#: Sizes of the full run and of the dry run.
SIZES = {
    False: dict(idle_rows=1_000_000, mnist_n=60_000, resnet_n=4096, resnet_width=64,
                text_n=2048, cg_n=4096, cg_iter=20, queries=64, batch=512, agree_n=600,
                agree_iter=20, sync_rows=1024),
    True: dict(idle_rows=20_000, mnist_n=512, resnet_n=32, resnet_width=8,
               text_n=8, cg_n=128, cg_iter=3, queries=4, batch=128, agree_n=160,
               agree_iter=4, sync_rows=256),
}


def cuda(device):
    return device.type == "cuda"


def frozen(net, device):
    """A frozen copy of ``net`` with its module and ``net.device`` on ``device``."""
    moved = copy.deepcopy(net)
    moved.device = str(device)
    moved.module_.to(device)
    return FrozenEstimator(moved)


def synthetic(n, shape, n_classes=10, seed=0):
    """Class patterns plus noise, float32, of the given per-row ``shape``."""
    rng = np.random.RandomState(seed)
    patterns = rng.normal(size=(n_classes, *shape)).astype(np.float32)
    y = rng.randint(n_classes, size=n)
    X = patterns[y] + rng.normal(size=(n, *shape)).astype(np.float32)
    return X.astype(np.float32), y.astype(np.int64)


def mnist_mlp(n, device, epochs=1):
    X, y = synthetic(n, (784,))
    net = skggda.models.make_classifier((128, 64), max_epochs=epochs, batch_size=256,
                                        device=str(device), random_state=0)
    return net.fit(X, y), X, y


# ---------------------------------------------------------------------------
# 1. the CUDA tests
# ---------------------------------------------------------------------------


def part_tests(args, device, sizes):
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/test_gpu.py", "tests/test_kfac.py", "-k", "cuda or nets_device"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start_time = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"  {' '.join(command[3:])}\n  -> {summary} "
          f"({time.perf_counter() - start_time:.0f} s)")
    if done.returncode not in (0, 5):
        print(done.stdout[-4000:], done.stderr[-2000:])
    ran = cuda(device) and torch.cuda.is_available()
    return {"CUDA tests pass": (done.returncode == 0 if ran else None,
                                summary if ran else f"{summary}; they skip without a GPU")}


# ---------------------------------------------------------------------------
# 2. synchronisations per batch
# ---------------------------------------------------------------------------


def count_syncs(fn, device):
    """``(syncs, Counter of 'file:line')``: synchronising calls made by ``fn()``."""
    if not cuda(device):
        fn()
        return 0, Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
            torch.cuda.set_sync_debug_mode(0)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    hits = [w for w in caught if "synchroniz" in str(w.message)]
    return len(hits), Counter(f"{Path(w.filename).name}:{w.lineno}" for w in hits)


class Generic(torch.nn.Module):
    """An MLP times a scalar gain: a parameter for the ``torch.func`` block."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(),
                                        torch.nn.Linear(32, 5))
        self.gain = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return self.body(x) * self.gain


def _loss(output, target):
    return F.cross_entropy(output, target, reduction="none")


def sync_passes(plan, n, k):
    """``{name: fn(X, y, batch_size)}``: every pass kind on ``plan``."""
    rng = np.random.RandomState(0)
    labels = rng.randint(0, k, size=n)
    labels[:k] = np.arange(k)
    weights = rng.uniform(0.5, 2.0, size=n)
    projector = _engine.Projector(plan, 32, seed=0)
    device = _engine.module_device(plan.module)
    directions = [torch.ones(2, *b.shape, device=device) for b in plan.blocks]
    V = torch.randn(4, plan.n_params, device=device)
    return {
        "loss_gradient (weighted)": lambda X, y, b: _engine.loss_gradient(
            plan, X, y, sample_weight=weights, batch_size=b),
        "gradient_dots (groups)": lambda X, y, b: _engine.gradient_dots(
            plan, X, y, directions, labels=labels, n_groups=k, batch_size=b),
        "projected (groups, Fisher)": lambda X, y, b: _engine.projected_gradients(
            plan, X, y, projector, labels=labels, n_groups=k, fisher=True,
            group_weights=weights, batch_size=b),
        "projected (per sample)": lambda X, y, b: _engine.projected_gradients(
            plan, X, y, projector, batch_size=b),
        "group_gradients (exact)": lambda X, y, b: _engine.group_gradients(
            plan, X, y, labels, k, batch_size=b),
        "per_sample_statistics": lambda X, y, b: _engine.per_sample_statistics(
            plan, X, y, labels, k, batch_size=b),
        "K-FAC factors + EK-FAC": lambda X, y, b: _engine.fit_kfac(
            plan, X, y, fisher="empirical", batch_size=b),
        "Hessian-vector products": lambda X, y, b: _engine._curvature.hessian_vector_products(
            plan, X, y, V, batch_size=b),
    }


def part_syncs(args, device, sizes):
    n = sizes["sync_rows"]
    few, many = n // 4, n // 16  # 4 batches, then 16
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n, 16)).astype(np.float32)
    y = rng.randint(0, 5, size=n)
    table = Table(38, cell_width=(13, 13, 16))
    table.header("pass", ["syncs (4 b)", "syncs (16 b)", "per extra batch"])
    worst, sources = 0.0, Counter()
    modules = {"mlp": Generic().body, "generic": Generic()}
    for module_name, module in modules.items():
        module = module.to(device).eval()
        plan = _engine.make_plan(module, _loss, torch.as_tensor(X[:8], device=device))
        for name, run in sync_passes(plan, n, 32).items():
            if module_name == "generic" and name not in ("group_gradients (exact)",
                                                         "projected (groups, Fisher)"):
                continue
            if not cuda(device):  # nothing to count: run each pass once, to check it runs
                run(X, y, many)
                table.row(f"{name} [{module_name}]", ["-", "-", "CUDA only"])
                continue
            run(X, y, many)  # warm up: first-call set-up is not per batch
            a, _ = count_syncs(lambda: run(X, y, few), device)
            b, where = count_syncs(lambda: run(X, y, many), device)
            per_batch = (b - a) / (n // many - n // few)
            worst = max(worst, per_batch)
            if per_batch > 0:
                sources.update(where)
            table.row(f"{name} [{module_name}]", [a, b, f"{per_batch:.2f}"])
    # the K-Means assignment: one pass, blocks of rows
    # over 256 centers: the cell search of CenterIndex (the full run)
    grouper = KMeansGrouper(n_groups=min(300, n // 2), device=str(device),
                            random_state=0).fit(X)
    per_block = 0.0
    for blocks in (4, 16) if cuda(device) else (16,):
        rows = n // blocks

        def assign():
            work = grouper._nearest_centers()
            for s in range(0, n, rows):
                work.assign(X[s:s + rows], None)

        assign()
        if not cuda(device):
            table.row("K-Means assignment (per block)", ["-", "-", "CUDA only"])
            continue
        syncs, where = count_syncs(assign, device)
        if blocks == 4:
            a = syncs
        else:
            per_block = (syncs - a) / 12
            table.row("K-Means assignment (per block)", [a, syncs, f"{per_block:.2f}"])
    print(table)
    if sources:
        print("  lines that synchronise once per batch:", dict(sources.most_common(8)))
    # a K-Means block reads its labels home (inherent) and the cell counts of each
    # probe: a few per block of 65,536 rows, not per batch of a pass
    measured = cuda(device)
    return {"no syncs per batch in the passes": (
        worst == 0 if measured else None,
        f"worst {worst:.2f} per batch" if measured else "CUDA only"),
        "K-Means assignment syncs per block": (None, f"{per_block:.1f}" if measured
                                               else "CUDA only")}


# ---------------------------------------------------------------------------
# 3. GPU idle share of a memmap streamed through projected TracIn
# ---------------------------------------------------------------------------


def busy_seconds(profile):
    """Union of the device's kernel and copy intervals, in seconds."""
    intervals = sorted((e.time_range.start, e.time_range.end) for e in profile.events()
                       if e.device_type == torch.autograd.DeviceType.CUDA)
    busy, end = 0.0, -float("inf")
    for a, b in intervals:
        if b <= end:
            continue
        busy += b - max(a, end)
        end = b
    return busy / 1e6


def part_idle(args, device, sizes):
    n = sizes["idle_rows"]
    rng = np.random.RandomState(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "X.npy"
        X_map = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 64))
        for s in range(0, n, 1 << 17):
            X_map[s:s + (1 << 17)] = rng.normal(size=(min(1 << 17, n - s), 64))
        X_map.flush()
        del X_map
        X = np.load(path, mmap_mode="r")
        y = (np.asarray(X[:, 0]) > 0).astype(np.int64) + 2 * (np.asarray(X[:, 1]) > 0)
        net = skggda.models.make_classifier((128,), max_epochs=1, batch_size=512,
                                            device=str(device), random_state=0)
        train = min(20_000, n // 10)  # a briefly trained net: the pass, not the net, is timed
        net.fit(np.asarray(X[:train]), y[:train])
        attr = TracInAttributor(FrozenEstimator(net), n_components=512,
                                batch_size=sizes["batch"] * 4,
                                grouper=RandomGrouper(group_size=64, random_state=0))
        activities = [torch.profiler.ProfilerActivity.CPU]
        if cuda(device):
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        synchronize(device)
        begin = time.perf_counter()
        with torch.profiler.profile(activities=activities) as profile:
            attr.fit(X, y)
            synchronize(device)
        wall = time.perf_counter() - begin
    print(f"  projected TracIn fit over a {n:,} x 64 memmap: {wall:.1f} s wall "
          f"({n / wall:,.0f} rows/s, under the profiler)")
    if not cuda(device):
        return {"GPU idle share (info)": (None, "CUDA only")}
    idle = 1 - busy_seconds(profile) / wall
    print(f"  GPU busy {busy_seconds(profile):.1f} s: idle share {idle:.0%}")
    return {"GPU idle share (info)": (None, f"{idle:.0%} of {wall:.1f} s")}


# ---------------------------------------------------------------------------
# 4. CG self-influence in half the GPU's memory
# ---------------------------------------------------------------------------


def part_memory(args, device, sizes):
    net, X, y = mnist_mlp(sizes["cg_n"], device)
    attr = InfluenceAttributor(FrozenEstimator(net), solver="cg", cg_max_iter=sizes["cg_iter"],
                               damping=1e-2, grouper=RandomGrouper(group_size=16,
                                                                   random_state=0))
    attr.fit(X, y)
    if cuda(device):
        torch.cuda.set_per_process_memory_fraction(0.5, device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with warnings.catch_warnings(), PeakMemory() as host:
            warnings.simplefilter("ignore")  # CG's tolerance warning: few iterations on purpose
            seconds, scores = timed(attr.self_influence, device)
        ok = bool(np.isfinite(scores).all())
    except torch.cuda.OutOfMemoryError as error:
        ok, seconds, scores = False, float("nan"), None
        print(f"  out of memory: {error}")
    finally:
        if cuda(device):
            torch.cuda.set_per_process_memory_fraction(1.0, device)
    if cuda(device):
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        detail = f"peak {peak:.2f} GiB of {total / 2:.1f} GiB allowed, {seconds:.1f} s"
    else:
        detail = f"host peak {host.peak / 2**20:.0f} MiB, {seconds:.1f} s"
    print(f"  CG self_influence of {attr.n_groups_} groups ({len(y)} rows): {detail}")
    return {"CG self_influence within half the memory": (ok, detail)}


# ---------------------------------------------------------------------------
# 5. CPU against CUDA
# ---------------------------------------------------------------------------


def part_agree(args, device, sizes):
    other = torch.device("cpu")
    X, y = synthetic(sizes["agree_n"], (20,), n_classes=4)
    steps = sizes["agree_iter"]
    X_test, y_test = synthetic(64, (20,), n_classes=4, seed=1)
    net = skggda.models.make_classifier((32,), max_epochs=3, batch_size=64,
                                        random_state=0).fit(X, y)
    grouped = lambda: RandomGrouper(group_size=8, random_state=0)  # noqa: E731
    scorers = {
        "tracin": lambda est: TracInAttributor(est, grouper=grouped()),
        "tracin r=64": lambda est: TracInAttributor(est, grouper=grouped(), n_components=64,
                                                    random_state=0),
        **{f"influence {solver}": (lambda est, s=solver, extra=extra: InfluenceAttributor(
            est, solver=s, damping=1e-2, grouper=grouped(), random_state=0, **extra))
           for solver, extra in [("fisher", dict(n_components=128)), ("exact", {}),
                                 ("cg", dict(cg_max_iter=steps)),
                                 ("lissa", dict(lissa_depth=2 * steps, lissa_repeat=2,
                                                lissa_scale=20.0)),
                                 ("kfac", {}), ("ekfac", {})]},
    }
    verdicts, table = {}, Table(22, cell_width=(14,))
    table.header("scores", ["max rel diff"])
    worst = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, make in scorers.items():
            out = [make(frozen(net, d)).fit(X, y).score_groups(X_test, y_test)
                   for d in (other, device)]
            diff = float(np.abs(out[1] - out[0]).max() / np.abs(out[0]).max())
            worst = max(worst, diff)
            table.row(name, [f"{diff:.1e}"])
        # TRAK trains its members: compare one member's kernel scores on frozen weights
        out = []
        for d in (other, device):
            trak = TRAKAttributor(frozen(net, d), n_models=1, n_components=128,
                                  grouper=grouped(), random_state=0)
            out.append(trak.fit(X, y).score_groups(X_test, y_test))
        table.row("trak (1 member)", [f"{np.corrcoef(out[0], out[1])[0, 1]:.4f} corr"])
        table.row("", [])
        table.header("labels", ["agreement"], rule=False)
        agreement = 1.0
        for name, make in {
            "kmeans": lambda d: KMeansGrouper(group_size=8, device=str(d), random_state=0),
            "repr-kmeans": lambda d: ReprKMeansGrouper(group_size=8, estimator=frozen(net, d),
                                                       random_state=0),
            "grad-kmeans": lambda d: GradKMeansGrouper(group_size=8, estimator=frozen(net, d),
                                                       random_state=0),
        }.items():
            labels = [make(d).fit(X, y).labels_ for d in (other, device)]
            share = float((labels[0] == labels[1]).mean())
            agreement = min(agreement, share)
            table.row(name, [f"{share:.1%}"])
    print(table)
    note = "" if cuda(device) else " (dry run: cpu against cpu)"
    verdicts["CPU = CUDA scores (1e-4)"] = (worst <= 1e-4, f"worst {worst:.1e}{note}")
    verdicts["CPU = CUDA groups (>= 99%)"] = (agreement >= 0.99, f"worst {agreement:.1%}{note}")
    return verdicts


# ---------------------------------------------------------------------------
# 6. ratios to L
# ---------------------------------------------------------------------------


def workloads(args, device, sizes):
    """``(name, make)`` of the models; ``make()`` returns a work dict or a skip reason."""

    def mnist():
        net, X, y = mnist_mlp(sizes["mnist_n"], device)
        X_test, y_test = synthetic(sizes["queries"], (784,), seed=1)
        return dict(net=net, X=X, y=y, X_test=X_test, y_test=y_test, subset="all",
                    batch=sizes["batch"], L_X=X)

    def resnet():
        X, y = synthetic(sizes["resnet_n"] + sizes["queries"], (3, 32, 32))
        net = skggda.models.make_resnet_classifier(width=sizes["resnet_width"], max_epochs=1,
                                                   batch_size=128, device=str(device),
                                                   random_state=0)
        n = sizes["resnet_n"]
        net.fit(X[:n], y[:n])
        return dict(net=net, X=X[:n], y=y[:n], X_test=X[n:], y_test=y[n:], subset="all",
                    batch=128, L_X=X[:n])

    def text():
        from skggda.models import TEXT_LAST_BLOCK, PairTokenizer, make_text_classifier

        try:
            rng = np.random.RandomState(0)
            n = sizes["text_n"] + sizes["queries"]
            pairs = np.array([[f"q {i} {rng.randint(1000)}", f"s {rng.randint(1000)}"]
                              for i in range(n)], dtype=object)
            y = rng.randint(2, size=n)
            tokens = PairTokenizer(max_length=64).fit(pairs).transform(pairs)
            fit_rows = min(64, sizes["text_n"])
            net = make_text_classifier(max_epochs=1, batch_size=32, device=str(device),
                                       random_state=0).fit(tokens[:fit_rows], y[:fit_rows])
        except (ImportError, OSError, ValueError) as error:
            return f"skipped: the text model is not available offline ({error})"
        m = sizes["text_n"]
        return dict(net=net, X=tokens[:m], y=y[:m], X_test=tokens[m:], y_test=y[m:],
                    subset=list(TEXT_LAST_BLOCK), batch=32, L_X=None)

    return [("MNIST MLP 784-128-64-10", mnist), ("ResNet-18, CIFAR-shaped", resnet),
            ("MiniLM last block", text)]


def text_epoch_seconds(work, device):
    """L of the text model: one forward + backward epoch of the whole model."""
    module = work["net"].module_.eval()

    def epoch():
        for s in range(0, len(work["y"]), work["batch"]):
            batch = {k: torch.as_tensor(v[s:s + work["batch"]], device=device)
                     for k, v in work["X"].items()} if isinstance(work["X"], dict) else \
                torch.as_tensor(work["X"][s:s + work["batch"]], device=device)
            target = torch.as_tensor(work["y"][s:s + work["batch"]], device=device)
            out = module(**batch) if isinstance(batch, dict) else module(batch)
            module.zero_grad(set_to_none=True)
            F.cross_entropy(out, target).backward()

    return timed(epoch, device)[0]


def part_ratios(args, device, sizes):
    table = Table(30, cell_width=(8, 9, 14, 13, 10))
    table.header("model / method (ratio to L)", ["L (s)", "fit", "score_groups",
                                                  "attribute/q", "peak GiB"])
    verdicts = {}
    for name, make in workloads(args, device, sizes):
        begin = time.perf_counter()
        work = make()
        if isinstance(work, str):
            table.row(name, [work])
            continue
        if work["L_X"] is not None:
            L = epoch_seconds(work["net"].module_, work["L_X"], work["y"], device,
                              args.repeats, work["batch"])
        else:
            L = text_epoch_seconds(work, device)
        table.row(name, [f"{L:.3f}"])
        methods = {
            "TracIn": lambda est: TracInAttributor(
                est, grouper=RandomGrouper(group_size=64, random_state=0),
                param_subset=work["subset"], batch_size=work["batch"]),
            "EK-FAC": lambda est: InfluenceAttributor(
                est, solver="ekfac", grouper=RandomGrouper(group_size=64, random_state=0),
                param_subset=work["subset"], batch_size=work["batch"], random_state=0),
        }
        for method, build in methods.items():
            if cuda(device):
                torch.cuda.reset_peak_memory_stats(device)
            attr = build(FrozenEstimator(work["net"]))
            fit = timed(lambda: attr.fit(work["X"], work["y"]), device)[0]
            score = timed(lambda: attr.score_groups(work["X_test"], work["y_test"]), device,
                          args.repeats)[0]
            query = timed(lambda: attr.attribute(work["X_test"], work["y_test"]), device,
                          args.repeats)[0] / len(work["y_test"])
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda(device) else 0.0
            table.row(f"  {method}", ["", f"{fit / L:.2f}", f"{score / L:.3f}",
                                      f"{query / L:.4f}", f"{peak:.2f}"])
        print(f"  {name}: {time.perf_counter() - begin:.0f} s with training and set-up")
    print(table)
    verdicts["ratios to L (info)"] = (None, "see the table")
    return verdicts


def main(argv=None):
    parser = benchmark_parser(__doc__, repeats=2,
                              repeats_help="time L, score_groups and attribute",
                              quick_help="the same as --dry-run")
    parser.set_defaults(device=None)
    parser.add_argument("--dry-run", action="store_true",
                        help="toy sizes, to check the script end to end (< 1 min)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    args = parser.parse_args(argv)
    dry = args.dry_run or args.quick or args.device == "cpu"
    if args.device is None and dry and not torch.cuda.is_available():
        args.device = "cpu"
    if args.device is None:
        if not torch.cuda.is_available():
            print("bench_gpu.py measures GPU behaviour and this machine has no CUDA device: "
                  "nothing measured.\nRun it on a GPU machine, or check the script here with "
                  "--dry-run (toy sizes on the CPU, under a minute).")
            print("\nOVERALL: SKIPPED (no CUDA device)")
            return 0
        args.device = "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda asked for, but torch sees no CUDA device: nothing measured.")
        print("\nOVERALL: SKIPPED (no CUDA device)")
        return 0
    if dry:
        args.repeats = 1
    device = start(args)
    sizes = SIZES[dry]
    meta = environment(args, device)
    meta["dry_run"] = dry
    print(f"device {meta['device']}, torch {meta['torch']}, "
          f"{'DRY RUN (toy sizes)' if dry else 'full sizes'}")
    wall_start = time.perf_counter()
    parts = {"tests": part_tests, "syncs": part_syncs, "idle": part_idle,
             "memory": part_memory, "agree": part_agree, "ratios": part_ratios}
    verdicts = {}
    for name in args.parts:
        print(f"\n=== {name} ===")
        part_start = time.perf_counter()
        verdicts[name] = parts[name](args, device, sizes)
        print_verdicts(verdicts[name], width=42)
        print(f"  ({time.perf_counter() - part_start:.0f} s)")
    print_closing(meta, wall_start)
    ok = print_overall(list(verdicts.values()),
                       " (dry run: toy sizes, nothing measured on a GPU)" if dry else "")
    if args.json:
        write_json(args.json, {"meta": meta, "verdicts": verdicts})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
