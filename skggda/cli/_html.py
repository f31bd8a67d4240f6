"""The report page of ``skggda explain``: one self-contained HTML file.

Tables of the most harmful and most helpful groups, the run's settings and
two plots (score distribution, group size against score) embedded as base64
PNG, so the page opens anywhere without its folder. matplotlib is optional:
without it the page says so instead of showing plots.
"""

from __future__ import annotations

import base64
import io
from html import escape

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


def render_page(title, settings, groups, *, top, notes=()):
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
