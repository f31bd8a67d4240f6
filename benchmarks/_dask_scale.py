"""TracIn on a Dask LocalCluster against one in-process run, on a large memmap.

:func:`measure_dask_speedup` times ``TracInAttributor(FrozenEstimator(net),
grouper=RandomGrouper(group_size=1024))``, ``fit`` + ``score_groups``, on a
HELOC-shaped float32 memmap (``n_rows x 23``, written to ``path`` when
missing, labels from a fixed linear rule) with a frozen ANN-S net
(``make_classifier((50, 50))`` trained one epoch on the first 20,000 rows):

* in process: one thread (``torch.set_num_threads(1)``);
* on Dask: a ``LocalCluster`` of ``n_workers`` single-threaded worker
  processes, the attributor with ``n_jobs=n_workers`` under
  ``joblib.parallel_config(backend="dask")`` (one warm-up run first: the
  workers import torch on their first task).

The two settings alternate, ``repeats`` runs each, and each keeps its
fastest run (other processes only slow a run down; the cluster idles
during the in-process runs). ``score_groups`` holds the training-set pass
that is split over the workers; ``fit`` validates the memmap (one scan) and
forms the random groups in this process either way. The two score vectors
must agree to 1e-5 (relative to the largest score).

On a shared host, Linux divides CPU time between sessions
(``sched_autogroup``), not threads: the workers split the share of the
session that started them, so two workers only beat one thread while other
sessions leave the cores idle; run it on a quiet machine.

Run ``python benchmarks/_dask_scale.py --n-rows 10000000`` (the file goes to
``/tmp/skggda_heloc_<n>.npy``); ``bench_scale.py`` calls the function.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

N_FEATURES = 23
#: Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which makes
#: glibc map and unmap every large tensor: torch passes then cost 2-3x the CPU
#: time (measured on one 131,072-row block: 0.46 s against 0.16 s). None unsets it.
WORKER_ENVIRONMENT = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
_WRITE_ROWS = 1 << 20


def heloc_memmap(path, n_rows, n_features=N_FEATURES, seed=0):
    """``(X, y)``: a float32 memmap of standard normal rows (written once) and its labels."""
    path = Path(path)
    shape = (int(n_rows), n_features)
    if not path.exists() or np.load(path, mmap_mode="r").shape != shape:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        rng = np.random.default_rng(seed)
        for start in range(0, shape[0], _WRITE_ROWS):
            stop = min(start + _WRITE_ROWS, shape[0])
            out[start:stop] = rng.standard_normal((stop - start, n_features), np.float32)
        out.flush()
        del out
    X = np.load(path, mmap_mode="r")
    weights = np.random.default_rng(1234).standard_normal(n_features).astype(np.float32)
    y = np.concatenate([(X[start:start + _WRITE_ROWS] @ weights > 0).astype(np.int64)
                        for start in range(0, shape[0], _WRITE_ROWS)])
    return X, y


def _fastest(runs):
    """``(times, scores)``: the fastest fit, score and total of ``(fit, score, scores)`` runs."""
    times = {"fit": min(r[0] for r in runs), "score": min(r[1] for r in runs),
             "total": min(r[0] + r[1] for r in runs)}
    return times, runs[-1][2]


def _tracin_run(net, X, y, X_test, y_test, group_size, n_jobs):
    """``(fit seconds, score seconds, scores)`` of one end-to-end TracIn run."""
    from sklearn.frozen import FrozenEstimator

    from skggda import RandomGrouper, TracInAttributor

    attr = TracInAttributor(FrozenEstimator(net), grouper=RandomGrouper(group_size=group_size),
                            n_jobs=n_jobs, random_state=0)
    start = time.perf_counter()
    attr.fit(X, y)
    fitted = time.perf_counter()
    scores = attr.score_groups(X_test, y_test)
    return fitted - start, time.perf_counter() - fitted, scores


def measure_dask_speedup(path, n_rows, *, group_size=1024, n_workers=2, repeats=3,
                         n_test=2000, seed=0):
    """Time TracIn in one thread and on a LocalCluster of single-threaded workers.

    Parameters
    ----------
    path : str or Path
        The memmap file (``.npy``); written when missing or of another shape.
    n_rows : int
        Training rows.
    group_size : int, default=1024
        Random group size.
    n_workers : int, default=2
        Worker processes of the cluster (one thread each).
    repeats : int, default=3
        Runs per setting; the fastest counts.
    n_test : int, default=2000
        Rows of the property's evaluation data (drawn like the training rows).
    seed : int, default=0
        Seed of the data.

    Returns
    -------
    dict
        ``n_rows``; ``in_process`` and ``dask``: the fastest ``"fit"``,
        ``"score"`` and ``"total"`` (``fit`` + ``score_groups``) seconds
        over the runs; ``speedup`` (end to end)
        and ``score_speedup`` (``score_groups``, the distributed pass), in
        times faster; ``max_relative_difference`` of the scores (relative to
        the largest); ``runs``: every ``(in_process, dask)`` pair of totals;
        ``load`` (1-minute load averages before and after).
    """
    import dask
    import joblib
    import torch
    from distributed import Client, LocalCluster

    from skggda.models import make_classifier

    load_before = os.getloadavg()[0]
    X, y = heloc_memmap(path, n_rows, seed=seed)
    X_test, y_test = heloc_memmap(Path(path).with_suffix(".test.npy"), n_test, seed=seed + 1)
    X_test = np.asarray(X_test)
    torch.set_num_threads(1)
    net = make_classifier((50, 50), max_epochs=1, batch_size=4096, random_state=0)
    net.fit(np.asarray(X[:20_000]), y[:20_000])

    def run(n_jobs):
        return _tracin_run(net, X, y, X_test, y_test, group_size, n_jobs)

    with dask.config.set(WORKER_ENVIRONMENT), LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True,
            dashboard_address=":0") as cluster, Client(cluster):
        with joblib.parallel_config(backend="dask"):
            run(n_workers)  # warm-up: the workers import torch on their first task
            # alternate the two settings, so that both see the same load
            runs = [(run(None), run(n_workers)) for _ in range(repeats)]
    in_process, expected = _fastest([pair[0] for pair in runs])
    dask_times, scores = _fastest([pair[1] for pair in runs])
    return {
        "n_rows": int(n_rows),
        "in_process": in_process,
        "dask": dask_times,
        "speedup": in_process["total"] / dask_times["total"],
        "score_speedup": in_process["score"] / dask_times["score"],
        "max_relative_difference": float(np.abs(scores - expected).max()
                                         / np.abs(expected).max()),
        "runs": [(a[0] + a[1], b[0] + b[1]) for a, b in runs],
        "load": (load_before, os.getloadavg()[0]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-rows", type=int, default=10_000_000)
    parser.add_argument("--path", default=None, help="memmap file (default /tmp/skggda_heloc_<n>.npy)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    path = args.path or f"/tmp/skggda_heloc_{args.n_rows}.npy"
    result = measure_dask_speedup(path, args.n_rows, n_workers=args.workers,
                                  repeats=args.repeats)
    for setting in ("in_process", "dask"):
        times = result[setting]
        print(f"{setting:>10}: fit {times['fit']:.2f} s, score_groups {times['score']:.2f} s, "
              f"total {times['total']:.2f} s")
    print(f"speedup: {result['speedup']:.2f}x end to end, {result['score_speedup']:.2f}x "
          f"score_groups; scores differ by {result['max_relative_difference']:.1e} "
          f"(relative); load {result['load'][0]:.1f} -> {result['load'][1]:.1f}")
    print("runs (in process, dask):", ", ".join(f"({a:.2f}, {b:.2f})" for a, b in result["runs"]))


if __name__ == "__main__":
    main()
