"""Helpers of the command-line tests: sample ratings, running ``main`` in-process."""

from __future__ import annotations

import numpy as np
import pandas as pd

from matfact.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMMANDS = ("demo", "train", "evaluate", "recommend")


def ratings_frame(seed: int = 0, n_users: int = 40, n_items: int = 30,
                  per_user: int = 12) -> pd.DataFrame:
    """Distinct explicit ratings 1-5 with timestamps; user ids 1..n, item ids 101..."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        items = rng.choice(n_items, size=per_user, replace=False) + 101
        for item in items:
            stamp = int(rng.integers(10**9, 2 * 10**9))
            rows.append((user, int(item), int(rng.integers(1, 6)), stamp))
    return pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def first_recommendation(out: str) -> str:
    """The item id of rank 1 in the first table of ``matfact recommend``'s output."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.strip().startswith("----"))
    return lines[rule + 1].split()[1]


def assert_one_error_line(err: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("matfact: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
