"""Random draws that a seed fixes whatever the device.

CUDA's generators draw other numbers than the CPU's for the same seed, so a
fit on a GPU would give other clusters or other sampled labels than the same
fit on the CPU. The engine draws with a CPU generator and moves what it drew
to the device where the work happens, as the projections do.
"""

from __future__ import annotations

import torch


def cpu_generator(seed) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``int(seed)``."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def draw(weights, count, generator, *, replacement=False):
    """``torch.multinomial`` rows drawn by the CPU ``generator``, on ``weights``' device.

    The weights are copied to the host for the draw: one small transfer (and,
    on a GPU, one synchronisation) per call, the price of device-independent
    draws.
    """
    index = torch.multinomial(weights.cpu(), count, replacement=replacement,
                              generator=generator)
    return index.to(weights.device)
