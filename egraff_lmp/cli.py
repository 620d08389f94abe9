"""The ``egraff-lmp`` command line: the commands (``egraff_lmp/commands``, one module each)
and the error convention.

Errors in the user's input print one line on stderr and exit with code 2 (``--debug``
shows the traceback instead); JSON and PNG outputs are written atomically.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import EgraffError


def build_parser() -> argparse.ArgumentParser:
    from .commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="egraff-lmp",
        description="Equivariant GNN force fields in LAMMPS, judged against ab-initio MD.")
    parser.add_argument("--version", action="version", version=f"egraff-lmp {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EgraffError as exc:
        if args.debug:
            raise
        print(f"egraff-lmp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("egraff-lmp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
