"""The ``tumblebench`` command line.

Each sub-command lives in its own module under :mod:`tumblebench.validation.commands` and provides
``add_parser(subparsers)``, which registers the sub-command and sets ``func(args) -> int`` as its default.
Bad arguments and :class:`~tumblebench.simulator.errors.TumblebenchError` print one line to stderr and exit 2.
A failure of the file system while writing (a full disk, an I/O error) prints one line and exits 1. Ctrl-C
(SIGINT) exits 130 and SIGTERM exits 143; in every case the outputs unwind as a unit (the old output is kept,
the partial one removed, worker processes ended).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from typing import Any

from tumblebench.simulator import __version__
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.validation.commands import COMMANDS
from tumblebench.validation.commands.config_option import ConfigHelpFormatter


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2, and whose help shows each
    config-backed option's dataclass default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", ConfigHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``with`` block unwinds as it does for Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Terminated()


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered sub-command."""
    parser = _Parser(
        prog="tumblebench",
        description="Known-truth testbed for Brownian one-particle reconstruction of tumbling nanocrystals.",
    )
    parser.add_argument("--version", action="version", version=f"tumblebench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"tumblebench.validation.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tumblebench``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return int(args.func(args) or 0)
    except TumblebenchError as exc:
        message = " ".join(str(exc).splitlines())  # always one line, whatever a library put in the message
        sys.stderr.write(f"tumblebench {args.command}: error: {message}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"tumblebench {args.command}: interrupted; nothing was written\n")
        return 130
    except Terminated:
        sys.stderr.write(f"tumblebench {args.command}: terminated (SIGTERM); nothing was written\n")
        return 143
    except OSError as exc:  # the file system failed under a running command: a full disk, an I/O error
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"tumblebench {args.command}: error: {where}{exc.strerror or exc}; nothing was written\n")
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


if __name__ == "__main__":
    raise SystemExit(main())
