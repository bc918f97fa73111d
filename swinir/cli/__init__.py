"""Command line: `python -m swinir {restore,convert,download,train} ...`, one module per subcommand."""

from __future__ import annotations

import argparse
import sys

from . import analyse, convert, download, restore, train
from ..errors import SwinIRError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swinir", description="SwinIR image restoration.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (restore, convert, download, train):
        module.register(sub)
    analyse.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SwinIRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        # What the commands do not name themselves (a folder that vanished mid-run, a disk gone read-only).
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}; check that path and its permissions", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
