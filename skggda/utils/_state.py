"""Fitting without side effects on failure."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def restored_on_error(estimator):
    """Put back every attribute of ``estimator`` if the block raises.

    A failed ``fit`` (bad input, a grouping that cannot be formed, an
    interrupted training) must leave a fitted estimator as it was, not half
    overwritten: new ``n_features_in_`` beside old ``labels_``.
    """
    snapshot = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(snapshot)
        raise
