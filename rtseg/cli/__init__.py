"""Command line: ``rtseg <command>`` or ``python -m rtseg <command>``.

Every command is a thin layer over the library (:mod:`rtseg.api`, :mod:`rtseg.bench`,
:func:`rtseg.export`). One error handler for all: a user's mistake (a bad argument, a missing
or corrupt file, an unknown key, model or data problem: :class:`rtseg.errors.RtsegError`, or an
operating-system error on a named file) prints one line ``rtseg <command>: error: ...`` and
exits with status 2; anything else is a defect and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import RtsegError, RunInterrupted, one_line
from . import bench, convert, data, export, infer, info, train

COMMANDS = (info, train, infer, data, bench, export, convert)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other rtseg error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rtseg", description="Low-latency semantic segmentation: train, "
                    "evaluate, predict, benchmark and export.")
    parser.add_argument("--version", action="version", version=f"rtseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the command's name, not the top-level parser's
        print(f"rtseg {args.command}: error: unrecognized arguments: {' '.join(extra)} "
              f"(see rtseg {args.command} --help)", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except RunInterrupted as e:
        print(f"rtseg {args.command}: {e}", file=sys.stderr)
        return 128 + e.signum
    except RtsegError as e:
        message = str(e)
    except OSError as e:
        if e.filename is None:
            raise
        message = f"{e.filename}: {e.strerror or e}"
    except KeyboardInterrupt:
        print(f"rtseg {args.command}: interrupted", file=sys.stderr)
        return 130
    print(f"rtseg {args.command}: error: {one_line(message)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
