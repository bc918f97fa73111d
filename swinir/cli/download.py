"""``python -m swinir download``: list the official checkpoints and fetch one safely."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from ..catalogue import CatalogueEntry, find_entry, load_catalogue
from ..download import DEFAULT_TIMEOUT, default_models_dir, download_file
from ..errors import SwinIRError

__all__ = ["register", "run"]

_PROG = "swinir download"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``download`` subcommand; its ``func`` default is :func:`run`."""
    parser = subparsers.add_parser(
        "download",
        help="download an official SwinIR checkpoint (or --list them)",
        description=(
            "Download an official SwinIR checkpoint (github.com/JingyunLiang/SwinIR, release v0.0), "
            "verify its sha256 where one is known, and move it into place only when complete. "
            "Without --dir the file goes to ComfyUI/models/swinir when this pack is installed "
            "under ComfyUI/custom_nodes."
        ),
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="short name or file name, as shown by --list")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--dir", type=Path, metavar="DIR", help="folder to save into (created if missing)")
    parser.add_argument(
        "--url",
        metavar="URL",
        help="download from this URL instead of the official one, e.g. a mirror; "
        "the catalogue's size and sha256 are still checked",
    )
    parser.add_argument(
        "--sha256",
        metavar="HEX",
        help="expected sha256, for a file whose digest the catalogue does not know",
    )
    parser.add_argument("--force", action="store_true", help="download again even if the file is already there")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up when the server is silent this long (default {DEFAULT_TIMEOUT:g})",
    )
    parser.set_defaults(func=run)


def _mib(size: int | None) -> str:
    return "?" if size is None else f"{size / (1 << 20):.1f} MiB"


def _level(entry: CatalogueEntry) -> str:
    if entry.noise_level is not None:
        return f"noise {entry.noise_level}"
    if entry.jpeg_quality is not None:
        return f"jpeg q{entry.jpeg_quality}"
    return "-"


def _print_table(entries: list[CatalogueEntry], out: TextIO) -> None:
    rows = [("NAME", "TASK", "SCALE", "LEVEL", "SIZE", "SHA256")]
    for entry in entries:
        rows.append(
            (
                entry.name,
                entry.task,
                f"x{entry.scale}",
                _level(entry),
                _mib(entry.size_bytes),
                "known" if entry.sha256 else "unknown",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)


class DownloadBar:
    """One self-overwriting line on stderr; redrawn at most a few times a second."""

    def __init__(self, label: str, stream: TextIO, interval: float = 0.2) -> None:
        self._label = label
        self._stream = stream
        self._interval = interval
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last_draw < self._interval:
            return
        self._last_draw = now
        if total:
            fraction = min(done / total, 1.0)
            filled = int(fraction * 30)
            line = f"{self._label} [{'#' * filled}{'.' * (30 - filled)}] {_mib(done)} / {_mib(total)} {fraction:4.0%}"
        else:
            line = f"{self._label} {_mib(done)}"
        self._stream.write("\r" + line)
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


def _fail(message: str) -> int:
    print(f"{_PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    """Carry out the ``download`` subcommand; return the process exit code."""
    bar: DownloadBar | None = None
    try:
        if args.list:
            _print_table(load_catalogue(), sys.stdout)
            return 0
        if not args.name:
            return _fail("give a model NAME to download, or --list to see the names")
        entry = find_entry(args.name)
        dest_dir = args.dir.expanduser() if args.dir is not None else default_models_dir()
        if dest_dir is None:
            return _fail(
                "no ComfyUI install found around this pack (it is not under ComfyUI/custom_nodes); "
                "pass --dir DIR to choose where to save the checkpoint"
            )
        bar = DownloadBar(entry.file, sys.stderr)
        result = download_file(
            entry,
            dest_dir,
            expected_sha256=args.sha256,
            progress=bar,
            timeout=args.timeout,
            url=args.url,
            force=args.force,
        )
        bar.finish()
    except SwinIRError as exc:
        if bar is not None:
            bar.finish()
        return _fail(str(exc))
    except OSError as exc:
        if bar is not None:
            bar.finish()
        return _fail(f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        if bar is not None:
            bar.finish()
        print(f"{_PROG}: interrupted; no partial file was kept", file=sys.stderr)
        return 130

    state = "already present" if result.skipped else "saved"
    print(f"{state}: {result.path} ({result.size_bytes} bytes)")
    if result.verified:
        print(f"sha256 {result.sha256} (verified)")
    else:
        print(
            f"sha256 {result.sha256} (NOT verified: no published digest is known for {entry.file}; "
            "compare it with a trusted source. It is recorded beside the file, and every later use is checked "
            "against it)"
        )
    return 0
