"""The same numbers on CUDA as on the CPU (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skggda import RandomGrouper, TracInAttributor

from conftest import tiny_net

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("n_components", [None, 32])
def test_tracin_on_cuda_matches_cpu(problem, n_components):
    X, y, X_test, y_test = problem
    results = {}
    for device in ("cpu", "cuda"):
        attr = TracInAttributor(
            tiny_net(device=device), grouper=RandomGrouper(group_size=8),
            n_components=n_components, checkpoints="all", random_state=0,
        ).fit(X, y)
        assert next(attr.estimator_.module_.parameters()).device.type == device
        results[device] = (attr.score_groups(X_test, y_test), attr.attribute(X_test, y_test))
    # training itself differs slightly between devices; scores agree closely
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        assert np.corrcoef(cpu.ravel(), gpu.ravel())[0, 1] > 0.99


def _frozen_copy(net, device):
    """The same trained weights on ``device``, frozen (no retraining differences)."""
    import copy

    from sklearn.frozen import FrozenEstimator

    moved = copy.deepcopy(net)
    moved.device = device  # skorch moves batches to ``net.device``
    moved.module_.to(device)
    return FrozenEstimator(moved)


@pytest.mark.parametrize("params", [
    dict(solver="fisher", fisher="batched", n_components=300),  # blocked Gram, refined solve
    dict(solver="fisher", fisher="empirical", n_components=300),
    dict(solver="fisher", fisher="empirical", n_components=None),
])
def test_influence_on_cuda_matches_cpu(problem, params):
    from skggda import InfluenceAttributor

    X, y, X_test, y_test = problem
    net = tiny_net(hidden=(64,)).fit(X, y)
    out = {}
    for device in ("cpu", "cuda"):
        attr = InfluenceAttributor(_frozen_copy(net, device), grouper=RandomGrouper(group_size=4),
                                   damping=1e-2, random_state=0, **params).fit(X, y)
        out[device] = (attr.score_groups(X_test, y_test), attr.attribute(X_test, y_test))
    for cpu, gpu in zip(out["cpu"], out["cuda"]):
        np.testing.assert_allclose(gpu, cpu, rtol=2e-3, atol=1e-4 * np.abs(cpu).max())


def test_trak_on_cuda_matches_cpu(problem):
    from skggda import TRAKAttributor

    X, y, X_test, y_test = problem
    scores = {}
    for device in ("cpu", "cuda"):
        attr = TRAKAttributor(tiny_net(hidden=(64,), device=device), n_models=2,
                              n_components=300, grouper=RandomGrouper(group_size=4),
                              random_state=0).fit(X, y)
        scores[device] = attr.score_groups(X_test, y_test)
    # the members train on each device: close, not equal
    assert np.corrcoef(scores["cpu"], scores["cuda"])[0, 1] > 0.95
