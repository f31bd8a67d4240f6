"""Shared fixtures: tiny synthetic problems and tiny nets, fixed seeds."""

from __future__ import annotations

import inspect
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from skggda.models import make_classifier

# Tiny nets train faster on one thread, and a busy machine does not stall them.
torch.set_num_threads(1)

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the fuzz tests skip without hypothesis
    pass
else:
    # Same examples on every run (CI too); no example database, no deadline on a
    # shared machine whose speed varies.
    settings.register_profile(
        "skggda", derandomize=True, database=None, deadline=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture],
    )
    settings.load_profile("skggda")

#: Calls made by the fuzz tests, keyed ``(estimator class name, outcome)`` (test_fuzz.py
#: fills it). Outcomes: ``"required"``, a call on valid input that had to succeed and
#: did; ``"success"``, a fuzzed call that was allowed to fail and succeeded (its result
#: checked); ``"refusal"``, a fuzzed call that failed cleanly.
FUZZED_CALLS = Counter()

#: Groupings whose scores were checked against the sum of their members' per-point
#: scores, keyed ``"non-trivial"`` (neither one group nor all singletons), ``"one group"``
#: and ``"singletons"`` (test_fuzz.py fills it).
FUZZED_GROUPINGS = Counter()


def pytest_terminal_summary(terminalreporter):
    write = terminalreporter.write_line
    if FUZZED_CALLS:
        outcomes = Counter()
        per_estimator = {}
        for (name, outcome), count in FUZZED_CALLS.items():
            outcomes[outcome] += count
            per_estimator.setdefault(name, Counter())[outcome] += count
        write(f"fuzzed calls: {outcomes['required'] + outcomes['success']} successful "
              f"({outcomes['required']} on valid input that had to succeed, "
              f"{outcomes['success']} on fuzzed input), {outcomes['refusal']} clean refusals")
        for name, counts in sorted(per_estimator.items()):
            write(f"  {name}: {counts['required'] + counts['success']} successful "
                  f"({counts['required']} required), {counts['refusal']} refused")
    if FUZZED_GROUPINGS:
        write(f"groupings checked against member sums: {FUZZED_GROUPINGS['non-trivial']} "
              f"non-trivial, {FUZZED_GROUPINGS['one group']} one group, "
              f"{FUZZED_GROUPINGS['singletons']} all singletons")

#: Where the real data sets live for the slow tests (README of ../shared/data).
DATA_DIR = Path(
    os.environ.get("SKGGDA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def make_problem(n=240, n_features=6, n_classes=2, noise=0.0, seed=0):
    """Linearly separable-ish data; ``noise`` is the fraction of flipped labels."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    w = np.random.RandomState(1234).normal(size=(n_features, n_classes))  # same rule for every split
    y = (X @ w).argmax(1)
    flipped = rng.rand(n) < noise
    y_noisy = np.where(flipped, (y + 1 + rng.randint(n_classes - 1, size=n)) % n_classes, y)
    return X, y_noisy.astype(np.int64), y.astype(np.int64), flipped


@pytest.fixture(scope="session")
def problem():
    X, y, _, _ = make_problem(n=240)
    X_test, y_test, _, _ = make_problem(n=80, seed=1)
    return X, y, X_test, y_test


def tiny_net(hidden=(8,), epochs=3, seed=0, batch_size=32, **kwargs):
    return make_classifier(hidden, max_epochs=epochs, lr=1e-2, batch_size=batch_size,
                           random_state=seed, **kwargs)


@pytest.fixture(scope="session")
def fitted_net(problem):
    X, y, _, _ = problem
    return tiny_net().fit(X, y)


def per_sample_loss(output, target):
    """Every sample's cross-entropy (no reduction): the loss the engine tests pass."""
    return F.cross_entropy(output, target, reduction="none")


def two_linears():
    """A seeded 5 -> 7 -> 3 net of two linears and a tanh (engine and K-FAC tests)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def one_cycle_rates(lr, total):
    """The rate of each of ``total`` optimiser steps under torch's own OneCycleLR."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total)
    rates = []
    for step in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if step < total - 1:
            schedule.step()
    return np.array(rates)


def deep_state(obj, _memo=None):
    """A comparable picture of everything ``obj`` holds, arrays and tensors by value.

    Two pictures are equal when nothing reachable from ``obj`` changed:
    attributes, nested estimators, nets (weights, buffers, hooks, train or
    eval mode), arrays (dtype, shape and bytes). Shared objects appear once
    and are referred to afterwards, so cycles end.
    """
    memo = {} if _memo is None else _memo
    if obj is None or isinstance(obj, (bool, int, str, bytes, type)):
        return obj
    if isinstance(obj, float):
        return ("nan",) if obj != obj else obj
    if isinstance(obj, np.generic):
        return ("numpy", obj.dtype.str, obj.tobytes())
    if id(obj) in memo:
        return ("ref", memo[id(obj)])
    memo[id(obj)] = len(memo)
    if torch.is_tensor(obj):
        data = obj.detach().cpu()
        data = data.view(torch.int16) if data.dtype == torch.bfloat16 else data
        return ("tensor", str(obj.dtype), tuple(obj.shape), obj.requires_grad,
                data.contiguous().numpy().tobytes())
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return ("objects", obj.shape, [deep_state(v, memo) for v in obj.ravel()])
        return ("ndarray", obj.dtype.str, obj.shape, np.ascontiguousarray(obj).tobytes())
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return (type(obj).__name__, [deep_state(v, memo) for v in items])
    if isinstance(obj, dict):
        return ("dict", [(repr(k), deep_state(v, memo)) for k, v in obj.items()])
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict) and not inspect.isroutine(obj):
        return (type(obj).__qualname__, deep_state(state, memo))
    return ("opaque", type(obj).__qualname__, id(obj))  # functions, locks, generators
