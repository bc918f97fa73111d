"""Command line: `python -m swinir {restore,convert,download,train} ...`."""

from __future__ import annotations

import argparse
import sys

from . import cli_convert, cli_download, cli_restore, cli_train
from .errors import SwinIRError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m swinir", description="SwinIR image restoration.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (cli_restore, cli_convert, cli_download, cli_train):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SwinIRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
