"""GLUE QNLI: question / sentence pairs, from the dev split only."""

from __future__ import annotations

import csv

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch

from ._home import _data_file

QNLI_FILE = "qnli/dev.tsv"
QNLI_COLUMNS = ["index", "question", "sentence", "label"]
#: ``target_names[y]`` is the label: entailment (the sentence answers the
#: question) is the positive class. Note that GLUE / Hugging Face number them
#: the other way round (entailment = 0).
QNLI_TARGET_NAMES = ["not_entailment", "entailment"]

QNLI_DESCR = """\
GLUE QNLI (Question-answering NLI), validation split
----------------------------------------------------
Source: qnli/dev.tsv under the data folder: the GLUE benchmark's QNLI dev
split (5,463 question / sentence pairs), licence CC BY-SA 4.0. Only the dev
split is available offline, so it is split, stratified and seeded, into a
train and a test part (80/20 by default: 4,370 / 1,093 pairs).

X_train and X_test are object arrays of shape (n, 2) holding
(question, sentence) strings. y = 1 for "entailment" (the sentence contains
the answer), y = 0 for "not_entailment"; target_names[y] gives the label.
GLUE and Hugging Face number the labels the other way round.
"""


def load_qnli_dev(*, data_home=None, test_size=0.2, random_state=0):
    """Load the GLUE QNLI dev split as a train / test pair of text-pair sets.

    Reads ``qnli/dev.tsv`` under the data folder (columns ``index``,
    ``question``, ``sentence``, ``label``) and splits its 5,463 pairs into a
    train and a test part, stratified by label.

    Parameters
    ----------
    data_home : str, path-like or None, default=None
        Data folder; see :func:`get_data_home` for the resolution order.
    test_size : float, default=0.2
        Fraction of the dev split's pairs held out as the test part.
    random_state : int, RandomState instance or None, default=0
        Controls the stratified split.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``X_train``, ``X_test`` (object arrays of shape (n, 2): the
        question and the sentence), ``y_train``, ``y_test`` (int64,
        1 = entailment, 0 = not_entailment), ``feature_names``
        (``["question", "sentence"]``), ``target_names``
        (``["not_entailment", "entailment"]``) and ``DESCR``.

    Raises
    ------
    FileNotFoundError
        If ``qnli/dev.tsv`` is not in the data folder; the message gives the
        expected path.
    ValueError
        If the file does not have QNLI's columns or labels.

    Examples
    --------
    With GLUE's QNLI ``dev.tsv`` in the data folder:

    >>> from skggda.datasets import load_qnli_dev
    >>> data = load_qnli_dev()  # doctest: +SKIP
    >>> data.X_train.shape, data.X_test.shape  # doctest: +SKIP
    ((4370, 2), (1093, 2))
    """
    path = _data_file(data_home, QNLI_FILE, "QNLI", "the GLUE QNLI dev.tsv file")
    X, y = _read_qnli_tsv(path)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=random_state, stratify=y)
    return Bunch(X_train=X_train, X_test=X_test, y_train=y_train, y_test=y_test,
                 feature_names=["question", "sentence"],
                 target_names=list(QNLI_TARGET_NAMES), DESCR=QNLI_DESCR)


def _read_qnli_tsv(path):
    """(question, sentence) object array and 0/1 labels of every row."""
    codes = {name: k for k, name in enumerate(QNLI_TARGET_NAMES)}
    with open(path, newline="", encoding="utf-8") as f:
        # QUOTE_NONE: sentences hold unbalanced quotes, and TSV fields are never quoted
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != QNLI_COLUMNS:
            raise ValueError(f"{path} is not the QNLI dev file: expected the columns "
                             f"{QNLI_COLUMNS}, got {header!r}.")
        questions, sentences, labels = [], [], []
        for line, row in enumerate(reader, start=2):
            if len(row) != len(QNLI_COLUMNS):
                raise ValueError(f"{path}, line {line}: expected {len(QNLI_COLUMNS)} "
                                 f"tab-separated fields, got {len(row)}.")
            if row[3] not in codes:
                raise ValueError(f"{path}, line {line}: label must be one of "
                                 f"{QNLI_TARGET_NAMES}, got {row[3]!r}.")
            questions.append(row[1])
            sentences.append(row[2])
            labels.append(codes[row[3]])
    X = np.empty((len(labels), 2), dtype=object)  # object, not "<U": no padding to the longest
    X[:, 0], X[:, 1] = questions, sentences
    return X, np.asarray(labels, dtype=np.int64)
