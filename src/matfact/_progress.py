"""Progress of long loops: a bar on a terminal, plain lines in a log, or nothing.

Every loop that reports progress (the iterations of a fit, the steps of a
report) goes through :func:`progress_bar`, so one ``progress`` value means
the same everywhere:

- ``None`` (the library default): a tqdm bar when stderr is a terminal,
  nothing otherwise, so a script or a notebook run in batch writes no bar
  fragments into its log;
- ``True`` or ``"bar"``: always a tqdm bar;
- ``"lines"``: plain lines on stderr (``"ALS: iteration 10/50 (train=0.91) 12 s"``),
  at most one every :data:`LINE_INTERVAL` seconds plus the last one, for logs
  of long jobs (what the command line uses when stderr is not a terminal);
- ``False``: nothing.

Only the standard library is imported here; tqdm is imported for a bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from matfact.exceptions import ParameterError

__all__ = ["LINE_INTERVAL", "PROGRESS_MODES", "Progress", "progress_bar", "progress_mode"]

#: The fewest seconds between two plain progress lines (the last one is always written).
LINE_INTERVAL = 10.0
#: What ``progress=`` may be besides None, True and False.
PROGRESS_MODES = ("bar", "lines")


def _stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_mode(progress: Any) -> str | None:
    """``"bar"``, ``"lines"`` or None (nothing) for a ``progress=`` argument.

    Raises
    ------
    ParameterError
        If ``progress`` is none of None, True, False, ``"bar"`` and ``"lines"``.
    """
    if progress is None:
        return "bar" if _stderr_is_terminal() else None
    if progress is True:
        return "bar"
    if progress is False:
        return None
    if isinstance(progress, str) and progress in PROGRESS_MODES:
        return progress
    raise ParameterError(f"progress must be None (a bar when stderr is a terminal), True, "
                         f"False, 'bar' or 'lines', got {progress!r}")


class Progress:
    """An iterable over a loop that reports its progress as :func:`progress_bar` chose.

    It offers the parts of tqdm's interface matfact uses: iteration,
    :meth:`update`, :meth:`set_postfix`, :meth:`set_postfix_str` and
    :meth:`close` (also as a context manager).
    """

    def __init__(self, iterable: Iterable | None, *, mode: str | None, desc: str,
                 total: int | None, unit: str, interval: float) -> None:
        self.mode, self.desc, self.unit, self.interval = mode, desc, unit, interval
        self.iterable = iterable
        self.total = total if total is not None or iterable is None else _length(iterable)
        self.n = 0
        self.postfix = ""
        self.start = time.monotonic()
        self.last_line: float | None = None
        self._written = 0  # the count of the last plain line
        self.closed = False
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(iterable, desc=desc, total=total, unit=unit, leave=False)

    def __iter__(self) -> Iterator:
        if self.bar is not None:
            yield from self.bar
            return
        try:
            for value in self.iterable if self.iterable is not None else ():
                yield value
                self.update()
        finally:  # the end of the loop, or a break: the last count is written
            self.close()

    def update(self, n: int = 1) -> None:
        """``n`` more steps done."""
        if self.bar is not None:
            self.bar.update(n)
            return
        self.n += n
        if self.mode == "lines":
            now = time.monotonic()
            if self.last_line is None or now - self.last_line >= self.interval \
                    or (self.total is not None and self.n >= self.total):
                self._line(now)

    def set_postfix(self, **values: Any) -> None:
        """Figures shown after the count, e.g. ``train=0.9123``."""
        if self.bar is not None:
            self.bar.set_postfix(**values)
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def set_postfix_str(self, text: str) -> None:
        """A text shown after the count, e.g. the model being fitted."""
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        self.postfix = text

    def close(self) -> None:
        """End the bar; in ``"lines"`` mode, write the last count unless it was written."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines" and self.n and self.last_line is not None \
                and self._written != self.n:
            self._line(time.monotonic())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _line(self, now: float) -> None:
        self.last_line, self._written = now, self.n
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        extra = f" ({self.postfix})" if self.postfix else ""
        print(f"{self.desc}: {self.unit} {count}{extra} {now - self.start:.0f} s",
              file=sys.stderr, flush=True)


def _length(iterable: Iterable) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def progress_bar(iterable: Iterable | None = None, *, progress: Any, desc: str,
                 total: int | None = None, unit: str = "iteration",
                 interval: float = LINE_INTERVAL) -> Progress:
    """Wrap a loop so it reports progress as ``progress`` asks (see the module docstring).

    Parameters
    ----------
    iterable : iterable, default=None
        The loop; None for a counter advanced by :meth:`Progress.update`.
    progress : None, bool, "bar" or "lines"
    desc : str
        What runs, e.g. the model's name.
    total : int, default=None
        Steps in all (``len(iterable)`` by default).
    unit : str, default="iteration"
        What one step is, in the plain lines (``"ALS: iteration 3/15"``).
    interval : float, default=LINE_INTERVAL
        The fewest seconds between two plain lines.

    Returns
    -------
    Progress
    """
    return Progress(iterable, mode=progress_mode(progress), desc=desc, total=total, unit=unit,
                    interval=interval)
