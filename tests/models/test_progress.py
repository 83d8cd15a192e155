"""Progress of fits (issue 20): quiet in logs by default, a bar on request, plain lines for logs."""

from __future__ import annotations

import io
import re

import pytest

import matfact
from matfact import _progress
from matfact.exceptions import ParameterError


@pytest.fixture
def data():
    return matfact.make_synthetic(n_users=30, n_items=20, n_ratings=200, rank=2, random_state=0)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_mode_follows_the_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert _progress.progress_mode(None) is None
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert _progress.progress_mode(None) == "bar"
    assert _progress.progress_mode(True) == "bar"
    assert _progress.progress_mode(False) is None
    assert _progress.progress_mode("lines") == "lines"
    with pytest.raises(ParameterError, match="progress must be"):
        _progress.progress_mode("yes")


@pytest.mark.parametrize("model", [matfact.ALS(n_factors=2, max_iter=3, random_state=0),
                                   matfact.BiasedMF(n_factors=2, max_iter=3, random_state=0),
                                   matfact.Baseline(max_iter=3)])
def test_fit_writes_nothing_when_stderr_is_not_a_terminal(capsys, data, model):
    model.fit(data)  # the default: progress=None
    assert capsys.readouterr().err == ""


def test_fit_draws_a_bar_when_forced(capsys, data):
    matfact.ALS(n_factors=2, max_iter=3, random_state=0).fit(data, progress=True)
    assert "ALS" in capsys.readouterr().err


def test_lines_are_plain_and_bounded(capsys, data):
    matfact.ALS(n_factors=2, max_iter=5, random_state=0).fit(data, progress="lines")
    lines = capsys.readouterr().err.splitlines()
    # The first iteration, then none until LINE_INTERVAL seconds have passed, then the last.
    assert [re.sub(r"\(.*\) \d+ s$", "", line).strip() for line in lines] == [
        "ALS: iteration 1/5", "ALS: iteration 5/5"]
    assert "\r" not in "".join(lines) and "train=" in lines[0]


def test_lines_at_most_one_per_interval(capsys, monkeypatch):
    clock = iter([0.0, 0.0, 1.0, 2.0, 11.0, 12.0, 25.0, 26.0, 27.0])
    monkeypatch.setattr(_progress.time, "monotonic", lambda: next(clock))
    bar = _progress.progress_bar(progress="lines", desc="job", total=8, unit="step")
    for _ in range(8):
        bar.update()
    bar.close()
    counts = [line.split()[2] for line in capsys.readouterr().err.splitlines()]
    # Written at t=0 (1st), t=11 (4th), t=25 (6th) and the last (8th): ≥ 10 s apart but the end.
    assert counts == ["1/8", "4/8", "6/8", "8/8"]


def test_bad_progress_fails_before_fitting(data):
    with pytest.raises(ParameterError, match="progress must be"):
        matfact.ALS(n_factors=2, max_iter=1).fit(data, progress="verbose")
