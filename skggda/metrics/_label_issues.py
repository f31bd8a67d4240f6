"""Label-issue scores: which training labels are most likely wrong.

:func:`label_issue_scores` rates every training row (or group of rows) with
a score that is higher the more likely its label is wrong, from

* ``"self_influence"``: TracIn self-influence (Pruthi et al., 2020), the
  learning-rate-weighted squared gradient norm of a row's loss summed over
  the training checkpoints (:meth:`skggda.TracInAttributor.self_influence`);
  one training of the estimator;
* ``"oof_loss"``: the cross-entropy of the given label under out-of-fold
  probabilities (:func:`~sklearn.model_selection.cross_val_predict`); one
  training per fold. Its ranking is the one of cleanlab's default
  ``get_label_quality_scores`` (``self_confidence``, the out-of-fold
  probability of the given label) on the same folds;
* ``"combined"``: the mean of the two rankings (rank average), both costs.

The detection areas measured on HELOC and MNIST that decide ``"auto"`` are
in :data:`AUTO_FIGURES` and ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, StrOptions, validate_params

from ..attribution import TracInAttributor

METHODS = ("self_influence", "oof_loss", "combined")
#: What ``method="auto"`` runs (the measured winner, see :data:`AUTO_FIGURES`).
AUTO_METHOD = "combined"
#: Detection AUC (:func:`~skggda.metrics.noisy_label_auc`, mean of seeds 0, 1, 2)
#: measured by ``benchmarks/bench_noisy.py --label-issues-only``,
#: ``{(data set, share flipped): {method (folds): auc}}``; "cleanlab" is its
#: default label quality on the same 5-fold probabilities as "oof_loss (5)".
AUTO_FIGURES = {
    ("heloc", 0.1): {"self_influence": 0.748, "oof_loss (5)": 0.731, "oof_loss (3)": 0.729,
                     "combined (5)": 0.752, "combined (3)": 0.751, "cleanlab": 0.731},
    ("heloc", 0.2): {"self_influence": 0.694, "oof_loss (5)": 0.683, "oof_loss (3)": 0.676,
                     "combined (5)": 0.705, "combined (3)": 0.703, "cleanlab": 0.683},
    ("mnist", 0.1): {"self_influence": 0.925, "oof_loss (5)": 0.937, "oof_loss (3)": 0.937,
                     "combined (5)": 0.942, "combined (3)": 0.942, "cleanlab": 0.937},
    ("mnist", 0.2): {"self_influence": 0.875, "oof_loss (5)": 0.876, "oof_loss (3)": 0.878,
                     "combined (5)": 0.888, "combined (3)": 0.889, "cleanlab": 0.876},
}
#: Projection of the self-influence gradients: exact self-influence takes one
#: backward pass per row and checkpoint (7.8 s against 0.8 s on HELOC, over
#: 40 checkpoints, at about the same detection AUC: 0.701 exact, 0.693 projected).
SELF_INFLUENCE_COMPONENTS = 1024
#: Folds of ``cv=None``. With 3 folds the combined scores matched the 5-fold
#: ones (AUC within 0.002, :data:`AUTO_FIGURES`) for 3 trainings on two thirds
#: of the rows instead of 5 on four fifths.
DEFAULT_FOLDS = 3
#: Probabilities are clipped here before the log: a fold that gives the label
#: probability 0 scores ``-log(1e-12)`` instead of infinity.
_EPS = 1e-12


def _last_step(estimator):
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def _checkpoints_for(estimator):
    """``"all"`` for a skorch net that is trained here; ``"last"`` for anything else.

    Every epoch's checkpoint needs a skorch training run: a scikit-learn
    model, or a frozen net, has its final weights only.
    """
    from skorch import NeuralNet

    return "all" if isinstance(_last_step(estimator), NeuralNet) else "last"


def self_influence_scores(estimator, X, y, random_state=None,
                          n_components=SELF_INFLUENCE_COMPONENTS):
    """Per-row TracIn self-influence of a clone of ``estimator`` trained on ``(X, y)``.

    Gradients are projected to ``n_components`` dimensions; a model with
    fewer parameters than that is attributed exactly (a second training: a
    small model trains fast).
    """
    def fit(components):
        return TracInAttributor(estimator, checkpoints=_checkpoints_for(estimator),
                                n_components=components, random_state=random_state).fit(X, y)

    try:
        attributor = fit(n_components)
    except ValueError as error:
        if n_components is None or "exceeds the number of attributed" not in str(error):
            raise
        attributor = fit(None)
    return np.asarray(attributor.self_influence(), dtype=np.float64)


def oof_loss_scores(estimator, X, y, cv=None, random_state=None, return_proba=False):
    """Per-row cross-entropy of the given label under out-of-fold probabilities."""
    y_encoded = LabelEncoder().fit_transform(np.asarray(y))
    if cv is None:
        cv = DEFAULT_FOLDS
    if isinstance(cv, (int, np.integer)):
        seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
        cv = StratifiedKFold(n_splits=int(cv), shuffle=True, random_state=seed)
    proba = np.asarray(cross_val_predict(clone(estimator), X, y_encoded, cv=cv,
                                         method="predict_proba"), dtype=np.float64)
    given = proba[np.arange(len(y_encoded)), y_encoded]
    losses = -np.log(np.clip(given, _EPS, None))
    return (losses, proba) if return_proba else losses


def rank_average(*scores):
    """The mean of the scores' rankings (ties share their mean rank), in ``(0, 1]``."""
    return np.mean([rankdata(s) / len(s) for s in scores], axis=0)


def group_means(scores, groups):
    """``(group labels, mean score of each)``, the groups in sorted order."""
    groups = np.asarray(groups)
    if groups.shape != (len(scores),):
        raise ValueError(f"groups must have one label per row, shape ({len(scores)},); got "
                         f"shape {groups.shape}.")
    labels, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse.reshape(-1), weights=scores, minlength=len(labels))
    return labels, sums / np.bincount(inverse.reshape(-1), minlength=len(labels))


@validate_params(
    {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "X": ["array-like"],
        "y": ["array-like"],
        "method": [StrOptions({"auto", *METHODS})],
        "cv": ["cv_object"],
        "groups": ["array-like", None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def label_issue_scores(estimator, X, y, *, method="auto", cv=None, groups=None,
                       random_state=None):
    """Score every training row, or group of rows, by how likely its label is wrong.

    A higher score means a more likely mislabeled row: inspect or relabel
    rows from the highest score down. ``method="auto"`` runs the detector
    that found flipped labels best in the project's benchmarks (see Notes).

    Parameters
    ----------
    estimator : classifier
        The training recipe, cloned and never modified: a skorch net (e.g.
        :func:`~skggda.models.make_classifier`), or a scikit-learn
        classifier or Pipeline with ``predict_proba``. Self-influence sums
        over every epoch's checkpoint of a skorch net and uses the final
        weights of anything else.
    X : array-like of shape (n_samples, ...)
        Training inputs, as the estimator's ``fit`` takes them (``float32``
        for a skorch net).
    y : array-like of shape (n_samples,)
        The given, possibly wrong, class labels.
    method : {"auto", "self_influence", "oof_loss", "combined"}, default="auto"
        ``"self_influence"``: TracIn self-influence over the training
        checkpoints (one training). ``"oof_loss"``: the loss of the given
        label under out-of-fold predicted probabilities (one training per
        fold; the ranking of cleanlab's default label quality on the same
        folds). ``"combined"``: the mean of the two rankings, in ``(0, 1]``
        (both costs). ``"auto"``: ``"combined"``, the measured winner (see
        Notes).
    cv : int, cross-validation generator or iterable, default=None
        Folds of the out-of-fold probabilities (scikit-learn's ``cv``
        semantics); ``None`` is 3 shuffled stratified folds, an integer that
        many. Unused by ``"self_influence"``.
    groups : array-like of shape (n_samples,), default=None
        A group label per row. When given, the result is the **mean** score
        of each group's rows, the groups in sorted order of their labels
        (as :func:`numpy.unique` returns them). The mean, not the sum: it is
        the expected score of a row of the group, so a large group does not
        outrank a small one for its size alone, and inspecting groups in
        order of decreasing mean finds the most wrong labels per row
        inspected.
    random_state : int, RandomState instance or None, default=None
        Seeds the net's training and projection (self-influence) and the
        shuffling of the folds.

    Returns
    -------
    scores : ndarray of shape (n_samples,) or (n_groups,)
        Per row, or per group when ``groups`` is given; higher = more
        likely mislabeled. Pass ``-scores`` to
        :func:`~skggda.metrics.noisy_label_auc`, which inspects the lowest
        scores first.

    See Also
    --------
    noisy_label_auc : How early a ranking finds flipped labels.
    flip_labels : Flip a share of labels, to measure a detector.
    skggda.TracInAttributor.self_influence : The self-influence detector.

    Notes
    -----
    Detection AUC (:func:`~skggda.metrics.noisy_label_auc` of ``-scores``,
    mean of three seeds) measured by ``benchmarks/bench_noisy.py
    --label-issues-only``: HELOC with ANN-S (40 epochs), the first 5,000
    MNIST training images with the MLP 150 x 3 (20 epochs), 10% and 20% of
    the labels flipped; self-influence over all checkpoints on gradients
    projected to 1,024 dimensions; cleanlab's default label quality on the
    same 5-fold probabilities as the 5-fold out-of-fold loss. Cost: seconds
    over those of one training of the net on all rows (range of the four
    settings, on a 2-core CPU shared with other jobs):

    ================  ==============  =======  =======  =======  =======  ========
    data, flipped     self-influence  oof 5    oof 3    comb. 5  comb. 3  cleanlab
    ================  ==============  =======  =======  =======  =======  ========
    HELOC, 10%        0.748           0.731    0.729    0.752    0.751    0.731
    HELOC, 20%        0.694           0.683    0.676    0.705    0.703    0.683
    MNIST, 10%        0.925           0.937    0.937    0.942    0.942    0.937
    MNIST, 20%        0.875           0.876    0.878    0.888    0.889    0.876
    cost (trainings)  1.6-2.0         3.2-5.1  1.8-2.2  4.9-7.1  3.5-4.2  3.2-5.1
    ================  ==============  =======  =======  =======  =======  ========

    The rank average of both detectors ("combined") is the best in all four
    settings, by 0.005 to 0.022 over cleanlab, and its 3-fold version, what
    ``"auto"`` runs by default, matches the 5-fold one (within 0.002) for
    fewer trainings: one on all rows with its gradient passes, and three on
    two thirds of them, against cleanlab's five on four fifths.
    Self-influence alone beats cleanlab on HELOC (a table) in about half its
    time (0.41x and 0.53x), but not on MNIST. Out-of-fold losses rank rows exactly as
    cleanlab's default ``get_label_quality_scores`` on the same
    probabilities (a monotone map of the probability of the given label),
    so they match its AUC at the same cost.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skggda.metrics import flip_labels, label_issue_scores, noisy_label_auc
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(300, 4))
    >>> y, flipped = flip_labels((X[:, 0] > 0).astype(int), 0.1, random_state=0)
    >>> scores = label_issue_scores(LogisticRegression(), X, y, random_state=0)
    >>> bool(noisy_label_auc(-scores, np.arange(300), flipped) > 0.9)
    True
    """
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != _n_rows(X):
        raise ValueError(f"y must hold one label per row of X, shape ({_n_rows(X)},); got "
                         f"shape {y.shape}.")
    if len(np.unique(y)) < 2:
        raise ValueError("y has a single class: there is no other label a row could have.")
    if groups is not None and np.shape(groups) != y.shape:
        raise ValueError(f"groups must have one label per row, shape {y.shape}; got shape "
                         f"{np.shape(groups)}.")
    method = AUTO_METHOD if method == "auto" else method
    rng = check_random_state(random_state)
    seed = int(rng.randint(np.iinfo(np.int32).max))
    parts = []
    if method in ("self_influence", "combined"):
        parts.append(self_influence_scores(estimator, X, y, random_state=seed))
    if method in ("oof_loss", "combined"):
        parts.append(oof_loss_scores(estimator, X, y, cv=cv, random_state=seed))
    scores = parts[0] if len(parts) == 1 else rank_average(*parts)
    return scores if groups is None else group_means(scores, groups)[1]


def _n_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)
