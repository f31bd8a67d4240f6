"""Seconds per stage, recorded without touching the estimators.

``fit`` stores its stage times in the fitted attribute ``timings_``. Scoring
methods (``score_groups``, ``attribute``, ``self_influence``) must not change
a fitted estimator (scikit-learn's ``check_dict_unchanged``; two threads
scoring at once would race), so their times go to whoever asked for them
with :func:`record_timings`. Both use one per-call stage clock held in a
context variable: concurrent calls, in threads or asyncio tasks, each see
their own.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from time import perf_counter

_RECORDERS = contextvars.ContextVar("skggda_timing_recorders", default=())
_CLOCK = contextvars.ContextVar("skggda_stage_clock", default=None)


@contextmanager
def record_timings():
    """Collect the seconds per stage of the skggda calls made inside the block.

    Keys are the stage names of the attributors' ``timings_``: ``"scoring"``,
    ``"attribution"`` and ``"self_influence"`` for the scoring methods, with
    dotted sub-stages (e.g. ``"scoring.solve"``), and ``"training"``,
    ``"grouping"``, ``"gradients"`` for ``fit``. A stage run several times
    inside the block accumulates. Blocks may nest; each gets every stage.

    Yields
    ------
    timings : dict of str to float
        Filled in as the calls finish.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda import TracInAttributor
    >>> from skggda.models import make_classifier
    >>> from skggda.utils import record_timings
    >>> X = np.random.RandomState(0).normal(size=(60, 3)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> attr = TracInAttributor(make_classifier((4,), max_epochs=1), random_state=0).fit(X, y)
    >>> with record_timings() as timings:
    ...     _ = attr.score_groups(X, y)
    >>> sorted(timings)
    ['scoring']
    """
    sink: dict = {}
    token = _RECORDERS.set(_RECORDERS.get() + (sink,))
    try:
        yield sink
    finally:
        _RECORDERS.reset(token)


def publish(times: dict) -> None:
    """Add ``times`` to every active :func:`record_timings` block."""
    for sink in _RECORDERS.get():
        for name, seconds in times.items():
            sink[name] = sink.get(name, 0.0) + seconds


@contextmanager
def stage_clock(stage: str):
    """Time one call as ``stage``; sub-stages timed by :func:`substage` inside it.

    Yields the dict that receives ``stage`` and its ``stage.sub`` entries when
    the call ends; the caller decides whether to keep it (``fit``) and it is
    published to the active recorders in any case.
    """
    clock: dict = {}
    token = _CLOCK.set(clock)
    times: dict = {}
    start = perf_counter()
    try:
        yield times
    finally:
        _CLOCK.reset(token)
        times[stage] = perf_counter() - start
        times.update({f"{stage}.{name}": seconds for name, seconds in clock.items()})
        publish(times)


@contextmanager
def substage(name: str):
    """Time a sub-stage of the current :func:`stage_clock` call (no-op outside one)."""
    clock = _CLOCK.get()
    start = perf_counter()
    try:
        yield
    finally:
        if clock is not None:
            clock[name] = clock.get(name, 0.0) + perf_counter() - start
