"""The benchmarks' shared harness: timing, L, contention, tables, verdicts, options.

Every benchmark script imports what it needs from here (``from _harness import
...``: a script's own folder is on ``sys.path`` when it runs) and no
benchmark imports another.

* Timing: :func:`timed` keeps the fastest of ``repeats`` runs (other
  processes only ever slow a run down), synchronising the device around each.
* L: :func:`epoch_seconds` times one forward + backward epoch (mean
  cross-entropy, no optimizer step); every method is reported as a ratio to
  it. :class:`EpochClock` times one epoch before each of a series of runs:
  single epochs vary several-fold on a shared host, and an L caught slow
  would flatter every ratio, so ratios divide by the fastest epoch seen.
* Memory: :class:`PeakMemory` samples the process's resident anonymous
  memory (heap, not the file pages of a memmap) while a part runs; it and
  ``proc_bytes`` live in ``skggda.utils._testing``, shared with the tests.
* Contention: :func:`with_contention` measures the CPU time other processes
  (and the hypervisor, as steal) took while a part ran; a table is only
  trustworthy when that is small next to the part's wall time.
* Tables and verdicts: :class:`Table`, :func:`print_verdicts`,
  :func:`print_overall`.
* Options: :func:`add_arguments` (``--quick``, ``--repeats``, ``--threads``,
  ``--device``, ``--json``), :func:`workload_specs`, :func:`start`,
  :func:`environment`, :func:`print_closing`, :func:`write_json`,
  :func:`default_data_home`.
"""

from __future__ import annotations

import argparse

import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
import torch.nn.functional as F

import skggda
# shared with the tests; re-exported for the benchmarks (bench_grouping reads proc_bytes)
from skggda.utils._testing import PeakMemory, proc_bytes  # noqa: F401

#: Batch size of L and of the attribution passes, so that both move the same data.
BATCH_SIZE = 512
#: Projection of the Fisher / TRAK rows (the engine benchmarks' common setting).
N_COMPONENTS = 512
#: The columns of the tables: group sizes from per-point to 1024.
GROUP_SIZES = (1, 4, 16, 64, 256, 1024)
#: The two workload sizes (random or structured data of these shapes).
SIZES = {
    "heloc": dict(title="HELOC size", model="ANN-S", n=7896, n_features=23, n_classes=2,
                  hidden=(50, 50)),
    "mnist": dict(title="MNIST size", model="MLP 150x3", n=60000, n_features=784,
                  n_classes=10, hidden=(150, 150, 150)),
}


# ---------------------------------------------------------------------------
# timing and L
# ---------------------------------------------------------------------------


def synchronize(device):
    """Wait for the device's queued work (CUDA runs asynchronously)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device=None, repeats=1):
    """``(seconds, result)``: the fastest of ``repeats`` calls of ``fn()`` and its result.

    The device is synchronised before and after each call; ``result`` is the
    last call's.
    """
    best, result = float("inf"), None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def epoch_seconds(module, X, y, device, repeats=1, batch_size=BATCH_SIZE):
    """L: the fastest of ``repeats`` forward + backward epochs over ``(X, y)``, in seconds.

    Mean cross-entropy per batch of ``batch_size`` rows (numpy slices moved to
    ``device``), no optimizer step; the module in eval mode, as the
    attribution passes run it.
    """
    module.eval()

    def epoch():
        for start in range(0, len(X), batch_size):
            X_batch = torch.as_tensor(X[start:start + batch_size], device=device)
            y_batch = torch.as_tensor(y[start:start + batch_size], device=device)
            module.zero_grad(set_to_none=True)
            F.cross_entropy(module(X_batch), y_batch).backward()

    best, _ = timed(epoch, device, repeats)
    module.zero_grad(set_to_none=True)
    return best


class EpochClock:
    """Times one epoch (L) on demand, before each run of a series.

    Parameters
    ----------
    module, X, y, device, batch_size
        As in :func:`epoch_seconds`.

    Attributes
    ----------
    samples : list of float
        Every epoch timed, in seconds.
    """

    def __init__(self, module, X, y, device, batch_size=BATCH_SIZE):
        self.module, self.X, self.y, self.device = module, X, y, device
        self.batch_size = batch_size
        self.samples = []

    def tick(self):
        """Time one epoch and keep it."""
        self.samples.append(
            epoch_seconds(self.module, self.X, self.y, self.device, 1, self.batch_size))

    def fastest(self, *others):
        """L: the fastest of the epochs timed here and ``others`` (seconds)."""
        return min([*self.samples, *others])


# ---------------------------------------------------------------------------
# contention
# ---------------------------------------------------------------------------


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


def with_contention(fn):
    """``(fn(), load)``: the result and what :func:`contention` measured while it ran."""
    start, counters = time.perf_counter(), cpu_counters()
    value = fn()
    return value, contention(counters, cpu_counters(), time.perf_counter() - start)


def print_contention(load, what):
    """One line: the CPU others took during ``what`` (e.g. ``"this workload"``)."""
    if load is not None:
        print(
            f"contention: other processes used {load['others_cpu']:.1f} CPU-s and steal "
            f"{load['steal']:.1f} s during {what}'s {load['wall']:.1f} s "
            f"(this process: {load['own_cpu']:.1f} CPU-s)"
        )


# ---------------------------------------------------------------------------
# tables and verdicts
# ---------------------------------------------------------------------------


class Table:
    """A fixed-width text table: a left-aligned label column, right-aligned cells.

    Parameters
    ----------
    label_width : int
        Width of the label column.
    cell_width : int or sequence of int, default=9
        Width of every cell, or of each cell in turn.
    """

    def __init__(self, label_width, cell_width=9):
        self.label_width, self.cell_width = label_width, cell_width
        self.lines = []

    def header(self, label, columns, *, rule=True, cell_width=None):
        """A heading row, underlined with dashes when ``rule``."""
        self.row(label, columns, cell_width=cell_width)
        if rule:
            self.lines.append("-" * len(self.lines[-1]))

    def row(self, label, cells, *, cell_width=None):
        """A row of already formatted cells (strings or numbers)."""
        widths = cell_width or self.cell_width
        if isinstance(widths, int):
            widths = [widths] * len(cells)
        self.lines.append(f"{label:<{self.label_width}}"
                          + "".join(f"{cell:>{w}}" for cell, w in zip(cells, widths)))

    def line(self, text=""):
        """A free line (a blank one by default)."""
        self.lines.append(text)

    def __str__(self):
        return "\n".join(self.lines)


def group_columns(group_sizes):
    """Column headings ``g=1``, ``g=4``, ... of the group sizes."""
    return [f"g={g}" for g in group_sizes]


def print_verdicts(verdicts, width=34):
    """One line per target: ``{target: (passed, detail)}``; ``passed=None`` is info only."""
    for target, (ok, detail) in verdicts.items():
        state = "info" if ok is None else ("PASS" if ok else "FAIL")
        print(f"  target {target:<{width}} {state}  ({detail})")


def print_overall(verdict_dicts, note=""):
    """``OVERALL: PASS`` unless some target of some verdict dict failed; returns that."""
    ok = all(passed is not False for verdicts in verdict_dicts
             for passed, _ in verdicts.values())
    print(f"\nOVERALL: {'PASS' if ok else 'FAIL'}{note}")
    return ok


# ---------------------------------------------------------------------------
# options, environment, output
# ---------------------------------------------------------------------------


def add_arguments(parser, *, repeats, repeats_help, quick_help, json=True):
    """Add the options every benchmark shares to ``parser``.

    ``--quick`` (a smoke run: ``quick_help`` says what shrinks), ``--repeats``
    (default ``repeats``; ``repeats_help`` says what is repeated),
    ``--threads``, ``--device`` and, with ``json``, ``--json PATH``.
    """
    parser.add_argument("--quick", action="store_true", help=quick_help)
    if json:
        parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, default=repeats,
                        help=f"{repeats_help}, keep the fastest (default {repeats})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: available cores)")
    parser.add_argument("--device", choices=["cpu", "cuda"],
                        default="cuda" if torch.cuda.is_available() else "cpu")


def benchmark_parser(doc, *, workloads=None, **options):
    """An argument parser described by the first paragraph of ``doc`` (the script's
    docstring), with the shared options of :func:`add_arguments` (``options``).

    With ``workloads`` (a dict of named sizes, read with :func:`workload_specs`):
    ``--workloads`` (default: the HELOC and MNIST sizes) and ``--quick``'s
    meaning for them.
    """
    if workloads is not None:
        options.setdefault("quick_help", "n / 10 (and test / 10): smoke run")
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_arguments(parser, **options)
    if workloads is not None:
        parser.add_argument("--workloads", nargs="+", choices=sorted(workloads),
                            default=["heloc", "mnist"])
    return parser


def workload_specs(workloads, names, quick):
    """``(name, spec)`` of each named workload: a copy, with ``n`` and ``n_test`` / 10 when
    ``quick`` (a smoke run)."""
    for name in names:
        spec = dict(workloads[name])
        if quick:
            spec.update(n=spec["n"] // 10, n_test=spec["n_test"] // 10)
        yield name, spec


def available_cores():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def start(args):
    """Set torch's threads (``--threads``, default: available cores) and seed the global
    generators; returns the ``--device``."""
    torch.set_num_threads(args.threads or available_cores())
    torch.manual_seed(0)
    np.random.seed(0)
    return torch.device(args.device)


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


def print_closing(meta, wall_start):
    """The load average before and after, and the total wall time (kept in ``meta``)."""
    meta["loadavg_after"] = round(os.getloadavg()[0], 2)
    meta["wall_seconds"] = time.perf_counter() - wall_start
    print(f"\nload average (1 min): before {meta['loadavg_before']}, "
          f"after {meta['loadavg_after']}")
    print(f"total wall time: {meta['wall_seconds']:.1f} s")


def write_json(path, payload):
    """Write ``payload`` as indented JSON (anything else as its ``str``) and say so."""
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    print(f"wrote {path}")


def default_data_home():
    """``$SKGGDA_DATA``, else the ``shared/data`` folder beside the repository."""
    return os.environ.get("SKGGDA_DATA", str(Path(__file__).resolve().parents[2]
                                            / "shared" / "data"))
