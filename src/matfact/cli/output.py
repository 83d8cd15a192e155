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

__all__ = ["PROG", "Output", "boxed", "number", "print_recommendations",
           "recommendation_rows", "shorten"]

PROG = "matfact"


class Output:
    """Where a command writes: results to stdout, chatter (suppressed by --quiet) to stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    @property
    def progress(self) -> bool:
        """Whether to draw progress bars: not quiet, and stderr is a terminal."""
        isatty = getattr(sys.stderr, "isatty", None)
        return not self.quiet and bool(isatty and isatty())

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


def _titles_of(model: Any, ids: Any) -> list[str] | None:
    titles = getattr(model, "item_titles_", None)
    if titles is None:
        return None
    codes = model.item_index_.get_indexer(ids)
    return [str(titles[code]) if code >= 0 else "" for code in codes]


def recommendation_rows(model: Any, ids: Any, scores: Any) -> list[dict[str, Any]]:
    import numpy as np

    keep = np.isfinite(scores)
    ids, scores = ids[keep], scores[keep]
    titles = _titles_of(model, ids)
    rows = []
    for rank, (item, score) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True), 1):
        row = {"rank": rank, "item": item, "score": float(score)}
        if titles is not None:
            row["title"] = titles[rank - 1]
        rows.append(row)
    return rows


def print_recommendations(out: Output, heading: str, rows: list[dict[str, Any]]) -> None:
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
    out.result(textwrap.indent(format_table(headers, table, right), "  "))
