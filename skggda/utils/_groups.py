"""Validation and canonicalisation of group labels."""

from __future__ import annotations

import numpy as np


def label_dtype(n_values: int) -> np.dtype:
    """The smallest signed integer dtype that holds ``0..n_values-1``.

    Group labels are the one array of size ``n_samples`` a fitted estimator
    keeps; at 10^7 samples and 10^4 groups int16 holds them in 20 MB.
    """
    for dtype in (np.int8, np.int16, np.int32):
        if n_values - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def compact_labels(labels, n_values: int) -> np.ndarray:
    """``labels`` (integers in ``0..n_values-1``) in the smallest dtype that holds them."""
    return np.asarray(labels).astype(label_dtype(n_values), copy=False)


def canonicalize_groups(groups, n_samples: int):
    """Map arbitrary hashable group labels to ``0..k-1``.

    Parameters
    ----------
    groups : array-like of shape (n_samples,)
        Any hashable labels (ints, strings, tuples, ...).
    n_samples : int
        Number of training samples the labels must cover.

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        Canonical group index of every sample, in the smallest integer
        dtype that holds the number of groups.
    originals : ndarray of shape (n_groups,)
        The original label of each canonical group (sorted when the labels
        are sortable, else in order of first appearance).
    """
    if hasattr(groups, "to_numpy"):
        groups = groups.to_numpy()
    array = groups if isinstance(groups, np.ndarray) else _label_array(list(groups))
    if array.ndim != 1:
        raise ValueError(
            f"groups must be a 1-D array of group labels, got an array of shape {array.shape}."
        )
    if array.shape[0] != n_samples:
        raise ValueError(
            f"groups has {array.shape[0]} elements but X has {n_samples} samples; "
            "give one group label per training sample."
        )
    if array.dtype.kind == "f" and np.isnan(array).any() or array.dtype.kind == "O" and any(
            isinstance(label, (float, np.floating)) and np.isnan(label) for label in array):
        raise ValueError("groups contains NaN; every sample needs a group label.")
    if array.dtype.kind not in "biuf":
        if any(label is None for label in array):
            raise ValueError("groups contains None; every sample needs a group label.")
    try:
        originals, labels = np.unique(array, return_inverse=True)
    except TypeError:  # unorderable labels: keep order of first appearance
        labels, originals = _first_appearance(array)
    return compact_labels(labels, len(originals)), originals


def _label_array(groups: list) -> np.ndarray:
    """``groups`` as an array in which every label keeps its own value.

    ``np.asarray`` would read tuples as rows and turn ``[1, "1", "a"]`` into
    the strings ``["1", "1", "a"]``, merging two labels: tuples and labels
    of mixed types go into an object array instead.
    """
    if not any(isinstance(g, tuple) for g in groups):
        array = np.asarray(groups)
        if array.dtype.kind not in "US" or all(isinstance(g, (str, bytes)) for g in groups):
            return array
    array = np.empty(len(groups), dtype=object)
    array[:] = groups
    return array


def _first_appearance(array):
    """``(labels, originals)`` of unorderable labels, numbered in order of first appearance."""
    index: dict = {}
    try:
        labels = np.fromiter((index.setdefault(g, len(index)) for g in array), np.int64,
                             len(array))
    except TypeError as exc:  # unhashable labels (lists, arrays)
        raise TypeError(f"Group labels must be hashable: {exc}.") from None
    originals = np.empty(len(index), dtype=object)
    originals[:] = list(index)
    return labels, originals


def check_partition(labels, n_samples: int, n_groups: int | None = None) -> np.ndarray:
    """Check that ``labels`` assigns every sample to one of ``0..k-1`` with no empty group."""
    labels = np.asarray(labels)
    if labels.shape != (n_samples,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Group labels must be integers of shape ({n_samples},), got "
            f"{labels.dtype} of shape {labels.shape}."
        )
    k = int(labels.max()) + 1 if n_groups is None else n_groups
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"Group labels must lie in [0, {k}).")
    sizes = np.bincount(labels, minlength=k)
    if (sizes == 0).any():
        raise ValueError(f"Groups {np.flatnonzero(sizes == 0)[:5].tolist()} are empty.")
    return compact_labels(labels, k)
