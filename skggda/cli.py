"""Command line: ``skggda`` (or ``python -m skggda``).

With no arguments it runs the main job on data bundled with scikit-learn (no
download): train a net on labels with 10% of them flipped, attribute the test
loss to groups of training points with TracIn at several group sizes, and
print how well the lowest-scoring groups reveal the flipped labels, next to
the cost of every stage.
"""

from __future__ import annotations

import argparse
import sys
from time import perf_counter

import numpy as np
from sklearn import datasets
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from . import __version__
from .attribution import TracInAttributor
from .grouping import RandomGrouper
from .metrics import noisy_label_auc
from .models import make_classifier

_BUNDLED = {
    "breast_cancer": datasets.load_breast_cancer,
    "digits": datasets.load_digits,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skggda",
        description="Generalized group data attribution: which groups of training "
        "data drive a model's test loss? Runs a short noisy-label experiment.",
    )
    parser.add_argument("--version", action="version", version=f"skggda {__version__}")
    parser.add_argument("--dataset", choices=sorted(_BUNDLED), default="breast_cancer",
                        help="bundled scikit-learn data set (default: %(default)s)")
    parser.add_argument("--group-sizes", type=int, nargs="+", default=[1, 4, 16, 64],
                        metavar="G", help="group sizes to attribute to (default: 1 4 16 64)")
    parser.add_argument("--noise", type=float, default=0.1,
                        help="fraction of training labels to flip (default: %(default)s)")
    parser.add_argument("--hidden", type=int, nargs="*", default=[50, 50],
                        help="hidden layer sizes of the MLP (default: 50 50)")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (default: 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def load_noisy_split(name: str, noise: float, seed: int):
    """Standardised 80/20 split of a bundled data set with ``noise`` of train labels flipped."""
    X, y = _BUNDLED[name](return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=seed
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = (scaler.transform(a).astype(np.float32) for a in (X_train, X_test))
    rng = np.random.RandomState(seed)
    flipped = rng.rand(len(y_train)) < noise
    n_classes = len(np.unique(y))
    shift = rng.randint(1, n_classes, size=len(y_train))
    y_noisy = np.where(flipped, (y_train + shift) % n_classes, y_train)
    return X_train, y_noisy, X_test, y_test, flipped


def run(args) -> int:
    X, y, X_test, y_test, flipped = load_noisy_split(args.dataset, args.noise, args.seed)
    print(f"skggda {__version__}: TracIn group attribution on {args.dataset} "
          f"({len(y)} train / {len(y_test)} test, {flipped.sum()} of the training labels "
          f"flipped)")
    net = make_classifier(tuple(args.hidden), max_epochs=args.epochs, lr=1e-2,
                          device=args.device, random_state=args.seed)
    start = perf_counter()
    net.fit(X, y)
    train_seconds = perf_counter() - start
    accuracy = float((net.predict(X_test) == y_test).mean())
    print(f"net: MLP {tuple(args.hidden)}, {args.epochs} epochs in {train_seconds:.2f} s, "
          f"test accuracy {accuracy:.1%}\n")

    header = (f"{'group size':>10}  {'groups':>6}  {'grouping s':>10}  {'attribution s':>13}  "
              f"{'noisy-label AUC':>15}  {'flipped in lowest 10%':>21}")
    print(header)
    print("-" * len(header))
    per_point = None
    for group_size in args.group_sizes:
        attr = TracInAttributor(
            FrozenEstimator(net),
            grouper=RandomGrouper(group_size=group_size, random_state=args.seed),
            verbose=0 if args.quiet else 1,
            random_state=args.seed,
        ).fit(X, y)
        scores = attr.score_groups(X_test, y_test)
        t = attr.timings_
        found = _found_in_lowest(scores, attr.labels_, flipped, fraction=0.1)
        print(f"{group_size:>10}  {attr.n_groups_:>6}  {t['grouping']:>10.3f}  "
              f"{t['gradients'] + t['scoring']:>13.3f}  "
              f"{noisy_label_auc(scores, attr.labels_, flipped):>15.3f}  {found:>21.1%}")
        if group_size == 1:
            per_point = scores[np.argsort(attr.labels_)]
    print("\nAUC 0.5 = random order; higher = flipped labels sit in the lowest-scoring groups.")
    if per_point is not None:
        _print_most_harmful(per_point, y, flipped)
    return 0


def _found_in_lowest(scores, labels, flipped, fraction):
    """Share of the flipped labels inside the lowest-scoring groups covering ``fraction``."""
    order = np.argsort(scores, kind="stable")
    point_scores_rank = np.empty(len(scores), dtype=int)
    point_scores_rank[order] = np.arange(len(scores))
    sizes = np.bincount(labels, minlength=len(scores))[order]
    n_groups = int(np.searchsorted(np.cumsum(sizes), fraction * len(labels), side="right"))
    inspected = point_scores_rank[labels] < max(n_groups, 1)
    return float(flipped[inspected].sum() / max(flipped.sum(), 1))


def _print_most_harmful(scores, y, flipped, top=5):
    print(f"\nThe {top} most harmful training points (group size 1):")
    for index in np.argsort(scores)[:top]:
        note = "flipped label" if flipped[index] else "clean label"
        print(f"  #{index:<5} score {scores[index]:+.4f}  label {y[index]}  ({note})")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.noise < 1:
        build_parser().error(f"--noise must be in [0, 1), got {args.noise}")
    if any(g < 1 for g in args.group_sizes):
        build_parser().error("--group-sizes must be positive integers")
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
