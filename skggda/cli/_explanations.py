"""Two parts of the ``skggda explain`` report beyond the group table.

* **Explanations** (``explanations.csv``): for the validation rows the model
  gets most wrong (highest loss), the training groups that drove each
  prediction, the most harmful and most helpful by the attributor's
  :meth:`~skggda.TracInAttributor.top_groups`.
* **Verification** (``--verify``, ``verification.csv``): the model retrained
  without the most harmful groups and without random groups of the same
  size, beside no removal (:func:`skggda.inspection.verify_removal`), and
  the one sentence that says what happened.
"""

from __future__ import annotations

import numpy as np

from ..inspection import verify_removal

#: Groups listed per explained row and side (harmful, helpful).
GROUPS_PER_ROW = 3
#: Shares of the training rows ``--verify`` removes.
VERIFY_FRACTIONS = (0.05, 0.1)
EXPLANATION_COLUMNS = ["valid_row", "label", "predicted", "loss", "side", "rank", "group",
                       "score"]
VERIFICATION_COLUMNS = ["removed", "fraction", "seed", "metric"]


def validation_losses(model, X, y, task):
    """``(loss per row, prediction per row)``: cross-entropy of the label, or squared error."""
    if task == "classification":
        proba = np.asarray(model.predict_proba(X), dtype=np.float64)
        given = proba[np.arange(len(y)), y]
        return -np.log(np.clip(given, 1e-12, None)), proba.argmax(1)
    predicted = np.asarray(model.predict(X), dtype=np.float64).reshape(len(y))
    return (predicted - y) ** 2, predicted


def explain_worst(attributor, model, data, n_rows):
    """One row per (explained validation row, side, rank): the groups that drove it.

    The ``n_rows`` validation rows with the highest loss are explained by
    their own labels (``top_groups(X, y)``): the harmful groups are those
    whose training pushed the prediction away from the label.

    Returns
    -------
    explanations : pandas.DataFrame
        Columns :data:`EXPLANATION_COLUMNS`, the worst row first; ``label``
        and ``predicted`` as in the file (classes) or in the target's units.
    """
    import pandas as pd

    losses, predicted = validation_losses(model, data.X_valid, data.y_valid, data.task)
    worst = np.argsort(-losses, kind="stable")[:min(n_rows, len(losses))]
    n = min(GROUPS_PER_ROW, attributor.n_groups_)
    top = attributor.top_groups(data.X_valid[worst], data.y_valid[worst], n=n)
    label, guess = _shown(data, data.y_valid[worst]), _shown(data, predicted[worst])
    records = []
    for i, row in enumerate(worst):
        for side in ("harmful", "helpful"):
            for rank, (index, score) in enumerate(zip(top[f"{side}_indices"][i],
                                                      top[f"{side}_scores"][i]), 1):
                records.append(dict(valid_row=int(data.valid_rows[row]), label=label[i],
                                    predicted=guess[i], loss=float(losses[row]), side=side,
                                    rank=rank, group=attributor.groups_[index],
                                    score=float(score)))
    return pd.DataFrame.from_records(records, columns=EXPLANATION_COLUMNS)


def _shown(data, values):
    """Class indices as the file's labels; standardized targets in the target's units."""
    if data.classes is not None:
        return data.classes[np.asarray(values, dtype=np.int64)]
    mean, sd = data.target_scale
    return np.asarray(values, dtype=np.float64) * sd + mean


def verify(attributor, data, n_seeds, seed):
    """:func:`~skggda.inspection.verify_removal` on the validation rows, as ``explain`` runs it."""
    return verify_removal(attributor, data.X_valid, data.y_valid, fractions=VERIFY_FRACTIONS,
                          n_seeds=n_seeds, random_state=seed)


def verification_frame(result):
    """The records of :func:`verify`, one row per retraining (:data:`VERIFICATION_COLUMNS`)."""
    import pandas as pd

    return pd.DataFrame.from_records(result.table, columns=VERIFICATION_COLUMNS)


def verification_sentence(result):
    """What removal did, in one plain sentence, at the largest share removed.

    E.g. "removing the 10% most harmful rows raised validation accuracy from
    71.2% to 72.0%; removing random rows of the same size gave 71.0%."
    """
    metric = "validation accuracy" if result.metric == "accuracy" else "validation R^2"
    last = int(np.argmax(result.fractions))
    before, after, random = result.baseline, result.harmful[last], result.random[last]
    verb = "raised" if after > before else "lowered" if after < before else "left"
    change = (f"{verb} {metric} from {_value(result, before)} to {_value(result, after)}"
              if verb != "left" else f"left {metric} at {_value(result, before)}")
    seeds = len({r["seed"] for r in result.table})
    return (f"removing the {result.fractions[last]:.0%} most harmful rows {change}; removing "
            f"random rows of the same size gave {_value(result, random)} (means over "
            f"{seeds} retraining seed{'s' if seeds > 1 else ''}).")


def _value(result, value):
    return f"{value:.1%}" if result.metric == "accuracy" else f"{value:.3f}"
