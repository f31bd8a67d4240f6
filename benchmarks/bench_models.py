"""Images and text: TracIn and Fisher on ResNet-18 and on the MiniLM text classifier.

What is measured (issue: "TracIn and Fisher (r = 512) on MNIST-size ResNet-18
and on the text classifier at group sizes 1-1024 as ratios to one
forward+backward epoch over the same data"):

* ``resnet``: ResNet-18 (CIFAR variant, ``--width`` channels in the first
  stage) on MNIST-shaped images (1 x 28 x 28, 10 classes), ``--n`` training
  images. Every attributed parameter (convolutions, batch norms, head). L is
  one forward+backward epoch of the same module over the same images.
  Target: aggregate TracIn <= 4 L at every group size.
* ``text``: the MiniLM pair classifier on QNLI pairs (or random tokens when
  the data folder is missing), ``--max-length`` tokens. Attribution of the
  last encoder block and the head (``skggda.models.TEXT_LAST_BLOCK``); L is one
  forward+backward epoch of the *whole* model (its own). Target: last-block
  TracIn <= 3 L at every group size.

Part 2 (``--fidelity``, on by default) measures what the parameter subset
costs in fidelity: TracIn group scores (mean test loss, random groups of 1
and 16) computed on a subset of the parameters, against the scores on every
parameter: Spearman rank correlation, overlap of the 10% lowest-scoring
groups (where mislabeled data sits), and the time as a ratio to L.

Rows: ``tracin`` (fit + score_groups of the mean test loss, frozen net,
random groups) and ``fisher`` (InfluenceAttributor, n_components=512,
batched Fisher), ratios to L; the minimum of ``--repeats`` runs. The
ratios do not depend on ``--n``; the CPU cost does (ResNet-18 at full width
is ~1 GFLOP per image forward+backward), hence the defaults.

Usage::

    PYTHONPATH=. python benchmarks/bench_models.py                 # both
    PYTHONPATH=. python benchmarks/bench_models.py --workloads resnet --width 64 --n 2048
    PYTHONPATH=. python benchmarks/bench_models.py --quick
"""

from __future__ import annotations


import numpy as np
import torch
from sklearn.frozen import FrozenEstimator

import skggda
import skggda.datasets
import skggda.models
from _harness import (GROUP_SIZES, N_COMPONENTS, Table, benchmark_parser, default_data_home,
                     epoch_seconds, group_columns, print_contention, print_overall,
                     print_verdicts, start, timed, with_contention)
from skggda import InfluenceAttributor, RandomGrouper, TracInAttributor

# ResNet-18 and MiniLM activations take far more memory per row than the MLPs'
BATCH_SIZE = 128


def image_workload(args, device):
    rng = np.random.RandomState(0)
    n = args.n
    patterns = rng.normal(size=(10, 1, 7, 7))
    patterns = np.kron(patterns, np.ones((1, 1, 4, 4)))
    y = rng.randint(10, size=n + 512)
    X = (patterns[y] + rng.normal(scale=1.0, size=(len(y), 1, 28, 28))).astype(np.float32)
    net = skggda.models.make_resnet_classifier(width=args.width, max_epochs=1, batch_size=128,
                                               device=device, random_state=0)
    net.fit(X[:n], y[:n])
    return dict(name=f"ResNet-18 (width {args.width}) on {n} MNIST-shaped images",
                net=net, X=X[:n], y=y[:n], X_test=X[n:], y_test=y[n:], subset="all",
                target=4.0, L_module=net.module_,
                subsets={"layer4 + head": ["layer4", "head"], "head only": "last"})


def text_workload(args, device):
    from skggda.models import TEXT_LAST_BLOCK, PairTokenizer, make_text_classifier

    n = args.n
    try:
        data = skggda.datasets.load_qnli_dev(data_home=args.data_home)
        pairs, y = data.X_train, data.y_train
        source = "QNLI dev pairs"
    except FileNotFoundError:
        rng = np.random.RandomState(0)
        pairs = np.array([[f"q {i} {rng.randint(1000)}", f"s {rng.randint(1000)}"]
                          for i in range(n + 256)], dtype=object)
        y = rng.randint(2, size=len(pairs))
        source = "synthetic pairs"
    tokens = PairTokenizer(max_length=args.max_length).fit(pairs).transform(pairs[: n + 256])
    y = y[: n + 256]
    net = make_text_classifier(max_epochs=1, batch_size=32, device=device, random_state=0)
    net.fit(tokens[:128], y[:128])
    return dict(name=f"MiniLM pair classifier on {n} {source}, {args.max_length} tokens",
                net=net, X=tokens[:n], y=y[:n], X_test=tokens[n:], y_test=y[n:],
                subset=list(TEXT_LAST_BLOCK), target=3.0, L_module=net.module_,
                subsets={"last block + head": list(TEXT_LAST_BLOCK), "head only": "last"})


def grouped(group_size):
    """Random groups of ``group_size``; ``None`` (singletons) at 1."""
    return None if group_size == 1 else RandomGrouper(group_size=group_size, random_state=0)


def attribution_seconds(make, work, group_size, repeats, device):
    grouper = grouped(group_size)

    def run():
        attr = make(FrozenEstimator(work["net"]), grouper).fit(work["X"], work["y"])
        attr.score_groups(work["X_test"], work["y_test"])

    return timed(run, device, repeats)[0]


def workload_epoch_seconds(work, args, device):
    X = work["X"] if work["X"].dtype == np.float32 else work["X"].astype(np.float32)
    return epoch_seconds(work["L_module"], X, work["y"], device, args.repeats, BATCH_SIZE)


def run(work, args, device):
    L = workload_epoch_seconds(work, args, device)
    rows = {}
    makers = {
        "tracin": lambda net, grouper: TracInAttributor(
            net, grouper=grouper, param_subset=work["subset"], batch_size=BATCH_SIZE),
        "fisher": lambda net, grouper: InfluenceAttributor(
            net, grouper=grouper, param_subset=work["subset"], n_components=N_COMPONENTS,
            batch_size=BATCH_SIZE, random_state=0),
    }
    sizes = [g for g in GROUP_SIZES if g <= len(work["y"])]
    for name, make in makers.items():
        rows[name] = [attribution_seconds(make, work, g, args.repeats, device) / L
                      for g in sizes]
    return L, sizes, rows


def subset_fidelity(work, L, args, device):
    """Rank agreement of TracIn scores on parameter subsets with all parameters."""
    from scipy.stats import spearmanr

    def scores(subset, group_size):
        attr = TracInAttributor(FrozenEstimator(work["net"]), grouper=grouped(group_size),
                                param_subset=subset, batch_size=BATCH_SIZE)
        seconds, values = timed(
            lambda: attr.fit(work["X"], work["y"]).score_groups(work["X_test"], work["y_test"]),
            device)
        return values, seconds

    def low_overlap(a, b):
        m = max(1, len(a) // 10)
        return len(set(np.argsort(a)[:m]) & set(np.argsort(b)[:m])) / m

    print(f"\n-- parameter subsets: TracIn scores against all parameters "
          f"({work['name']}) --")
    table = Table(22, cell_width=(5, 10, 17, 10))
    table.header("subset", ["g", "spearman", "low-10% overlap", "time / L"], rule=False)
    for group_size in (1, 16):
        full, seconds = scores("all", group_size)
        table.row("all parameters", [group_size, f"{1.0:.3f}", f"{1.0:.2f}", f"{seconds / L:.2f}"])
        for label, subset in work["subsets"].items():
            part, seconds = scores(subset, group_size)
            rho = spearmanr(full, part).statistic
            table.row(label, [group_size, f"{rho:.3f}", f"{low_overlap(full, part):.2f}",
                              f"{seconds / L:.2f}"])
    print(table)


def report(work, L, sizes, rows, load):
    """Print the workload's table; returns its verdict ``{target: (passed, detail)}``."""
    print(f"\n=== {work['name']} ===")
    print(f"L = {L:.3f} s (forward+backward epoch of the whole model, batch {BATCH_SIZE})")
    table = Table(22)
    table.header("method (ratio to L)", group_columns(sizes))
    for name, ratios in rows.items():
        table.row(name, [f"{r:.2f}" for r in ratios])
    print(table)
    print_contention(load, "this workload")
    worst = max(rows["tracin"])
    verdict = {f"TracIn <= {work['target']:.0f} L at every group size": (
        worst <= work["target"], f"worst {worst:.2f} L")}
    print_verdicts(verdict)
    return verdict


def main(argv=None):
    parser = benchmark_parser(__doc__, repeats=2,
                              repeats_help="time L and every attribution this many times",
                              quick_help="n=256, width 8, one repeat", json=False)
    parser.add_argument("--workloads", nargs="+", default=["resnet", "text"],
                        choices=["resnet", "text"])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--no-fidelity", dest="fidelity", action="store_false",
                        help="skip part 2 (parameter subsets against all parameters)")
    parser.add_argument("--fidelity-only", action="store_true", help="run part 2 only")
    parser.add_argument("--data-home", default=default_data_home())
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.width, args.repeats = 256, 8, 1
    device = start(args)
    print(f"skggda {skggda.__version__}, torch {torch.__version__}, device {device}, "
          f"{torch.get_num_threads()} threads, n={args.n}")
    verdicts = []
    for name in args.workloads:
        work = (image_workload if name == "resnet" else text_workload)(args, device)
        if args.fidelity_only:
            L = workload_epoch_seconds(work, args, device)
            print(f"\n=== {work['name']} ===\nL = {L:.3f} s")
        else:
            (L, sizes, rows), load = with_contention(lambda: run(work, args, device))
            verdicts.append(report(work, L, sizes, rows, load))
        if args.fidelity or args.fidelity_only:
            subset_fidelity(work, L, args, device)
    if verdicts:
        print_overall(verdicts)


if __name__ == "__main__":
    main()
