"""Describe the groups of a fitted attributor: score, size, labels, distinguishing features."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from scipy import sparse
from sklearn.utils.validation import check_is_fitted

from ..utils._targets import encode_targets, predicted_targets

# Groups whose feature means are computed at once: bounds the (groups, features)
# block in memory when there is one group per training row.
_GROUP_BLOCK = 4096


def group_report(attributor, X, y=None, feature_names=None, *, X_eval=None, y_eval=None,
                 n_features=3):
    """One row per group of a fitted attributor: score, size, labels and what sets it apart.

    Parameters
    ----------
    attributor : fitted attributor
        E.g. a fitted :class:`~skggda.TracInAttributor`: its ``labels_``
        give the group of every training row.
    X : array-like of shape (n_samples, n_features)
        The training rows the attributor was fitted on, in the same order
        (N-D inputs are flattened). Only their features are described: the
        columns that most distinguish a group from the rest are listed.
    y : array-like of shape (n_samples,), default=None
        The training targets. With them each row gets a label summary (the
        group's most common label, its share and how often the model predicts
        the group's labels) or, for a regressor, the mean and standard
        deviation of the group's targets.
    feature_names : list of str, default=None
        Names of the columns of ``X``; by default the attributor's
        ``feature_names_in_`` when it has them, else ``x0, x1, ...``.
    X_eval : array-like of shape (n_eval, n_features), default=None
        Evaluation data of the property (e.g. a validation set), passed to
        :meth:`~skggda.TracInAttributor.score_groups`. ``None`` (with
        ``y_eval=None``) evaluates the property on the training data.
    y_eval : array-like of shape (n_eval,), default=None
        Targets of ``X_eval``.
    n_features : int, default=3
        How many distinguishing features each group lists.

    Returns
    -------
    report : pandas.DataFrame of shape (n_groups, n_columns)
        Indexed by group index (``0 .. n_groups_ - 1``, the order of
        ``score_groups``), with columns

        - ``group``: the group's label (``groups_``; the values passed as
          ``groups`` to ``fit``, or the grouper's cluster index);
        - ``size``: number of training rows;
        - ``score``: ``attributor.score_groups(X_eval, y_eval)``; higher
          means the group helps the property, lower that it hurts;
        - with ``y`` for a classifier: ``label`` (most common label),
          ``label_share`` (its share of the group) and ``accuracy`` (share
          of the group's rows whose label the model predicts); for a
          regressor: ``target_mean`` and ``target_std``;
        - ``distinguishing_features``: up to ``n_features`` entries
          ``"name +1.8 sd"``, largest first: the standardized mean
          difference of the feature between the group and all other rows
          (in standard deviations of the feature over all rows; positive:
          higher in the group; for a one-hot column, more common in it).

    Raises
    ------
    ImportError
        If pandas is not installed.
    ValueError
        If ``X`` or ``y`` does not have one row per training sample of
        the fit, or ``feature_names`` does not name every column.

    See Also
    --------
    skggda.TracInAttributor.score_groups : The scores in the report.

    Examples
    --------
    One row per group, its training labels and the features that set it apart:

    >>> from sklearn.datasets import make_classification
    >>> from skggda import RandomGrouper, TracInAttributor
    >>> from skggda.inspection import group_report
    >>> from skggda.models import make_classifier
    >>> X, y = make_classification(120, 3, n_informative=2, n_redundant=0, random_state=0)
    >>> net = make_classifier((8,), max_epochs=3, random_state=0)
    >>> attr = TracInAttributor(net, grouper=RandomGrouper(group_size=30),
    ...                         random_state=0).fit(X, y)
    >>> report = group_report(attr, X, y, feature_names=["a", "b", "c"])
    >>> list(report.columns)
    ['group', 'size', 'score', 'label', 'label_share', 'accuracy', 'distinguishing_features']
    >>> report["size"].tolist()
    [30, 30, 30, 30]
    """
    pd = _import_pandas()
    check_is_fitted(attributor)
    labels, n_groups = np.asarray(attributor.labels_), attributor.n_groups_
    X = _check_rows(X, len(labels), "X")
    features = X.reshape(len(X), -1)
    names = _feature_names(attributor, feature_names, features.shape[1])
    if not (isinstance(n_features, Integral) and n_features >= 0):
        raise ValueError(f"n_features must be a non-negative integer, got {n_features!r}.")
    sizes = np.bincount(labels, minlength=n_groups)
    report = pd.DataFrame({
        "group": attributor.groups_,
        "size": sizes,
        "score": attributor.score_groups(X_eval, y_eval),
    })
    if y is not None:
        y = _check_rows(y, len(labels), "y")
        summary = (_label_summary(attributor, X, y, labels, sizes)
                   if hasattr(attributor, "classes_") else _target_summary(y, labels, sizes))
        for column, values in summary.items():
            report[column] = values
    report["distinguishing_features"] = distinguishing_features(
        features, labels, n_groups, names, n_features)
    return report


def distinguishing_features(X, labels, n_groups, feature_names, n_features=3):
    """Per group, the features whose mean differs most from the other rows', as text.

    The difference is standardized by the feature's standard deviation over
    all rows: ``(mean in group - mean elsewhere) / sd``. Features that are
    constant, and groups holding every row, have none.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,)
        Group of every row, in ``0 .. n_groups - 1``.
    n_groups : int
    feature_names : list of str of length n_features
    n_features : int, default=3
        Entries per group.

    Returns
    -------
    descriptions : list of str of length n_groups
        ``"name +1.8 sd; other -0.9 sd"``, largest absolute difference first.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.inspection._report import distinguishing_features
    >>> X = np.array([[0.0, 1.0], [0.0, 0.0], [2.0, 1.0], [2.0, 0.0]])
    >>> distinguishing_features(X, np.array([0, 0, 1, 1]), 2, ["a", "b"], 1)
    ['a -2.0 sd', 'a +2.0 sd']
    """
    differences = standardized_mean_differences(X, labels, n_groups)
    return [_describe(row, feature_names, n_features) for row in differences]


def standardized_mean_differences(X, labels, n_groups):
    """``(n_groups, n_features)``: ``(mean in group - mean elsewhere) / sd over all rows``.

    NaN where the difference is undefined: a constant feature, or a group
    holding every row.
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    total, sd = X.sum(0), X.std(0)
    sd = np.where(sd > 0, sd, np.nan)
    # one sparse (groups x rows) indicator: group sums in one product per block
    indicator = sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(n_groups, n))
    counts = np.asarray(indicator.sum(1)).ravel()
    out = np.empty((n_groups, X.shape[1]))
    for start in range(0, n_groups, _GROUP_BLOCK):
        block = slice(start, start + _GROUP_BLOCK)
        sums, size = indicator[block] @ X, counts[block, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[block] = (sums / size - (total - sums) / (n - size)) / sd
    return out


def _describe(differences, names, n_features):
    finite = np.flatnonzero(np.isfinite(differences) & (differences != 0))
    top = finite[np.argsort(-np.abs(differences[finite]), kind="stable")[:n_features]]
    return "; ".join(f"{names[j]} {differences[j]:+.1f} sd" for j in top)


def _label_summary(attributor, X, y, labels, sizes):
    """Most common label, its share, and the model's accuracy on the group's rows."""
    values, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(labels * len(values) + codes, minlength=len(sizes) * len(values))
    counts = counts.reshape(len(sizes), len(values))
    classes = attributor.classes_
    predicted = predicted_targets(attributor.estimator_, np.asarray(X, dtype=np.float32), classes)
    correct = np.bincount(labels, weights=predicted == encode_targets(y, classes),
                          minlength=len(sizes))
    return {"label": values[counts.argmax(1)], "label_share": counts.max(1) / sizes,
            "accuracy": correct / sizes}


def _target_summary(y, labels, sizes):
    """Mean and standard deviation of a regression target per group."""
    y = np.asarray(y, dtype=np.float64)
    mean = np.bincount(labels, weights=y, minlength=len(sizes)) / sizes
    # centred before squaring: E[y^2] - E[y]^2 cancels digits for large targets
    variance = np.bincount(labels, weights=(y - mean[labels]) ** 2, minlength=len(sizes)) / sizes
    return {"target_mean": mean, "target_std": np.sqrt(variance)}


def _check_rows(values, n_samples, name):
    values = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    if values.ndim == 0 or len(values) != n_samples:
        raise ValueError(
            f"{name} must have one row per training sample of the fit ({n_samples}), got "
            f"{'a scalar' if values.ndim == 0 else len(values)}."
        )
    return values


def _feature_names(attributor, feature_names, n_columns):
    if feature_names is None:
        feature_names = getattr(attributor, "feature_names_in_", None)
    if feature_names is None:
        return [f"x{j}" for j in range(n_columns)]
    names = [str(name) for name in feature_names]
    if len(names) != n_columns:
        raise ValueError(
            f"feature_names has {len(names)} names but X has {n_columns} columns."
        )
    return names


def _import_pandas():
    try:
        import pandas
    except ImportError as error:  # an optional dependency: only reports need it
        raise ImportError(
            "group_report needs pandas: pip install pandas (or skggda[explain])."
        ) from error
    return pandas
