"""Command line: ``python -m benchmarks {SUITE,all,report} [--quick] [--out DIR]
[--no-docs]``, SUITE one of
:data:`benchmarks.common.SUITES`.

Run it from the repository root (``make bench`` does). Each suite writes
``<out>/<suite>.json`` and, unless ``--no-docs`` or ``--quick``, the page
``docs/benchmarks.md`` is regenerated from the result files in ``<out>``, provided
every suite has one (a suite skipped for lack of data leaves the page as it is).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from benchmarks.common import DOCS_FILE, RESULTS_DIR, SUITES, BenchmarkSkipped, write_results
from benchmarks.report import MissingResults, write_docs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark matfact against peer libraries and regenerate docs/benchmarks.md.",
    )
    parser.add_argument("suite", choices=[*SUITES, "all", "report"],
                        help="a suite, all of them, or 'report' to only rebuild the page")
    parser.add_argument("--quick", action="store_true",
                        help="a reduced run (smoke test): writes <suite>-quick.json and leaves "
                             "the page alone")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR",
                        help=f"directory of the JSON results (default: {RESULTS_DIR})")
    parser.add_argument("--no-docs", action="store_true",
                        help="do not regenerate the page")
    parser.add_argument("--docs", type=Path, default=DOCS_FILE, metavar="FILE",
                        help=f"the page to regenerate (default: {DOCS_FILE})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chosen suites; return the exit status (0 even when a suite is skipped).

    ``report`` exits with 1 when the page cannot be regenerated (a suite has no results).
    """
    args = _parser().parse_args(argv)
    names = [] if args.suite == "report" else list(SUITES) if args.suite == "all" else [args.suite]
    for name in names:
        print(f"# benchmark suite: {name}{' (quick)' if args.quick else ''}", flush=True)
        start = time.perf_counter()
        try:
            result = importlib.import_module(f"benchmarks.{name}").run(quick=args.quick)
        except BenchmarkSkipped as exc:
            print(f"skipped {name}: {exc}", file=sys.stderr)
            continue
        result["elapsed_s"] = time.perf_counter() - start
        print(f"wrote {write_results(result, args.out)}")
    if args.suite == "report" or not (args.no_docs or args.quick):
        try:
            print(f"wrote {write_docs(args.out, args.docs)}")
        except MissingResults as exc:
            print(f"{args.docs} left unchanged: {exc}", file=sys.stderr)
            return 1 if args.suite == "report" else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
