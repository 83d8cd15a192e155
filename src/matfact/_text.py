"""Plain aligned text tables for the command line (no dependencies)."""

from __future__ import annotations

__all__ = ["format_table"]


def format_table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    """A plain aligned text table; columns in ``right`` are right-aligned."""
    widths = [max(len(row[col]) for row in [headers, *rows]) for col in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(widths[col]) if col in right else cell.ljust(widths[col])
                         for col, cell in enumerate(cells)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])
