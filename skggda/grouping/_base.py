"""Base class of the groupers: partitions of the training set."""

from __future__ import annotations

import math
from numbers import Integral
from time import perf_counter

from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval

from .._engine import n_samples
from ..utils._groups import check_partition
from ..utils._inputs import check_fit_data, check_test_data
from ..utils._state import restored_on_error


class BaseGrouper(BaseEstimator):
    """Partition samples into groups of about ``group_size`` (or exactly ``n_groups`` groups).

    Subclasses implement ``_group(X, y, n_groups) -> labels``; this class
    validates input (in memory or streamed, see :mod:`skggda.utils._inputs`),
    resolves the number of groups, checks that the result is a partition
    with no empty group, and sets ``labels_`` and ``n_groups_``. Groupers
    that read labels set ``_needs_y``; those that train or read a net
    (meta-estimators) override :meth:`fit` to validate nested parameters.
    """

    _parameter_constraints: dict = {
        "group_size": [Interval(Integral, 1, None, closed="left")],
        "n_groups": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    }
    _needs_y = False

    def _n_groups_for(self, n_samples: int) -> int:
        """``n_groups`` when set, else ``ceil(n_samples / group_size)``."""
        if self.n_groups is not None:
            if self.n_groups > n_samples:
                raise ValueError(
                    f"n_samples={n_samples} should be >= n_groups={self.n_groups}."
                )
            return self.n_groups
        return math.ceil(n_samples / self.group_size)

    def _check_fit_data(self, X, y):
        """``(X, y)`` for ``fit``: the one fit-time validation path of the groupers."""
        if not self._needs_y:
            X, _ = check_fit_data(self, X, None, y_required=False)
            return X, y
        return check_fit_data(self, X, y)

    def _check_test_data(self, X, y=None):
        """``(X, y)`` for ``predict`` / ``transform``: the one test-time validation path."""
        return check_test_data(self, X, y if self._needs_y else None)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Group the samples of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training samples (2-D features or N-D arrays such as images), in
            memory or streamed (a memmap, h5py/zarr/Dask array, or a torch
            Dataset of ``(x, y)`` items).
        y : array-like of shape (n_samples,), default=None
            Labels; used by groupers that need them.

        Returns
        -------
        self : object
            Fitted grouper.
        """
        return self._fit(X, y)

    def _fit(self, X, y):
        start = perf_counter()
        with restored_on_error(self):
            X, y = self._check_fit_data(X, y)
            n = n_samples(X)
            n_groups = self._n_groups_for(n)
            labels = self._group(X, y, n_groups)
            self.labels_ = check_partition(labels, n, n_groups)
            self.n_groups_ = n_groups
        self.fit_time_ = perf_counter() - start
        return self

    def fit_predict(self, X, y=None):
        """Fit and return the group label of every sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training samples.
        y : array-like of shape (n_samples,), default=None
            Labels; used by groupers that need them.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Group of every sample, in ``0..n_groups_-1``.
        """
        return self.fit(X, y).labels_

    def _group(self, X, y, n_groups):  # pragma: no cover - abstract
        raise NotImplementedError
