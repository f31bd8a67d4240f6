"""Baselines of the experiment grid that are not attributions."""

from __future__ import annotations

from time import perf_counter

import numpy as np
from sklearn.model_selection import StratifiedKFold, cross_val_predict

#: Printed when cleanlab is missing; the grid then runs without its row.
CLEANLAB_MISSING = ("cleanlab baseline skipped: cleanlab is not installed "
                    "(pip install 'skggda[bench]' or pip install cleanlab)")


def cleanlab_label_quality(net, X, y, *, n_folds=5, random_state=0):
    """cleanlab's label quality from ``n_folds``-fold out-of-sample probabilities.

    Each fold's probabilities come from a clone of ``net`` (the same
    training recipe) trained on the other folds; cleanlab's
    ``get_label_quality_scores`` then rates every given label. Low quality
    means a likely wrong label, so the scores rank training points as
    attribution scores do for noisy-label detection (inspect the lowest
    first).

    Parameters
    ----------
    net : classifier
        The training recipe (cloned per fold).
    X : array-like of shape (n_samples, ...)
    y : array-like of shape (n_samples,) of int
        The (possibly noisy) labels, ``0 .. n_classes - 1``.
    n_folds : int, default=5
        Cross-validation folds: the cost is ``n_folds`` trainings.
    random_state : int, default=0
        Seeds the fold split.

    Returns
    -------
    quality : ndarray of shape (n_samples,)
    seconds : float
        Wall-clock time of the trainings and the scoring.

    Raises
    ------
    ImportError
        When cleanlab is not installed (see :data:`CLEANLAB_MISSING`).
    """
    from cleanlab.rank import get_label_quality_scores

    start = perf_counter()
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    probabilities = cross_val_predict(net, X, y, cv=folds, method="predict_proba")
    quality = get_label_quality_scores(np.asarray(y), np.asarray(probabilities))
    return quality, perf_counter() - start
