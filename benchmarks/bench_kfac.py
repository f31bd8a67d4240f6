"""EK-FAC / K-FAC cost at dattri's MNIST-10 size, in units of one training epoch L.

Random data of the size of dattri's protocol (5,000 x 784 training images,
500 test images, MLP 784-128-64-10; only sizes matter for timing):

* ``fit`` + ``score_groups`` of the mean test loss, groups of 1 and 64
  (target: <= 5 L for EK-FAC);
* ``attribute`` of the 500 test points, EK-FAC against TracIn (target:
  within 2x).

L is the fastest forward+backward epoch, timed before every run (as
``bench_engine``'s EpochClock: single epochs vary several-fold on a busy
host). Usage: ``python benchmarks/bench_kfac.py [threads] [n_train]``; with
``n_train`` above 5,000 only ``fit`` + ``score_groups`` at group size 1 runs.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator

from _harness import epoch_seconds, timed
from skggda import InfluenceAttributor, RandomGrouper, TracInAttributor
from skggda.models import make_classifier

DEVICE = torch.device("cpu")


def make_data(n, n_test=500, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 784)).astype(np.float32)
    X_test = rng.normal(size=(n_test, 784)).astype(np.float32)
    return X, rng.randint(10, size=n), X_test, rng.randint(10, size=n_test)


def best_of(fn, clock, repeats):
    """Fastest of ``repeats`` calls, an epoch timed before each."""
    best = np.inf
    for _ in range(repeats):
        clock()
        best = min(best, timed(fn, DEVICE)[0])
    return best


def main(threads=1, n=5000):
    torch.set_num_threads(threads)
    X, y, X_test, y_test = make_data(n)
    net = make_classifier((128, 64), max_epochs=2, random_state=0).fit(X, y)
    frozen, epochs = FrozenEstimator(net), []

    def clock():
        epochs.append(epoch_seconds(net.module_, X, y, DEVICE, 1))

    rows = {}
    for group_size in (1, 64) if n <= 5000 else (1,):
        grouper = RandomGrouper(group_size=group_size, random_state=0) if group_size > 1 else None
        for solver in ("ekfac", "kfac"):
            attr = InfluenceAttributor(frozen, solver=solver, grouper=grouper, random_state=0)
            rows[f"{solver} fit + score_groups, g={group_size}"] = best_of(
                lambda: attr.fit(X, y).score_groups(X_test, y_test), clock, 3)
            stages = {k: round(v, 2) for k, v in attr.timings_.items() if "." in k}
            print(f"{solver} g={group_size} stages (s): {stages}", flush=True)
    if n <= 5000:
        ekfac = InfluenceAttributor(frozen, solver="ekfac", random_state=0).fit(X, y)
        tracin = TracInAttributor(frozen).fit(X, y)
        for name, attr in (("ekfac", ekfac), ("tracin", tracin)):
            rows[f"{name} attribute(500)"] = best_of(
                lambda: attr.attribute(X_test, y_test), clock, 1)
    clock()
    L = min(epochs)
    print(f"n={n}, {threads} thread(s): L = {L:.3f} s (fastest of {len(epochs)} epochs, "
          f"slowest {max(epochs):.3f} s)")
    for name, seconds in rows.items():
        print(f"  {name}: {seconds:.2f} s = {seconds / L:.1f} L")
    if n <= 5000:
        ratio = rows["ekfac attribute(500)"] / rows["tracin attribute(500)"]
        print(f"  attribute: EK-FAC / TracIn = {ratio:.2f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
