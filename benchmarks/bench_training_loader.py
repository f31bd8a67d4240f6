"""Training epochs with skorch's per-row loading against whole-batch loading.

What is measured (issue 23, "GPU readiness": "training fetches rows one at a
time without pin_memory (skorch's default dataset path): let skorch load
batches as tensors"): the seeded skorch nets read each batch with one fancy
index of the arrays (``SeededNetMixin.get_iterator``) instead of skorch's one
``dataset[i]`` per row and a ``default_collate``. The same batches come in the
same order, so both paths train to bit-identical weights; only the time
differs.

Workload: the paper's MNIST MLP recipe (``make_classifier((150, 150, 150))``:
Adam, one-cycle schedule, shuffled batches of ``--batch-size``) on the 60,000
MNIST training images flattened to 784 float32 features (synthetic data of
that shape when the MNIST files are missing).

Rows, each the fastest of ``--repeats`` runs, the two paths alternating:

* ``epoch, array``: one training epoch (``fit`` with ``max_epochs=1``) on the
  array in memory.
* ``epoch, memmap``: the same from a read-only ``.npy`` memmap. The per-row
  path copies it into memory first (torch wants writable rows); the batched
  path slices each batch from the file.
* ``loader only``: iterating the training loader without the model: the
  fetch and collation cost alone.

Columns: seconds of each path, the ratio per-row / batched, and each time
in L (one forward + backward epoch of the same MLP at batch 512, the
harness's unit).

Usage::

    PYTHONPATH=. python benchmarks/bench_training_loader.py
    PYTHONPATH=. python benchmarks/bench_training_loader.py --quick
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import skggda
import skggda.datasets
from _harness import (EpochClock, Table, benchmark_parser, default_data_home, environment,
                     print_closing, print_contention, print_overall, print_verdicts, start,
                     timed, with_contention)
from skggda.models import MLP, make_classifier

HIDDEN = (150, 150, 150)


def load_data(args):
    """``(X, y, source)``: MNIST's training images as (n, 784) float32, or synthetic ones."""
    try:
        data = skggda.datasets.load_mnist(data_home=args.data_home, flatten=True,
                                          n_train=None if args.n >= 60000 else args.n)
        return data.X_train, data.y_train, "MNIST training images"
    except FileNotFoundError:
        rng = np.random.RandomState(0)
        X = rng.rand(args.n, 784).astype(np.float32)
        return X, rng.randint(10, size=args.n).astype(np.int64), "synthetic MNIST-shaped data"


def make_net(args, device, batch_loading):
    net = make_classifier(HIDDEN, lr=1e-3, max_epochs=1, batch_size=args.batch_size,
                          weight_decay=0.0, device=str(device), random_state=0)
    net._batch_loading = batch_loading  # False: skorch's per-row path
    return net


def loader_seconds(net, X, y):
    """One pass over the net's training loader, nothing else (seconds)."""
    loader = net.get_iterator(net.get_dataset(X, y), training=True)
    began = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - began


def measure(args, device, X, y, X_map):
    """Fastest seconds per (row, path), the trained weights of one epoch per path, L."""
    clock = EpochClock(MLP(784, 10, HIDDEN).to(device), X, y, device)
    for batch_loading in (False, True):  # warm-up: first calls pay one-off costs
        make_net(args, device, batch_loading).fit(X[:2048], y[:2048])
    best = {}
    weights = {}
    for _ in range(args.repeats):
        clock.tick()
        for batch_loading in (False, True):
            path = "batched" if batch_loading else "per-row"
            for row, data in (("epoch, array", X), ("epoch, memmap", X_map)):
                seconds, net = timed(lambda: make_net(args, device, batch_loading).fit(data, y),
                                     device)
                best[row, path] = min(best.get((row, path), np.inf), seconds)
                weights[row, path] = {k: v.detach().cpu().clone()
                                      for k, v in net.module_.state_dict().items()}
            seconds = loader_seconds(make_net(args, device, batch_loading), X, y)
            best["loader only", path] = min(best.get(("loader only", path), np.inf), seconds)
    return best, weights, clock.fastest()


def report(best, weights, L, load, source, n, batch_size):
    print(f"\n=== {source}: {n:,} x 784 float32, MLP {'x'.join(map(str, HIDDEN))}, "
          f"batches of {batch_size} ===")
    print(f"L = {L:.3f} s (forward+backward epoch of the MLP, batch 512)")
    table = Table(16, cell_width=(11, 11, 9, 11, 11))
    table.header("row", ["per-row s", "batched s", "ratio", "per-row L", "batched L"])
    for row in ("epoch, array", "epoch, memmap", "loader only"):
        slow, fast = best[row, "per-row"], best[row, "batched"]
        table.row(row, [f"{slow:.3f}", f"{fast:.3f}", f"{slow / fast:.2f}x",
                        f"{slow / L:.2f}", f"{fast / L:.2f}"])
    print(table)
    print_contention(load, "the measurements")
    identical = all(
        all(torch.equal(weights[row, "per-row"][k], weights[row, "batched"][k])
            for k in weights[row, "per-row"])
        for row in ("epoch, array", "epoch, memmap"))
    ratio = best["epoch, array", "per-row"] / best["epoch, array", "batched"]
    verdicts = {
        "bit-identical weights (both paths)": (identical, "array and memmap, one epoch"),
        "batched epoch no slower": (ratio >= 1.0, f"per-row / batched = {ratio:.2f}"),
    }
    print_verdicts(verdicts)
    return verdicts


def main(argv=None):
    parser = benchmark_parser(__doc__, repeats=3, repeats_help="time every row this many times",
                              quick_help="6,000 rows, one repeat", json=False)
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-home", default=default_data_home())
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 6000, 1
    wall_start = time.perf_counter()
    device = start(args)
    meta = environment(args, device)
    print(f"skggda {skggda.__version__}, torch {torch.__version__}, device {device}, "
          f"{torch.get_num_threads()} threads, load average {meta['loadavg_before']}")
    X, y, source = load_data(args)
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "X.npy", X)
        X_map = np.load(Path(folder) / "X.npy", mmap_mode="r")
        (best, weights, L), load = with_contention(lambda: measure(args, device, X, y, X_map))
    verdicts = report(best, weights, L, load, source, len(X), args.batch_size)
    print_overall([verdicts])
    print_closing(meta, wall_start)


if __name__ == "__main__":
    main()
