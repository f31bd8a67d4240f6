"""The report page of ``skggda explain``: one self-contained HTML file.

Tables of the most harmful and most helpful groups, the run's settings,
two plots (score distribution, group size against score), the groups behind
the validation rows the model gets most wrong and, with ``--verify``, what
retraining without the harmful groups did (a sentence and a plot). Plots are
embedded as base64 PNG, so the page opens anywhere without its folder.
matplotlib is optional: without it the page says so instead of showing plots.
"""

from __future__ import annotations

import base64
import io
from html import escape

from ._explanations import verification_sentence

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; }
.note { color: #8a5a00; }
img { max-width: 48%; margin-right: 1%; }
"""
#: Report columns and how each is shown (the others are shown as they are).
_FORMATS = {"score": "{:.4g}", "label_share": "{:.0%}", "accuracy": "{:.0%}",
            "target_mean": "{:.4g}", "target_std": "{:.4g}"}


def display_rows(groups):
    """``(header, rows)`` of a report frame as text cells, for the page and the terminal."""
    header = [name.replace("_", " ") for name in groups.columns]
    rows = [[_FORMATS.get(name, "{}").format(value) for name, value in zip(groups.columns, row)]
            for row in groups.itertuples(index=False)]
    return header, rows


def render_page(title, settings, groups, *, top, notes=(), explanations=None,
                verification=None):
    """The whole page as a string.

    Parameters
    ----------
    title : str
    settings : list of (str, str)
        What was run, shown as a definition list.
    groups : pandas.DataFrame
        The report, sorted by increasing score (most harmful first).
    top : int
        Rows in each of the two tables.
    notes : sequence of str
        Notices about the input (rows dropped, columns converted, ...).
    explanations : pandas.DataFrame, default=None
        ``explanations.csv``: the groups behind the worst validation rows.
    verification : Bunch, default=None
        :func:`~skggda.inspection.verify_removal`'s result (``--verify``).
    """
    harmful = groups.head(top)
    helpful = groups.iloc[::-1].head(top)
    parts = [
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _definition_list(settings),
        "".join(f"<p class='note'>{escape(note)}</p>" for note in notes),
        "<p>A group's <b>score</b> is the predicted change of the validation property "
        "when the group is removed from training: higher means the group helps, "
        "lower (negative) that it hurts; mislabeled or atypical rows gather in "
        "the lowest-scoring groups. Every row of the training data is in "
        "<code>members.csv</code>; every group in <code>groups.csv</code>.</p>",
        f"<h2>Most harmful groups (lowest scores, {len(harmful)} of {len(groups)})</h2>",
        _table(harmful, "harmful"),
        f"<h2>Most helpful groups (highest scores, {len(helpful)} of {len(groups)})</h2>",
        _table(helpful, "helpful"),
        "<h2>Scores</h2>",
        _plots(groups),
        _explanations(explanations),
        _verification(verification),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def _definition_list(settings):
    items = "".join(f"<dt>{escape(str(k))}</dt><dd>{escape(str(v))}</dd>" for k, v in settings)
    return f"<dl>{items}</dl>"


def _table(groups, table_id):
    header, rows = display_rows(groups)
    numeric = [groups[name].dtype.kind in "iuf" for name in groups.columns]
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if num else ''}>{escape(cell)}</td>"
                         for cell, num in zip(row, numeric)) + "</tr>"
        for row in rows)
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _plots(groups):
    images = score_plots(groups["score"].to_numpy(), groups["size"].to_numpy())
    if images is None:
        return "<p class='note'>No plots: matplotlib is not installed (pip install matplotlib).</p>"
    return "".join(f"<img alt='{escape(alt)}' src='data:image/png;base64,{data}'>"
                   for alt, data in images)


def score_plots(scores, sizes):
    """``[(title, base64 PNG)]``: score histogram, size against score; None without matplotlib."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    histogram = Figure(figsize=(5.5, 3.6))
    ax = histogram.add_subplot()
    ax.hist(scores, bins=min(50, max(10, len(scores) // 10)), color="#4c72b0")
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set(xlabel="group score (higher helps)", ylabel="groups", title="Score distribution")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    scatter = Figure(figsize=(5.5, 3.6))
    ax = scatter.add_subplot()
    ax.scatter(sizes, scores, s=10, alpha=0.6, color="#4c72b0")
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set(xlabel="group size (rows)", ylabel="group score", title="Group size vs score")
    return [(fig.axes[0].get_title(), _png(fig)) for fig in (histogram, scatter)]


def _png(figure):
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _explanations(explanations):
    """The worst validation rows, one line each, with the groups that drove them."""
    if explanations is None or explanations.empty:
        return ""
    lines = []
    for row, part in explanations.groupby("valid_row", sort=False):
        first = part.iloc[0]
        sides = {side: ", ".join(f"{g} ({s:.3g})" for g, s in zip(rows["group"], rows["score"]))
                 for side, rows in part.groupby("side")}
        lines.append([str(row), str(first["label"]), _cell(first["predicted"]),
                      f"{first['loss']:.3g}", sides.get("harmful", ""), sides.get("helpful", "")])
    header = ["validation row", "label", "predicted", "loss",
              "most harmful groups (score)", "most helpful groups (score)"]
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in line) + "</tr>"
                   for line in lines)
    return ("<h2>Why the worst predictions?</h2><p>The validation rows with the highest loss "
            "and, for each, the training groups that most pushed its prediction away from "
            "its label (harmful: lowest scores) and toward it (helpful); every group's score "
            "for every explained row is in <code>explanations.csv</code>.</p>"
            f"<table id='explanations'><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
            "</table>")


def _cell(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _verification(result):
    """``--verify``: the sentence, a plot and the means with standard errors."""
    if result is None:
        return ""
    sentence = verification_sentence(result)
    sentence = sentence[0].upper() + sentence[1:]
    percent = result.metric == "accuracy"

    def shown(mean, sem):
        return f"{100 * mean:.1f} ± {100 * sem:.1f}%" if percent else f"{mean:.3f} ± {sem:.3f}"

    rows = [("none", "0%", shown(result.baseline, result.baseline_sem))]
    for i, fraction in enumerate(result.fractions):
        rows += [(removed, f"{fraction:.0%}",
                  shown(result[removed][i], result[f"{removed}_sem"][i]))
                 for removed in ("harmful", "random")]
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    image = verification_plot(result)
    plot = ("<p class='note'>No plot: matplotlib is not installed.</p>" if image is None else
            f"<img alt='Verification' src='data:image/png;base64,{image}'>")
    return (f"<h2>Verification: retrained without the harmful groups</h2>"
            f"<p id='verification'>{escape(sentence)}</p>{plot}"
            f"<table id='verification-table'><thead><tr><th>removed</th><th>share of rows</th>"
            f"<th>validation {escape(result.metric)} (mean ± s.e.)</th></tr></thead>"
            f"<tbody>{body}</tbody></table><p>Every retraining is a row of "
            f"<code>verification.csv</code>.</p>")


def verification_plot(result):
    """Base64 PNG: validation metric against the share removed, harmful and random; or None."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    figure = Figure(figsize=(5.5, 3.6))
    ax = figure.add_subplot()
    shares = 100 * result.fractions
    ax.axhline(result.baseline, color="grey", lw=1, ls="--", label="no removal")
    for removed, color in (("harmful", "#c44e52"), ("random", "#4c72b0")):
        ax.errorbar(shares, result[removed], yerr=result[f"{removed}_sem"], marker="o",
                    capsize=3, color=color, label=f"{removed} groups removed")
    ax.set(xlabel="training rows removed (%)", ylabel=f"validation {result.metric}",
           title="Retrained without the harmful groups")
    ax.legend(fontsize=8)
    return _png(figure)
