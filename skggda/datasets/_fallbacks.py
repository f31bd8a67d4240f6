"""Offline stand-ins for the real data sets: no file, always available."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.utils import Bunch, check_random_state

from ._heloc import HELOC_FEATURE_NAMES, HELOC_TARGET_NAMES, _split_standardize

# Per HELOC feature: mean, standard deviation, range of the plausible values
# and the correlation with the latent risk (> 0: more risk). Rough figures
# from the public file, enough to look like it; not fitted.
_HELOC_LIKE = {
    "ExternalRiskEstimate": (72, 10, 33, 94, -0.8),
    "MSinceOldestTradeOpen": (200, 98, 0, 803, -0.4),
    "MSinceMostRecentTradeOpen": (9, 12, 0, 383, 0.1),
    "AverageMInFile": (78, 34, 4, 383, -0.4),
    "NumSatisfactoryTrades": (21, 11, 0, 79, -0.2),
    "NumTrades60Ever2DerogPubRec": (0.6, 1.2, 0, 19, 0.3),
    "NumTrades90Ever2DerogPubRec": (0.4, 1.0, 0, 19, 0.3),
    "PercentTradesNeverDelq": (92, 11, 0, 100, -0.4),
    "MSinceMostRecentDelq": (21, 20, 0, 83, -0.2),
    "MaxDelq2PublicRecLast12M": (5.8, 1.6, 0, 9, -0.3),
    "MaxDelqEver": (6.4, 1.8, 2, 8, -0.3),
    "NumTotalTrades": (23, 13, 0, 104, -0.1),
    "NumTradesOpeninLast12M": (1.9, 1.9, 0, 19, 0.2),
    "PercentInstallTrades": (34, 18, 0, 100, 0.2),
    "MSinceMostRecentInqexcl7days": (2.5, 4.8, 0, 24, -0.2),
    "NumInqLast6M": (1.5, 2.2, 0, 66, 0.3),
    "NumInqLast6Mexcl7days": (1.4, 2.2, 0, 66, 0.3),
    "NetFractionRevolvingBurden": (35, 29, 0, 232, 0.5),
    "NetFractionInstallBurden": (68, 23, 0, 471, 0.1),
    "NumRevolvingTradesWBalance": (4, 3, 0, 32, 0.2),
    "NumInstallTradesWBalance": (2.5, 1.7, 1, 23, 0.1),
    "NumBank2NatlTradesWHighUtilization": (1.1, 1.6, 0, 18, 0.4),
    "PercentTradesWBalance": (67, 22, 0, 100, 0.4),
}
# Special codes and how often they replace a value: -7 condition not met
# (e.g. never delinquent), -8 no usable trades, -9 no record (rare once the
# all -9 rows are gone).
_HELOC_CODES = {
    "MSinceMostRecentDelq": {-7: 0.45, -8: 0.02},
    "MSinceMostRecentInqexcl7days": {-7: 0.18, -8: 0.05},
    "NetFractionInstallBurden": {-8: 0.33},
    "NumInstallTradesWBalance": {-8: 0.09},
    "NumBank2NatlTradesWHighUtilization": {-8: 0.06},
    "MSinceOldestTradeOpen": {-8: 0.02},
    "ExternalRiskEstimate": {-9: 0.001},
}
# logit of P(Bad) = _RISK_SCALE * risk + _RISK_SHIFT: the scale sets how
# well a linear model can do (measured: 71-74% test accuracy over seeds 0-4,
# like logistic regression on the real file), the shift the share of "Bad"
# (about 52%, like the real data).
_RISK_SCALE, _RISK_SHIFT = 2.0, 0.1

_HELOC_LIKE_DESCR = """\
Synthetic HELOC-like credit data (skggda.datasets.load_tabular_fallback("heloc_like"))
-----------------------------------------------------------------
An offline stand-in for the FICO HELOC file: 23 integer-valued features with
HELOC's names and rough ranges, all driven by one latent risk, with the
special codes -7 / -8 / -9 sprinkled in. The target is drawn from a noisy
logistic rule on the latent risk, so a linear model reaches about 70-75%
test accuracy. y = 1 for "Bad", 0 for "Good". Stratified, seeded split;
features standardised with statistics of the training part only.
Not real data: use it for tests and examples, not for conclusions.
"""

_TABULAR = {"breast_cancer": load_breast_cancer, "digits": load_digits}


def make_heloc_like(n_samples=9871, *, random_state=0, test_size=0.2):
    """Synthetic data with the layout of :func:`load_heloc`, no file needed.

    Every feature is a noisy, rounded, clipped view of one latent risk;
    some values are replaced by HELOC's special codes ``-7``, ``-8`` and
    ``-9`` before standardisation. The target is drawn from a logistic rule
    on the latent risk, so a linear model gets about 70-75% accuracy, and
    about 52% of the samples are "Bad", as in the real file.

    Parameters
    ----------
    n_samples : int, default=9871
        Number of samples before the split (the default matches the real
        file after preprocessing: 7,896 train / 1,975 test).
    random_state : int, RandomState instance or None, default=0
        Controls the samples and the split.
    test_size : float, default=0.2
        Fraction of the samples held out for testing.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Same keys as :func:`load_heloc`: ``X_train``, ``X_test`` (float32,
        standardised), ``y_train``, ``y_test`` (int64, 1 = "Bad"),
        ``feature_names``, ``target_names`` and ``DESCR``.

    See Also
    --------
    load_heloc : The real data.

    Examples
    --------
    >>> from skggda.datasets._fallbacks import make_heloc_like
    >>> data = make_heloc_like(random_state=0)
    >>> data.X_train.shape, data.X_test.shape
    ((7896, 23), (1975, 23))
    >>> data.target_names
    ['Good', 'Bad']
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
            or n_samples < 10:
        raise ValueError(f"n_samples must be an int >= 10, got {n_samples!r}.")
    rng = check_random_state(random_state)
    risk = rng.standard_normal(n_samples)
    X = np.empty((n_samples, len(HELOC_FEATURE_NAMES)))
    for j, name in enumerate(HELOC_FEATURE_NAMES):
        mean, sd, lo, hi, rho = _HELOC_LIKE[name]
        z = rho * risk + np.sqrt(1 - rho**2) * rng.standard_normal(n_samples)
        X[:, j] = np.clip(np.rint(mean + sd * z), lo, hi)
        for code, rate in _HELOC_CODES.get(name, {}).items():
            X[rng.random_sample(n_samples) < rate, j] = code
    p_bad = 1 / (1 + np.exp(-(_RISK_SCALE * risk + _RISK_SHIFT)))
    y = (rng.random_sample(n_samples) < p_bad).astype(np.int64)
    data = _split_standardize(X, y, test_size=test_size, random_state=rng)
    del data["index_train"], data["index_test"]
    data.update(feature_names=list(HELOC_FEATURE_NAMES), target_names=list(HELOC_TARGET_NAMES),
                DESCR=_HELOC_LIKE_DESCR)
    return data


def load_tabular_fallback(name, *, test_size=0.2, random_state=0):
    """A tabular data set that needs no file, in the loaders' layout.

    Splits ``"breast_cancer"`` (569 x 30, 2 classes) or ``"digits"``
    (1,797 x 64, 10 classes), bundled with scikit-learn, 80/20, stratified
    and seeded, and standardises the features with statistics of the
    training part only. ``"heloc_like"`` is synthetic data with the layout
    of :func:`load_heloc` (9,871 rows, 23 features with HELOC's special
    codes, about 52% "Bad"; a linear model gets 70-75%), for when the real
    file is absent.

    Parameters
    ----------
    name : {"breast_cancer", "digits", "heloc_like"}
        Which data set.
    test_size : float, default=0.2
        Fraction of the samples held out for testing.
    random_state : int, RandomState instance or None, default=0
        Controls the stratified split; for ``"heloc_like"``, also the
        synthetic samples.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``X_train``, ``X_test`` (float32, standardised), ``y_train``,
        ``y_test`` (int64, scikit-learn's encoding), ``feature_names``,
        ``target_names`` (``target_names[y]`` is the label) and ``DESCR``
        (scikit-learn's description, or the synthetic rule's).

    Examples
    --------
    >>> from skggda.datasets import load_tabular_fallback
    >>> data = load_tabular_fallback("breast_cancer")
    >>> data.X_train.shape, data.X_test.shape
    ((455, 30), (114, 30))
    >>> data.target_names
    ['malignant', 'benign']
    """
    if name == "heloc_like":
        return make_heloc_like(random_state=random_state, test_size=test_size)
    if name not in _TABULAR:
        raise ValueError(f"name must be one of {sorted([*_TABULAR, 'heloc_like'])}, "
                         f"got {name!r}.")
    raw = _TABULAR[name]()
    data = _split_standardize(raw.data, raw.target, test_size=test_size,
                              random_state=random_state)
    del data["index_train"], data["index_test"]
    data.update(feature_names=[str(f) for f in raw.feature_names],
                target_names=[str(t) for t in raw.target_names], DESCR=raw.DESCR)
    return data


def make_cifar_like(n_samples=2000, *, flatten=False, random_state=0):
    """A CIFAR-10-shaped synthetic set: ``(n, 3, 32, 32)`` images of 10 classes.

    Each class is a smooth random colour pattern plus noise, so small nets
    learn it; it exercises the 3-channel path without the real data.

    Parameters
    ----------
    n_samples : int, default=2000
        Training images; the test set has ``max(200, n_samples // 5)``.
    flatten : bool, default=False
        Return rows of ``3 * 32 * 32`` features instead of images.
    random_state : int, default=0
        Seeds the class patterns, the labels and the noise.

    Returns
    -------
    data : Bunch
        ``X_train``, ``y_train``, ``X_test``, ``y_test``; images are float32.

    Examples
    --------
    >>> from skggda.datasets._fallbacks import make_cifar_like
    >>> data = make_cifar_like(n_samples=50)
    >>> data.X_train.shape, data.X_test.shape
    ((50, 3, 32, 32), (200, 3, 32, 32))
    """
    rng = np.random.RandomState(random_state)
    n_test = max(200, n_samples // 5)
    patterns = rng.normal(size=(10, 3, 4, 4))
    patterns = np.kron(patterns, np.ones((1, 1, 8, 8)))  # 4 x 4 blocks of 8 x 8 pixels
    y = rng.randint(10, size=n_samples + n_test)
    X = (patterns[y] + rng.normal(scale=1.5, size=(len(y), 3, 32, 32))).astype(np.float32)
    if flatten:
        X = X.reshape(len(X), -1)
    return Bunch(X_train=X[:n_samples], y_train=y[:n_samples], X_test=X[n_samples:],
                 y_test=y[n_samples:])
