"""Where commands write, and the text formatting they share.

Results go to stdout, chatter (suppressed by ``--quiet``) to stderr, through
:class:`Output`; :func:`number`, :func:`shorten`, :func:`boxed` and the
recommendation table (:func:`recommendation_rows`, :func:`print_recommendations`)
are the formatting helpers of several commands.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Any

from matfact._text import format_table

__all__ = ["PROG", "Output", "because_text", "boxed", "item_titles_file", "number",
           "print_recommendations", "recommendation_rows", "shorten"]

PROG = "matfact"


class Output:
    """Where a command writes: results to stdout, chatter (suppressed by --quiet) to stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    @property
    def progress(self) -> str | bool:
        """How long jobs report progress (the ``progress=`` of fits and reports): a bar
        when stderr is a terminal, else plain lines at a bounded rate (a log of a
        long run shows it advancing), nothing with ``--quiet``."""
        if self.quiet:
            return False
        isatty = getattr(sys.stderr, "isatty", None)
        return "bar" if isatty and isatty() else "lines"

    def result(self, text: str = "") -> None:
        print(text, file=sys.stdout)

    def info(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr)

    def note(self, text: str) -> None:
        print(f"{PROG}: note: {text}", file=sys.stderr)


def number(value: Any, decimals: int = 4) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "-"
    if value != value:  # NaN
        return "-"
    return f"{value:.{decimals}f}"


def shorten(text: str, width: int = 48) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def boxed(lines: list[str], width: int = 76) -> str:
    """Wrap ``lines`` in an ASCII box (readable in any terminal encoding)."""
    wrapped: list[str] = []
    for line in lines:
        wrapped.extend(textwrap.wrap(line, width - 4, break_on_hyphens=False) or [""])
    border = "+" + "-" * (width - 2) + "+"
    body = [f"| {line.ljust(width - 4)} |" for line in wrapped]
    return "\n".join([border, *body, border])


def item_titles_file(path: str, encoding: str = "utf-8") -> dict[Any, str]:
    """``recommend --item-titles FILE``: raw item id → title, from a file of ids and titles.

    Read as ``--item-features`` files are (:func:`matfact.cli.data.read_features`);
    the file must have a ``title`` (or ``name``) column, or be two headerless columns.
    """
    from matfact.cli.data import read_features
    from matfact.data.interactions import normalize_ids
    from matfact.exceptions import DataError

    frame = read_features(path, "item", encoding=encoding)
    if "title" not in frame.columns:
        raise DataError(f"{path}: --item-titles needs a title column (title or name) besides "
                        f"the item ids; its columns are {list(map(str, frame.columns))}")
    # Ids as the model stores them (numbers as int64, text as str), so lookups match.
    ids = normalize_ids(frame.index, "item")
    return dict(zip(ids.tolist(), frame["title"].astype(str).tolist(), strict=True))


def _titles_of(model: Any, ids: Any, titles: dict[Any, str] | None = None) -> list[str] | None:
    if titles is not None:
        return [titles.get(item, "") for item in ids.tolist()]
    stored = getattr(model, "item_titles_", None)
    if stored is None:
        return None
    codes = model.item_index_.get_indexer(ids)
    return [str(stored[code]) if code >= 0 else "" for code in codes]


def recommendation_rows(model: Any, ids: Any, scores: Any,
                        titles: dict[Any, str] | None = None) -> list[dict[str, Any]]:
    """The rows of one user's list: rank, item, title (if known) and score.

    ``titles`` (raw id → title, from ``--item-titles``) replaces the model's own.
    """
    import numpy as np

    keep = np.isfinite(scores)
    ids, scores = ids[keep], scores[keep]
    titles = _titles_of(model, ids, titles)
    rows = []
    for rank, (item, score) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True), 1):
        row = {"rank": rank, "item": item, "score": float(score)}
        if titles is not None:
            row["title"] = titles[rank - 1]
        rows.append(row)
    return rows


def because_text(explanation: Any, because: list[dict[str, Any]], implicit: bool,
                 width: int = 88) -> list[str]:
    """``recommend --explain``: the lines under one recommended item.

    ``because`` is :func:`matfact.models.explain.because_list` of ``explanation`` (what
    ``--json`` prints), so the text and the JSON show the same items, titles and numbers:
    "because you rated X (5, +0.412), ..." (rating, contribution; for implicit data the
    weight, shown when it is not 1), then the rest of the history and the terms that are
    not history, summing to the explained score. A HybridMF user placed by features gets
    "because of item: Animation (+0.301), user: age=25-34 (+0.184), ..." instead.
    """
    def signed(value: float) -> str:
        return f"{value:+.3f}"

    parts = []
    features = any(entry.get("feature") for entry in because)
    for entry in because:
        if entry.get("feature"):  # its name, and no rating: a feature's row weight means little
            parts.append(f"{entry['item']} ({signed(entry['contribution'])})")
            continue
        name = shorten(entry["title"], 40) if entry["title"] else f"item {entry['item']}"
        value = entry["value"]
        shown = f"{value:g}, " if not implicit or value != 1 else ""
        parts.append(f"{name} ({shown}{signed(entry['contribution'])})")
    verb = "because of" if features else "because you had" if implicit else "because you rated"
    first = ([f"{verb} {parts[0]}", *parts[1:]] if parts else
             ["because of no history item (the terms below are the whole score)"])
    terms = []
    if because and explanation.rest:
        rest = "the other features" if features else "rest of the history"
        terms.append(f"{rest} {signed(explanation.rest)}")
    terms += [f"{label} {signed(value)}" for label, value in explanation.other_terms.items()]
    total = f"= {explanation.score:.3f}"
    if not explanation.exact:
        total += " (approximate)"
    if (explanation.folded_in and explanation.trained_score is not None
            and abs(explanation.trained_score - explanation.score) >= 5e-4):
        # The table shows the trained user's score; the parts are the folded-in user's.
        total += f" (folded-in user; trained {explanation.trained_score:.3f})"
    if terms:
        terms[-1] += " " + total
    else:
        terms = [total]
    return _fill(first, width) + _fill(terms, width)


def _fill(pieces: list[str], width: int) -> list[str]:
    """``", ".join(pieces)`` wrapped at the pieces' boundaries only (a title and its
    numbers stay on one line), continuation lines indented by two spaces."""
    lines = [pieces[0]]
    for piece in pieces[1:]:
        if len(lines[-1]) + 2 + len(piece) <= width:
            lines[-1] += ", " + piece
        else:
            lines[-1] += ","
            lines.append("  " + piece)
    return lines


def print_recommendations(out: Output, heading: str, rows: list[dict[str, Any]],
                          under: list[list[str]] | None = None) -> None:
    """Print one user's list as a table; ``under`` gives lines to print below each row
    (``recommend --explain``'s "because ..."), indented under the item column."""
    out.result(heading)
    if not rows:
        out.result("  (no item left to recommend)")
        return
    scores = [row["score"] for row in rows]
    decimals = 0 if all(float(s).is_integer() for s in scores) else 3
    headers = ["rank", "item"] + (["title"] if "title" in rows[0] else []) + ["score"]
    table = []
    for row in rows:
        cells = [str(row["rank"]), str(row["item"])]
        if "title" in row:
            cells.append(shorten(row["title"]))
        cells.append(f"{row['score']:.{decimals}f}")
        table.append(cells)
    right = {0, len(headers) - 1}
    text = textwrap.indent(format_table(headers, table, right), "  ")
    if under is None:
        out.result(text)
        return
    lines = text.split("\n")
    indent = " " * (lines[0].index("item") if "item" in lines[0] else 2)
    out.result("\n".join(lines[:2]))  # the header and its rule
    for line, notes in zip(lines[2:], under, strict=True):
        out.result(line)
        for note in notes:
            out.result(indent + note)
