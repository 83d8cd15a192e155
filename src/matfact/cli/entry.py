"""``main``: parse the command line, run the command, and report errors in one line.

Errors never show a traceback: each prints one line ``matfact: error: ...``
to stderr and exits with status 2 (bad usage) or 1 (anything that failed at
run time), or 130 after Ctrl-C. Set ``MATFACT_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import os
import sys
import warnings

from matfact.cli.output import PROG, Output
from matfact.cli.parser import build_parser
from matfact.exceptions import MatfactError, MatfactWarning, UsageError

__all__ = ["main"]

_EXIT_RUNTIME = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130


def _error_message(err: BaseException) -> str:
    if isinstance(err, OSError) and not isinstance(err, MatfactError) and err.strerror \
            and err.filename and not isinstance(err, FileNotFoundError):
        return f"{err.strerror}: {err.filename}"
    if isinstance(err, FileNotFoundError) and err.strerror and err.filename:
        return f"no such file or directory: {err.filename}"
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError) and not isinstance(err, MatfactError) and len(err.args) == 1:
        text = f"missing key {err.args[0]!r}"
    return " ".join(text.split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    prefix = "" if issubclass(category, MatfactWarning) else f"{category.__name__}: "
    text = " ".join(str(message).split())
    print(f"{PROG}: warning: {prefix}{text}", file=sys.stderr)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the ``matfact`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status: 0 on success, 1 when the command failed, 2 for bad
        usage, 130 when interrupted.
    """
    debug = os.environ.get("MATFACT_DEBUG", "").strip() not in ("", "0")
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            args = build_parser().parse_args(argv)
            if args.command is None:
                raise UsageError("no command given; choose one of demo, train, evaluate, "
                                 "recommend, serve, retrain, topics, images (see "
                                 "'matfact --help')")
            return int(args.handler(args, Output(bool(args.quiet))) or 0)
        except SystemExit as exit_:  # --help and --version
            return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None
                                                                    else _EXIT_USAGE)
        except UsageError as err:
            if debug:
                raise
            return _fail(str(err), _EXIT_USAGE)
        except KeyboardInterrupt:
            if debug:
                raise
            print(file=sys.stderr)
            return _fail("interrupted", _EXIT_INTERRUPTED)
        except BrokenPipeError:  # e.g. `matfact recommend ... | head`
            _silence_stdout()
            return _EXIT_RUNTIME
        except (MatfactError, OSError, ValueError, KeyError, MemoryError) as err:
            if debug:
                raise
            return _fail(_error_message(err), _EXIT_RUNTIME)
        except Exception as err:  # a bug: still one line, with the way to the traceback
            if debug:
                raise
            return _fail(f"unexpected {type(err).__name__}: {_error_message(err)} (set "
                         f"MATFACT_DEBUG=1 for the traceback)", _EXIT_RUNTIME)


def _silence_stdout() -> None:
    """After EPIPE, point stdout at devnull so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
