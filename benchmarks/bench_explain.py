"""``skggda explain`` on HELOC with flipped labels: its cost and what it finds.

Target (issue 14): on HELOC with 10% flipped labels,
``skggda explain heloc.csv --target RiskPerformance --group-size 16`` runs in
under 3x the time of training the default net once, and the 10% most harmful
groups it lists hold at least 1.5x the base rate of flipped rows.

Per seed:

1. flip ``--noise`` of the file's ``RiskPerformance`` labels (Good <-> Bad,
   seeded) and write the copy to a temporary folder: the validation rows
   explain splits off carry flips too;
2. T: train the net explain trains (same preprocessing, split and recipe) once
   in this process, before and after the explain run (the host's speed
   drifts; the mean of the two is the yardstick);
3. run ``python -m skggda explain`` as a user would (a fresh interpreter:
   start-up and imports count) for every ``--properties`` entry, timed;
4. enrichment: the share of flipped rows among the training rows of the 10%
   lowest-scoring groups of ``groups.csv`` (found through ``members.csv``),
   divided by the share among all training rows.

Printed: seconds and ratios to T, in wall time and in CPU time (the CPU ratio
is less sensitive to other processes on a shared machine).

With ``--verify`` (issue 22), one more run per seed adds ``--verify`` to the
first property's command and reads its ``verification.csv``: validation
accuracy with no removal, and after removing 5% and 10% of the training rows
in the most harmful groups or in random groups (means over explain's three
retraining seeds), and that run's time as a ratio to T. Target: at 10%,
harmful removal at least 1 point above random removal and not below no
removal.

Usage::

    PYTHONPATH=. python benchmarks/bench_explain.py
    PYTHONPATH=. python benchmarks/bench_explain.py --seeds 0 1 2 --properties accuracy loss
    PYTHONPATH=. python benchmarks/bench_explain.py --seeds 0 1 2 --properties accuracy --verify
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from skggda.datasets._home import get_data_home
from skggda.cli._explain import build_parser, load_data, make_model

TARGET, FLIP = "RiskPerformance", {"Good": "Bad", "Bad": "Good"}


def flipped_copy(source, folder, noise, seed):
    """Write HELOC with ``noise`` of its labels flipped; returns (path, flipped row mask)."""
    frame = pd.read_csv(source)
    flipped = np.random.RandomState(seed).rand(len(frame)) < noise
    frame.loc[flipped, TARGET] = frame.loc[flipped, TARGET].map(FLIP)
    path = Path(folder) / "heloc.csv"
    frame.to_csv(path, index=False)
    return path, flipped


def explain_argv(path, output, group_size, prop):
    return [str(path), "--target", TARGET, "--group-size", str(group_size), "--property", prop,
            "--output", str(output), "--overwrite", "--quiet"]


def time_training(argv):
    """``(wall, cpu)`` seconds of one fit of the net explain trains, on its data."""
    args = build_parser().parse_args(argv)
    data = load_data(args, None)
    net = make_model(args.model, data.task, args)
    wall, cpu = time.perf_counter(), time.process_time()
    net.fit(data.X_train, data.y_train)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_explain(argv):
    """``(wall, cpu)`` seconds of ``python -m skggda explain`` in a fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "skggda", "explain", *argv], check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def enrichment(output, flipped, share=0.1):
    """Flipped share in the ``share`` lowest-scoring groups over the flipped share overall."""
    groups = pd.read_csv(output / "groups.csv")  # sorted by score, most harmful first
    members = pd.read_csv(output / "members.csv")
    harmful = groups["group"].head(math.ceil(share * len(groups)))
    rows = members.loc[members["group"].isin(harmful), "row"]
    return flipped[rows].mean() / flipped[members["row"]].mean()


def verification(output):
    """``{(removed, fraction): mean validation accuracy}`` of ``verification.csv``."""
    table = pd.read_csv(output / "verification.csv")
    return table.groupby(["removed", "fraction"])["metric"].mean().to_dict()


def run_seed(source, seed, args):
    with tempfile.TemporaryDirectory() as folder:
        path, flipped = flipped_copy(source, folder, args.noise, seed)
        output = Path(folder) / "report"
        argv = explain_argv(path, output, args.group_size, args.properties[0])
        first = time_training(argv)
        runs = {}
        for prop in args.properties:
            argv = explain_argv(path, output, args.group_size, prop)
            runs[prop] = (*time_explain(argv), enrichment(output, flipped))
        checked = None
        if args.verify:
            argv = explain_argv(path, output, args.group_size, args.properties[0]) + ["--verify"]
            wall, cpu = time_explain(argv)
            checked = (wall, cpu, verification(output))
        second = time_training(argv)
    return np.mean([first, second], axis=0), runs, checked


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--group-size", type=int, default=16)
    parser.add_argument("--properties", nargs="+", default=["accuracy", "loss"],
                        choices=["accuracy", "margin", "loss"],
                        help="the first is explain's default; the others for comparison")
    parser.add_argument("--verify", action="store_true",
                        help="also run the first property with --verify and read "
                        "verification.csv")
    args = parser.parse_args()
    source = get_data_home(args.data_home) / "heloc" / "heloc_dataset_v1.csv"
    print(f"HELOC, {args.noise:.0%} flipped labels, group size {args.group_size}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"{'seed':>4} {'property':<9} {'T wall':>7} {'T cpu':>6} {'explain wall':>12} "
          f"{'cpu':>6} {'ratio wall':>10} {'ratio cpu':>9} {'enrichment':>10}")
    results, verified = [], []
    for seed in args.seeds:
        (train_wall, train_cpu), runs, checked = run_seed(source, seed, args)
        if checked is not None:
            wall, cpu, means = checked
            verified.append((wall / train_wall, cpu / train_cpu, means))
        for prop, (wall, cpu, enriched) in runs.items():
            results.append((prop, wall / train_wall, cpu / train_cpu, enriched))
            print(f"{seed:>4} {prop:<9} {train_wall:>7.1f} {train_cpu:>6.1f} {wall:>12.1f} "
                  f"{cpu:>6.1f} {wall / train_wall:>10.2f} {cpu / train_cpu:>9.2f} "
                  f"{enriched:>10.2f}")
    print("\nmean over seeds (targets: ratio < 3, enrichment >= 1.5)")
    for prop in args.properties:
        rows = np.array([r[1:] for r in results if r[0] == prop])
        wall, cpu, enriched = rows.mean(0)
        print(f"  {prop:<9} ratio wall {wall:.2f}, cpu {cpu:.2f}; enrichment {enriched:.2f}")
    if verified:
        print_verification(args.seeds, verified)


def print_verification(seeds, verified):
    """Per seed and mean: validation accuracy (%) with no, harmful and random removal."""
    keys = [("none", 0.0), ("harmful", 0.05), ("random", 0.05), ("harmful", 0.1),
            ("random", 0.1)]
    print("\n--verify: validation accuracy (%), means over explain's retraining seeds")
    print(f"{'seed':>4} {'ratio wall':>10} {'ratio cpu':>9} " + " ".join(
        f"{r + '@' + format(f, '.0%'):>12}" for r, f in keys) + f" {'gain@10%':>9}")
    for seed, (wall, cpu, means) in zip(seeds, verified):
        gain = 100 * (means[("harmful", 0.1)] - means[("random", 0.1)])
        print(f"{seed:>4} {wall:>10.2f} {cpu:>9.2f} " + " ".join(
            f"{100 * means[k]:>12.2f}" for k in keys) + f" {gain:>9.2f}")
    mean = {k: np.mean([m[k] for _, _, m in verified]) for k in keys}
    gain = 100 * (mean[("harmful", 0.1)] - mean[("random", 0.1)])
    print(f"{'mean':>4} {np.mean([v[0] for v in verified]):>10.2f} "
          f"{np.mean([v[1] for v in verified]):>9.2f} "
          + " ".join(f"{100 * mean[k]:>12.2f}" for k in keys) + f" {gain:>9.2f}")


if __name__ == "__main__":
    main()
