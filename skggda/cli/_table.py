"""A user's table as model inputs: reading, checks, task inference, preprocessing.

Everything that can be wrong with the user's file is checked here and
reported as a :class:`UsageError` (one line, naming the column or the file),
before any training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from ..experiments._checks import ConfigError

#: A numeric target with at most this many distinct values, all integers, is a
#: class label (0/1, ratings 1-5, ...); any other numeric target is regressed.
MAX_INTEGER_CLASSES = 20
#: Categories kept per column; rarer ones share one "(other)" column so that
#: identifiers and free text do not explode the one-hot encoding.
MAX_CATEGORIES = 20
_PARQUET = (".parquet", ".pq")
_MISSING = "(missing)"
_PREFIXES = ("numeric__", "category__", "date__")
_DATE_SHAPE = r"\d[-:/T]\d"


class UsageError(ConfigError):
    """A problem with the user's input: reported in one line, exit status 2.

    A :class:`~skggda.experiments.ConfigError`, the command line's one
    usage-error type.
    """


@dataclass
class Columns:
    """The feature columns of a table, by kind."""

    numeric: list = field(default_factory=list)
    categorical: list = field(default_factory=list)
    datetime: list = field(default_factory=list)

    @property
    def features(self):
        return self.numeric + self.categorical + self.datetime


def read_table(path):
    """The file as a DataFrame, rows numbered by their position in the file (0 = first).

    ``.parquet`` / ``.pq`` files are read with :func:`pandas.read_parquet`,
    ``.tsv`` files as tab-separated, anything else as CSV.
    """
    import pandas as pd

    path = Path(path)
    try:
        if path.suffix.lower() in _PARQUET:
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    except (OSError, ValueError, ImportError) as error:
        # file system, parser, encoding and missing-engine errors: all the file's fault
        raise UsageError(f"cannot read {path}: {_reason(error)}") from error
    if frame.empty:
        raise UsageError(f"{path} has no data rows.")
    return frame.reset_index(drop=True)


def _reason(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def check_columns(frame, names, what, path):
    """Every name in ``names`` is a column of ``frame``, else a UsageError naming them."""
    missing = [name for name in names if name not in frame.columns]
    if missing:
        shown = ", ".join(map(str, list(frame.columns)[:12]))
        more = ", ..." if len(frame.columns) > 12 else ""
        raise UsageError(f"{path} has no column {', '.join(map(repr, missing))} ({what}); "
                         f"its columns are: {shown}{more}.")


def infer_task(target):
    """``"classification"`` or ``"regression"`` for a target column (missing values ignored).

    Classification when the column is not numeric (text, categories,
    booleans) or holds at most :data:`MAX_INTEGER_CLASSES` distinct values
    that are all integers; regression otherwise.
    """
    import pandas as pd

    values = target.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "classification"
    integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    few = values.nunique() <= MAX_INTEGER_CLASSES
    return "classification" if integral and few else "regression"


def target_values(target, task, name):
    """The target (no missing values) as class labels -- int64 or text -- or as float64."""
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    if task == "regression":
        if not numeric:
            raise UsageError(f"target {name!r} is not numeric: it cannot be regressed "
                             f"(use --task classification).")
        return target.astype(np.float64)
    if numeric and np.all(np.mod(target.to_numpy(dtype=float), 1) == 0):
        return target.astype(np.int64)
    return _as_text(target)


def check_classes(y, name):
    """A classification target needs two classes, each on two rows (for a stratified split)."""
    counts = y.value_counts()
    if len(counts) < 2:
        only = counts.index[0] if len(counts) else "none"
        raise UsageError(f"target {name!r} has a single class ({only!r}): nothing to "
                         f"classify.")
    rare = counts[counts < 2]
    if len(rare):
        raise UsageError(f"target {name!r} has a class on a single row ({rare.index[0]!r}): "
                         f"a stratified validation split needs two; drop that row or pass "
                         f"--valid FILE.")


def feature_columns(frame, exclude):
    """Sort the columns not in ``exclude`` into numeric, categorical and datetime ones.

    Text columns whose values all read as ISO 8601 dates or times
    (``2021-03-04``, ``2021-03-04 10:00:00``) count as datetime columns; so
    do datetime columns of a Parquet file. Booleans are categorical.
    Raises a UsageError for a column with no value at all.
    """
    import pandas as pd

    columns = Columns()
    for name in frame.columns:
        if name in exclude:
            continue
        column = frame[name]
        if column.isna().all():
            raise UsageError(f"column {name!r} is empty (every value is missing): drop it "
                             f"with --drop {name}.")
        if pd.api.types.is_datetime64_any_dtype(column) or _reads_as_dates(column):
            columns.datetime.append(name)
        elif pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            columns.numeric.append(name)
        else:
            columns.categorical.append(name)
    if not columns.features:
        raise UsageError("no feature column is left besides the target.")
    return columns


def _reads_as_dates(column):
    import pandas as pd

    if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
        return False
    values = column.dropna()
    if not values.map(lambda v: isinstance(v, str)).all():
        return False
    # a date separator between digits: bare numbers such as years would parse too;
    # the first rows reject most text columns before the full parse
    if not all(values[:100].str.contains(_DATE_SHAPE)) or \
            not all(values.str.contains(_DATE_SHAPE)):
        return False
    try:
        pd.to_datetime(values, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def model_inputs(frame, columns):
    """The feature columns in the types the preprocessor expects.

    Datetime columns become ``datetime64`` (timezones converted to UTC),
    categorical ones text with NaN for missing values (mixed types such as
    ``1`` and ``"a"`` cannot be sorted into categories otherwise).
    """
    import pandas as pd

    inputs = frame[columns.features].copy()
    for name in columns.datetime:
        values = pd.to_datetime(inputs[name], format="ISO8601", utc=True)
        inputs[name] = values.dt.tz_localize(None)
    for name in columns.categorical:
        inputs[name] = _as_text(inputs[name])
    return inputs


def _as_text(column):
    text = column.map(lambda v: v if isinstance(v, str) else str(v)).astype(object)
    return text.where(column.notna(), np.nan)


def make_preprocessor(columns):
    """A ColumnTransformer: impute, one-hot encode categories, expand dates, scale.

    Numeric columns: median imputation plus a missing-value indicator for
    columns with gaps, then standard scaling. Categorical columns: missing
    values become a ``"(missing)"`` category, then one-hot encoding of the
    :data:`MAX_CATEGORIES` most frequent categories (the rest share one
    column; categories unseen in training get none). Datetime columns:
    :class:`DatetimeParts`, then as numeric columns.
    """
    numeric = make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                            StandardScaler())
    categorical = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=_MISSING),
        OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_CATEGORIES,
                      sparse_output=False, feature_name_combiner=_category_name),
    )
    # DatetimeParts adds its own missing-value indicator: one per column, not one per part
    dates = make_pipeline(DatetimeParts(), SimpleImputer(strategy="median"), StandardScaler())
    return ColumnTransformer([
        ("numeric", numeric, columns.numeric),
        ("category", categorical, columns.categorical),
        ("date", dates, columns.datetime),
    ])


def _category_name(feature, category):
    return f"{feature}={'(other)' if category == 'infrequent_sklearn' else category}"


def readable_names(preprocessor):
    """Output column names of a fitted :func:`make_preprocessor`, as a user reads them.

    ``age``, ``age is missing``, ``color=red``, ``color=(other)``,
    ``signup (month)``.
    """
    names = []
    for name in preprocessor.get_feature_names_out():
        for prefix in _PREFIXES:
            name = name.removeprefix(prefix)
        if name.startswith("missingindicator_"):
            name = f"{name.removeprefix('missingindicator_')} is missing"
        names.append(name)
    return names


class DatetimeParts(TransformerMixin, BaseEstimator):
    """Datetime columns as numbers: days since 1970, month, day of the week (and hour).

    The day count carries trends, month and weekday carry seasons; the hour
    is added for columns whose training values are not all at midnight, and
    a 0/1 ``is missing`` column for those with gaps in training. Missing
    times give NaN parts, for the imputer that follows.

    Examples
    --------
    >>> import pandas as pd
    >>> from skggda.cli._table import DatetimeParts
    >>> X = pd.DataFrame({"d": pd.to_datetime(["1970-01-02", "1970-02-01"])})
    >>> DatetimeParts().fit_transform(X).tolist()
    [[1.0, 1.0, 4.0], [31.0, 2.0, 6.0]]
    """

    def fit(self, X, y=None):
        """Record the columns, which carry a time of day and which have gaps.

        Parameters
        ----------
        X : pandas.DataFrame of datetime64 columns
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.parts_ = [self._parts(X[name]) for name in X.columns]
        return self

    @staticmethod
    def _parts(values):
        present = values.dropna()
        parts = ["days", "month", "weekday"]
        if (present != present.dt.normalize()).any():
            parts.append("hour")
        if values.isna().any():
            parts.append("missing")
        return parts

    def transform(self, X):
        """The numeric parts, one block of columns per datetime column.

        Parameters
        ----------
        X : pandas.DataFrame of datetime64 columns

        Returns
        -------
        parts : ndarray of shape (n_samples, n_parts), float64
        """
        check_is_fitted(self)
        blocks = []
        for name, parts in zip(self.feature_names_in_, self.parts_):
            values = X[name]
            compute = {
                "days": lambda: (values - np.datetime64("1970-01-01")) / np.timedelta64(1, "D"),
                "month": lambda: values.dt.month, "weekday": lambda: values.dt.day_of_week,
                "hour": lambda: values.dt.hour, "missing": values.isna,
            }
            blocks += [np.asarray(compute[part](), dtype=np.float64) for part in parts]
        return np.column_stack(blocks) if blocks else np.empty((len(X), 0))

    def get_feature_names_out(self, input_features=None):
        """``"name (days)"``, ``"name (month)"``, ``"name (weekday)"`` [, hour, missing].

        Parameters
        ----------
        input_features : None
            Ignored: the names seen in ``fit`` are used.

        Returns
        -------
        names : ndarray of str
        """
        check_is_fitted(self)
        names = [f"{name} is missing" if part == "missing" else f"{name} ({part})"
                 for name, parts in zip(self.feature_names_in_, self.parts_) for part in parts]
        return np.asarray(names, dtype=object)
