"""Hypothesis strategies for the fuzz tests: odd inputs, and valid inputs of every form.

``arrays``, ``targets``, ``group_labels`` and ``group_counts`` draw inputs of
odd shapes, dtypes and label types (NaN and inf included) that an estimator
must either handle or refuse cleanly; ``valid_training_data`` and
``valid_grouping`` draw only inputs that must fit and score.
"""

from __future__ import annotations

import numpy as np
import pytest

from skggda import KMeansGrouper, RandomGrouper

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import strategies as st  # noqa: E402

#: The shape of the fuzzed problems: the pretrained net's inputs and classes.
N_FEATURES, N_CLASSES = 2, 3

DTYPES = ["float16", "float32", "float64", "int8", "int64", "uint8", "bool", "object"]


@st.composite
def arrays(draw, n_samples=None, n_features=None):
    """A feature matrix of odd shape and dtype, with NaN / inf / huge values sometimes."""
    n = draw(st.integers(0, 6)) if n_samples is None else n_samples
    d = draw(st.sampled_from([N_FEATURES] * 3 + [0, 1, 3])) if n_features is None \
        else n_features
    layout = draw(st.sampled_from(["2d"] * 6 + ["1d", "3d"]))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.RandomState(draw(st.integers(0, 2**31 - 1)))
    X = rng.normal(scale=draw(st.sampled_from([1.0, 1.0, 1e-3, 100.0])), size=(n, d))
    specials = draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf, 1e30, 0.0]),
                             max_size=2))
    for value in specials:
        if X.size:
            X.flat[rng.randint(X.size)] = value
    X = _cast(X, dtype, rng, draw(st.booleans()))
    if layout == "1d":
        return X.reshape(-1)
    return X[:, :, None] if layout == "3d" else X


def _cast(X, dtype, rng, strings):
    if dtype == "object":
        X = X.astype(object)
        if strings and X.size:
            X.flat[rng.randint(X.size)] = rng.choice(["a", None, "1.5"])
        return X
    with np.errstate(invalid="ignore", over="ignore"):
        if np.dtype(dtype).kind in "iub":
            X = np.nan_to_num(X, posinf=7, neginf=-7)
        return X.astype(dtype)


LABEL_KINDS = ["int", "int", "int", "negative", "string", "float", "bool", "object-none",
               "one-class", "2d"]


@st.composite
def targets(draw, n_samples):
    """Class labels for ``n_samples`` rows (sometimes of the wrong length or kind)."""
    n = n_samples + draw(st.sampled_from([0] * 8 + [-1, 1]))
    n = max(n, 0)
    kind = draw(st.sampled_from(LABEL_KINDS))
    n_classes = draw(st.integers(1, 4))
    rng = np.random.RandomState(draw(st.integers(0, 2**31 - 1)))
    y = rng.randint(n_classes, size=n)
    if kind == "negative":
        return y - 2
    if kind == "string":
        return np.array(["cat", "dog", "emu", "yak"])[y]
    if kind == "float":
        return y + rng.uniform(size=n)
    if kind == "bool":
        return y.astype(bool)
    if kind == "object-none":
        y = y.astype(object)
        if n:
            y[rng.randint(n)] = None
        return y
    if kind == "one-class":
        return np.zeros(n, dtype=int)
    return y.reshape(-1, 1) if kind == "2d" else y


GROUP_LABELS = [0, 1, -5, 2.5, "a", "b", None, True, ("x", 1), float("nan"), 10**12]


@st.composite
def group_labels(draw, n_samples):
    """Group labels of mixed and odd types, one per sample (sometimes one too many)."""
    n = n_samples + draw(st.sampled_from([0] * 9 + [1]))
    style = draw(st.sampled_from(["mixed", "one-group", "singletons", "ints", "strings"]))
    if style == "one-group":
        labels = [draw(st.sampled_from(GROUP_LABELS))] * n
    elif style == "singletons":
        labels = list(range(-n, 0))
    elif style == "ints":
        labels = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    elif style == "strings":
        labels = draw(st.lists(st.sampled_from(["", "a", "b", "ü"]), min_size=n, max_size=n))
    else:
        labels = draw(st.lists(st.sampled_from(GROUP_LABELS), min_size=n, max_size=n))
    return np.array(labels, dtype=object) if draw(st.booleans()) and style == "mixed" \
        else labels


@st.composite
def group_counts(draw, n_samples):
    """``{"group_size", "n_groups"}`` at their edges for ``n_samples`` rows."""
    edge = [1, 2, max(n_samples, 1), n_samples + 1, 10**9]
    return {"group_size": draw(st.sampled_from(edge)),
            "n_groups": draw(st.sampled_from([None, None, 1, 2, n_samples, n_samples + 1]))}


#: Feature dtypes (and a plain list) that are valid input: numbers, whatever their type.
VALID_DTYPES = ["float32", "float64", "float16", "int64", "int8", "uint8", "bool", "object",
                "list"]

#: Forms of valid class labels for a net trained in ``fit``.
VALID_TARGETS = ["int", "shifted", "string", "bool", "float", "list"]


def _valid_features(X, dtype):
    if dtype == "list":
        return X.tolist()
    if dtype == "object":
        return X.astype(object)
    if np.dtype(dtype).kind in "iu":
        return np.round(np.abs(X) if dtype == "uint8" else X).astype(dtype)
    return X.astype(dtype)


def _valid_targets(codes, form):
    if form == "shifted":
        return codes * 7 - 3
    if form == "string":
        return np.array(["cat", "dog", "emu", "yak"])[codes]
    if form == "bool":
        return codes.astype(bool) if codes.max() <= 1 else codes
    if form == "float":
        return codes.astype(np.float64)
    return codes.tolist() if form == "list" else codes


@st.composite
def valid_training_data(draw, frozen, min_samples=1, max_samples=40):
    """Valid ``(X, y, X_eval, y_eval)``: any dtype read as numbers, any label type.

    For the frozen pretrained net (``frozen``): ``N_FEATURES`` columns and labels
    among its classes (one class is enough); for a net trained in ``fit``: one to
    four columns and two to four classes of any label type. The evaluation rows
    share the dtype and take labels seen in training.
    """
    n = draw(st.integers(max(min_samples, 1 if frozen else 2), max_samples))
    m = draw(st.integers(1, 6))
    d = N_FEATURES if frozen else draw(st.sampled_from([1, 2, 3, 4]))
    dtype = draw(st.sampled_from(VALID_DTYPES))
    rng = np.random.RandomState(draw(st.integers(0, 2**31 - 1)))
    X = rng.normal(scale=draw(st.sampled_from([1.0, 1.0, 1e-2, 10.0])), size=(n + m, d))
    if frozen:
        codes = rng.randint(draw(st.integers(1, N_CLASSES)), size=n)
        form = draw(st.sampled_from(["int", "list"]))
    else:
        codes = rng.randint(draw(st.integers(2, 4)), size=n)
        codes[rng.choice(n, 2, replace=False)] = [0, 1]  # at least two classes
        form = draw(st.sampled_from(VALID_TARGETS))
    codes_eval = codes[rng.randint(n, size=m)]
    return (_valid_features(X[:n], dtype), _valid_targets(codes, form),
            _valid_features(X[n:], dtype), _valid_targets(codes_eval, form))


#: Forms of valid group labels: ``f(code)`` for group codes ``0..k-1``.
GROUP_FORMS = {
    "int": lambda c: int(c),
    "negative-big": lambda c: int(c) * 10**12 - 5,
    "string": lambda c: f"g{c}",
    "tuple": lambda c: (int(c) % 3, f"t{c}"),
    "float": lambda c: c + 0.5,
    "mixed": lambda c: int(c) if c % 2 else f"{c}",
    "numpy-int": lambda c: np.int16(c),
}


@st.composite
def valid_grouping(draw, n_samples, nontrivial_weight=6, allow_none=True):
    """``(groups, grouper, n_groups)``: valid group labels, a grouper, or (``allow_none``)
    neither, for ``n_samples`` rows. One group, all singletons, or (rows permitting)
    2 to ``n_samples - 1`` groups, in proportions 1 : 1 : ``nontrivial_weight``.
    """
    how = draw(st.sampled_from(["labels"] * 5 + ["random-k", "random-size", "kmeans"]
                               + ["none"] * allow_none))
    if how == "none":
        return None, None, n_samples
    rng_seed = draw(st.integers(0, 2**16))
    rng = np.random.RandomState(rng_seed)
    shape = draw(st.sampled_from(["k"] * nontrivial_weight + ["one group", "singletons"]))
    if shape == "k" and n_samples > 2:
        k = rng.randint(2, n_samples)  # evenly: hypothesis favours the ends of a range
    else:
        k = 1 if shape == "one group" else n_samples
    if how == "random-k":
        return None, RandomGrouper(n_groups=k, random_state=rng_seed), k
    if how == "random-size":
        # k groups of ceil(n / k) rows, or fewer when that rounds
        size = n_samples + 5 if k == 1 else -(-n_samples // k)
        return None, RandomGrouper(group_size=size, random_state=rng_seed), \
            -(-n_samples // size)
    if how == "kmeans":
        return None, KMeansGrouper(n_groups=k, max_iter=5, random_state=rng_seed), k
    codes = rng.randint(k, size=n_samples)
    codes[rng.permutation(n_samples)[:k]] = np.arange(k)  # all k groups, of random sizes
    form = GROUP_FORMS[draw(st.sampled_from(sorted(GROUP_FORMS)))]
    groups = [form(c) for c in codes]
    if draw(st.booleans()):  # an array: of objects for tuples and mixed types
        array = np.empty(n_samples, dtype=object)
        array[:] = groups
        groups = array if isinstance(groups[0], tuple) or form is GROUP_FORMS["mixed"] \
            else np.asarray(groups)
    return groups, None, len(set(map(_hashable, groups)))


def _hashable(label):
    return label.item() if isinstance(label, np.generic) else label
