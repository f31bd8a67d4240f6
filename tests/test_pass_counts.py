"""GGDA's promise in passes: the work of a fit or a query does not grow with the groups.

All k group gradients come out of one streaming pass (DESIGN.md, section 2),
so a regression to one backward pass per group would leave every value
right and every value test green. These tests count what the nets do --
forward calls of the net's module (every member and checkpoint copy
included) and calls of ``torch.autograd.grad`` / ``torch.autograd.backward``
-- for the same data grouped in 240 groups of 1 and in 4 groups of 64: the
counts must be equal.

CG and LiSSA are left out: their number of Hessian-vector products is their
iteration count, which depends on the right-hand sides (and so on the
groups) by design.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import pytest
import torch
from sklearn.frozen import FrozenEstimator

from skggda import InfluenceAttributor, RandomGrouper, TracInAttributor, TRAKAttributor
from skggda.models import MLP

from conftest import tiny_net


@contextmanager
def counting(monkeypatch):
    """Count forward calls of any :class:`MLP` and the backward passes, inside the block."""
    counts = Counter()

    def forward(module, args):
        if isinstance(module, MLP):
            counts["forward"] += 1

    def counted(name, function):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return wrapper

    handle = torch.nn.modules.module.register_module_forward_pre_hook(forward)
    with monkeypatch.context() as patch:
        patch.setattr(torch.autograd, "grad", counted("grad", torch.autograd.grad))
        patch.setattr(torch.autograd, "backward", counted("backward", torch.autograd.backward))
        try:
            yield counts
        finally:
            handle.remove()


#: Fixed batch sizes: the counts are batches of passes.
KINDS = {
    "tracin": lambda net, grouper: TracInAttributor(
        FrozenEstimator(net), grouper=grouper, batch_size=32),
    "tracin-projected": lambda net, grouper: TracInAttributor(
        FrozenEstimator(net), grouper=grouper, n_components=16, batch_size=32, random_state=0),
    "tracin-all": lambda net, grouper: TracInAttributor(
        tiny_net(epochs=2), grouper=grouper, checkpoints="all", batch_size=32, random_state=0),
    "fisher": lambda net, grouper: InfluenceAttributor(
        FrozenEstimator(net), grouper=grouper, n_components=16, batch_size=32, random_state=0),
    "ekfac": lambda net, grouper: InfluenceAttributor(
        FrozenEstimator(net), grouper=grouper, solver="ekfac", batch_size=32, random_state=0),
    "exact": lambda net, grouper: InfluenceAttributor(
        FrozenEstimator(net), grouper=grouper, solver="exact", batch_size=32, random_state=0),
    "trak": lambda net, grouper: TRAKAttributor(
        tiny_net(epochs=2), grouper=grouper, n_models=2, n_components=16, batch_size=32,
        random_state=0),
}
METHODS = ["fit", "score_groups", "attribute", "self_influence"]


def counts_per_method(make, net, group_size, problem, monkeypatch):
    X, y, X_test, y_test = problem
    attr = make(net, RandomGrouper(group_size=group_size, random_state=0))
    calls = {
        "fit": lambda: attr.fit(X, y),
        "score_groups": lambda: attr.score_groups(X_test, y_test),
        "attribute": lambda: attr.attribute(X_test[:20], y_test[:20]),
        "self_influence": attr.self_influence,
    }
    out = {}
    for method in METHODS:
        with counting(monkeypatch) as counts:
            calls[method]()
        out[method] = dict(counts)
    assert attr.n_groups_ == -(-len(y) // group_size)
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_passes_are_the_same_for_240_groups_of_1_and_4_groups_of_64(problem, fitted_net, kind,
                                                                     monkeypatch):
    singletons, groups_of_64 = (
        counts_per_method(KINDS[kind], fitted_net, size, problem, monkeypatch) for size in (1, 64))
    for method in METHODS:
        assert singletons[method] == groups_of_64[method], method
    # the counters see the passes: scoring makes at least one forward and backward
    assert singletons["score_groups"]["forward"] > 0 and singletons["score_groups"]["grad"] > 0
