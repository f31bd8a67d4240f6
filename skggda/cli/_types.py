"""Argument types shared by the command-line apps: each parses one option's text."""

from __future__ import annotations

import argparse


def positive_ints(text):
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def components(text):
    """A number of projection components, or ``none`` for exact gradients."""
    return None if text.lower() == "none" else positive_ints(text)


def fraction(text):
    """A fraction that may be zero: in [0, 1) (a noise rate)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def positive_fraction(text):
    """A fraction strictly between 0 and 1 (a held-out share)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value
