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
