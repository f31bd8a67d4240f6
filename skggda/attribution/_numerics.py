"""Numerical sanity of what attribution computes: no silent NaN, inf or zero scores.

A net whose outputs overflow on some inputs, or a property that does not
depend on the parameters, would otherwise give NaN, infinite or all-zero
scores that look like results. These checks turn them into errors that say
what went wrong.
"""

from __future__ import annotations

import numpy as np
import torch


def all_finite(values):
    """Whether every entry of a tensor or array is finite.

    A CPU tensor is checked through numpy: ``np.isfinite`` reads 60,000 x 1,024
    float32 in 0.04 s where ``torch.isfinite(...).all()`` takes 0.6 s (one thread).
    """
    if torch.is_tensor(values):
        if values.device.type != "cpu" or values.dtype == torch.bfloat16:
            return bool(torch.isfinite(values).all())
        values = values.detach().numpy()
    return bool(np.isfinite(values).all())


def check_finite_state(values, what):
    """Raise ``ValueError`` if the tensor or array ``values`` (fitted state) is not finite."""
    if not all_finite(values):
        raise ValueError(
            f"The {what} of the training data are not finite: the net's loss or "
            "gradients overflow on X (inputs of extreme magnitude, or a half-precision "
            "net?). Rescale X or check the net."
        )
    return values


def check_property_gradient(gradient, prop):
    """Refuse a property gradient (block layout) that is not finite or is zero everywhere.

    A zero gradient means the property does not depend on the attributed
    parameters (a constant, or a net with a single output whose loss is 0):
    every score would be 0, which reads as "no group matters".
    """
    if not all(all_finite(block) for block in gradient):
        raise ValueError(
            f"The gradient of property={prop!r} on the evaluation data is not finite: "
            "the net's outputs or loss overflow on X (inputs of extreme magnitude?)."
        )
    if not any(bool(block.any()) for block in gradient):
        raise ValueError(
            f"property={prop!r} does not depend on the attributed parameters (its "
            "gradient is zero: a constant, or a net with a single output?), so every "
            "score would be 0."
        )
    return gradient


#: What a non-finite score means when an attributor returns it.
OVERFLOW = ("the net's gradients overflow on the training or evaluation data (inputs of "
            "extreme magnitude, or a half-precision net?).")
