"""Seeds: one bound, one way to draw them, one way to seed a clone.

Every estimator turns its ``random_state`` into integer seeds for the parts
it drives (the net, the grouper, projections, retrainings). Drawing them the
same way everywhere keeps fits repeatable and the seeds valid for every
consumer.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state

#: Exclusive upper bound of derived seeds. ``np.random.RandomState`` accepts
#: seeds below 2**32 and a C ``long`` is 32 bits on some platforms, so seeds
#: below 2**31 - 1 are valid for numpy, torch and scikit-learn everywhere.
SEED_MAX = np.iinfo(np.int32).max


def derive_seeds(random_state, size=None):
    """Integer seeds in ``[0, SEED_MAX)`` drawn from ``random_state``.

    Parameters
    ----------
    random_state : int, RandomState instance or None
        The source; a ``RandomState`` instance is advanced, so successive
        calls on one instance draw successive seeds.
    size : int, default=None
        Number of seeds; ``None`` draws one seed and returns it as an ``int``.

    Returns
    -------
    seeds : int or ndarray of shape (size,)
        One seed, or ``size`` seeds (int64).

    Examples
    --------
    >>> from skggda.utils._seeding import derive_seeds
    >>> derive_seeds(0, 3).shape
    (3,)
    >>> isinstance(derive_seeds(0), int)
    True
    """
    rng = check_random_state(random_state)
    if size is None:
        return int(rng.randint(SEED_MAX))
    return rng.randint(SEED_MAX, size=size)


def seeded_clone(estimator, seed, /, *, override=False, **unset):
    """An unfitted clone of ``estimator`` whose ``random_state`` is ``seed``.

    Parameters
    ----------
    estimator : estimator
        What to clone (a skorch net, a grouper, ...). Estimators without a
        ``random_state`` parameter are cloned unseeded.
    seed : int
        The seed, e.g. from :func:`derive_seeds`.
    override : bool, default=False
        Also replace a ``random_state`` the estimator already has. Leave it
        ``False`` where the user's own seed must win (the attributor's net and
        grouper); set it where the seed itself is what varies (retrainings
        averaged over seeds).
    **unset
        Values for other parameters of the clone, each set only where the
        estimator has that parameter and it is ``None`` (``estimator=`` too:
        the first two arguments are positional-only).

    Returns
    -------
    clone : estimator
        The seeded, unfitted clone.

    Examples
    --------
    >>> from skggda import RandomGrouper
    >>> from skggda.utils._seeding import seeded_clone
    >>> seeded_clone(RandomGrouper(), 7).random_state
    7
    >>> seeded_clone(RandomGrouper(random_state=1), 7).random_state
    1
    """
    twin = clone(estimator)
    params = twin.get_params(deep=False)
    if "random_state" in params and (override or params["random_state"] is None):
        twin.set_params(random_state=int(seed))
    fill = {name: value for name, value in unset.items()
            if name in params and params[name] is None}
    if fill:
        twin.set_params(**fill)
    return twin
