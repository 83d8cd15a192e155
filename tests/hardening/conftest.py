"""The hardening profile's case count, printed at the end of the run."""

from __future__ import annotations

import json
import os

from tests.hardening._cases import CASES, CRASHES, REFUSED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not CASES:
        return
    total = sum(CASES.values())
    parts = ", ".join(f"{area} {count} ({REFUSED[area]} refused)"
                      for area, count in sorted(CASES.items()))
    terminalreporter.write_line(f"hardening: {total} generated cases, "
                                f"{sum(CRASHES.values())} crashes; by area: {parts}")
    # For docs/reliability.md: MATFACT_CASES_FILE=path writes the same figures as JSON.
    target = os.environ.get("MATFACT_CASES_FILE")
    if target:
        with open(target, "w", encoding="utf-8") as handle:
            json.dump({"total": total, "by_area": dict(CASES), "refused": dict(REFUSED),
                       "crashes": dict(CRASHES),
                       "exit_status": int(exitstatus)},
                      handle, indent=1)
