"""FICO HELOC (2018 explainability challenge), preprocessed as in the GGDA paper."""

from __future__ import annotations

import csv

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch

from ._home import _data_file

HELOC_FILE = "heloc/heloc_dataset_v1.csv"
HELOC_TARGET = "RiskPerformance"
#: Label of each class: ``target_names[y]``. "Bad" (the applicant went 90+ days
#: past due) is the positive class, as usual for credit risk.
HELOC_TARGET_NAMES = ["Good", "Bad"]
HELOC_FEATURE_NAMES = [
    "ExternalRiskEstimate", "MSinceOldestTradeOpen", "MSinceMostRecentTradeOpen",
    "AverageMInFile", "NumSatisfactoryTrades", "NumTrades60Ever2DerogPubRec",
    "NumTrades90Ever2DerogPubRec", "PercentTradesNeverDelq", "MSinceMostRecentDelq",
    "MaxDelq2PublicRecLast12M", "MaxDelqEver", "NumTotalTrades",
    "NumTradesOpeninLast12M", "PercentInstallTrades", "MSinceMostRecentInqexcl7days",
    "NumInqLast6M", "NumInqLast6Mexcl7days", "NetFractionRevolvingBurden",
    "NetFractionInstallBurden", "NumRevolvingTradesWBalance", "NumInstallTradesWBalance",
    "NumBank2NatlTradesWHighUtilization", "PercentTradesWBalance",
]

HELOC_DESCR = """\
FICO HELOC (Home Equity Line of Credit), 2018 FICO explainability challenge
--------------------------------------------------------------------------
Source: heloc/heloc_dataset_v1.csv under the data folder (10,459 rows, target
RiskPerformance plus 23 integer credit-bureau features). FICO distributed it
for the challenge without a stated data licence: use it for research and
tests; skggda does not redistribute it.

Preprocessing (as in the GGDA paper): the 588 rows whose 23 features are all
-9 (no bureau record) are dropped, leaving 9,871 x 23; a stratified, seeded
80/20 split gives 7,896 train / 1,975 test rows; with standardize=True every
feature is standardised with the mean and standard deviation of the training
part only. The special codes -7 (condition not met), -8 (no usable trades)
and -9 (no record) are kept as values, as in the paper.

Target: y = 1 for "Bad" (90+ days past due), y = 0 for "Good";
target_names[y] gives the label.
"""


def load_heloc(*, data_home=None, test_size=0.2, random_state=0, standardize=True,
               return_frame=False):
    """Load the FICO HELOC credit data with the GGDA paper's preprocessing.

    Reads ``heloc/heloc_dataset_v1.csv`` under the data folder, drops the
    rows whose 23 features are all ``-9`` (9,871 rows remain), splits them
    80/20 (stratified, seeded: 7,896 train / 1,975 test) and standardises
    the features with statistics of the training part only. The special
    codes ``-7``, ``-8`` and ``-9`` are kept as values, as in the paper.

    Parameters
    ----------
    data_home : str, path-like or None, default=None
        Data folder; see :func:`get_data_home` for the resolution order.
    test_size : float, default=0.2
        Fraction of the rows kept (those with a bureau record) held out for
        testing.
    random_state : int, RandomState instance or None, default=0
        Controls the stratified split.
    standardize : bool, default=True
        Centre and scale every feature with the training mean and standard
        deviation. With ``False`` the raw integer values are returned.
    return_frame : bool, default=False
        Also return the two parts as pandas DataFrames (needs pandas).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``X_train`` (float32, shape (n_train, 23)), ``X_test``,
        ``y_train`` and ``y_test`` (int64, 1 = "Bad", 0 = "Good"),
        ``feature_names``, ``target_names`` (``["Good", "Bad"]``, so that
        ``target_names[y]`` is the label) and ``DESCR``. With
        ``return_frame=True`` also ``frame_train`` and ``frame_test``: the
        features as returned plus the ``RiskPerformance`` column (0/1),
        indexed by the row's position in the CSV file (0 = first data row).

    Raises
    ------
    FileNotFoundError
        If the CSV file is not in the data folder; the message gives the
        expected path.
    ValueError
        If the file does not have HELOC's columns or labels.

    See Also
    --------
    load_tabular_fallback : ``"heloc_like"``, a synthetic stand-in with the same layout.

    Examples
    --------
    With FICO's ``heloc_dataset_v1.csv`` in the data folder, rows without a
    bureau record dropped:

    >>> from skggda.datasets import load_heloc
    >>> data = load_heloc()  # doctest: +SKIP
    >>> data.X_train.shape, data.target_names  # doctest: +SKIP
    ((7896, 23), ['Good', 'Bad'])
    """
    path = _data_file(data_home, HELOC_FILE, "HELOC", "the FICO HELOC file")
    X, y = _read_heloc_csv(path)
    rows = np.flatnonzero(~np.all(X == -9, axis=1))  # all -9: no bureau record at all
    data = _split_standardize(X[rows], y[rows], test_size=test_size,
                              random_state=random_state, standardize=standardize,
                              index=rows)
    train_rows, test_rows = data.pop("index_train"), data.pop("index_test")
    data.update(feature_names=list(HELOC_FEATURE_NAMES),
                target_names=list(HELOC_TARGET_NAMES), DESCR=HELOC_DESCR)
    if return_frame:
        data.frame_train = _frame(data.X_train, data.y_train, train_rows)
        data.frame_test = _frame(data.X_test, data.y_test, test_rows)
    return data


def _read_heloc_csv(path):
    """Raw features (float64) and 0/1 target of the HELOC CSV, every row."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or HELOC_TARGET not in header:
            raise ValueError(f"{path} is not the HELOC file: it has no {HELOC_TARGET} column "
                             f"(header {header!r}).")
        target_col = header.index(HELOC_TARGET)
        feature_cols = [i for i in range(len(header)) if i != target_col]
        missing = sorted(set(HELOC_FEATURE_NAMES) - {header[i] for i in feature_cols})
        if missing or len(feature_cols) != len(HELOC_FEATURE_NAMES):
            raise ValueError(f"{path} is not the HELOC file: expected the 23 HELOC features, "
                             f"missing {missing}, header {header!r}.")
        # reorder to HELOC_FEATURE_NAMES whatever the column order in the file
        feature_cols = [header.index(name) for name in HELOC_FEATURE_NAMES]
        codes = {name: k for k, name in enumerate(HELOC_TARGET_NAMES)}
        X, y = [], []
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ValueError(f"{path}, line {line}: expected {len(header)} fields, "
                                 f"got {len(row)}.")
            if row[target_col] not in codes:
                raise ValueError(f"{path}, line {line}: {HELOC_TARGET} must be one of "
                                 f"{HELOC_TARGET_NAMES}, got {row[target_col]!r}.")
            try:
                X.append([float(row[i]) for i in feature_cols])
            except ValueError as exc:
                raise ValueError(f"{path}, line {line}: non-numeric feature ({exc}).") from None
            y.append(codes[row[target_col]])
    return np.asarray(X, dtype=np.float64).reshape(-1, len(feature_cols)), np.asarray(y, np.int64)


def _split_standardize(X, y, *, test_size, random_state, standardize=True, index=None):
    """Stratified split, then scaling fitted on the training part only.

    Returns a Bunch with ``X_train, X_test`` (float32), ``y_train, y_test``
    (int64) and ``index_train, index_test`` (the rows' ``index``, by default
    their positions in ``X``). Shared by the HELOC loader and the fallbacks.
    """
    index = np.arange(len(y)) if index is None else np.asarray(index)
    X_train, X_test, y_train, y_test, i_train, i_test = train_test_split(
        X, y, index, test_size=test_size, random_state=random_state, stratify=y)
    if standardize:
        # statistics of the training part only: the test part stays unseen
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    return Bunch(X_train=np.asarray(X_train, np.float32), X_test=np.asarray(X_test, np.float32),
                 y_train=np.asarray(y_train, np.int64), y_test=np.asarray(y_test, np.int64),
                 index_train=i_train, index_test=i_test)


def _frame(X, y, index):
    import pandas as pd  # optional dependency: only return_frame=True needs it

    frame = pd.DataFrame(X, columns=HELOC_FEATURE_NAMES, index=pd.Index(index, name="row"))
    frame[HELOC_TARGET] = y
    return frame
