"""Options more than one subcommand takes."""

from __future__ import annotations

import argparse

from ..imageio import DEFAULT_MAX_PIXELS, MAX_PIXELS_OPTION, megapixels, set_max_pixels


def megapixel_limit(value: str) -> int:
    """--max-megapixels: a number of megapixels, as a pixel count."""
    try:
        limit = float(value)
    except ValueError:
        limit = 0.0
    if not 0 < limit < float("inf"):
        raise argparse.ArgumentTypeError(f"{MAX_PIXELS_OPTION} takes a positive number, e.g. 400, not {value!r}")
    return max(1, int(limit * 1_000_000))


def add_pixel_limit(p: argparse.ArgumentParser) -> None:
    """--max-megapixels N: the image-bomb guard of every image this command opens (`apply_pixel_limit`)."""
    p.add_argument(MAX_PIXELS_OPTION, dest="max_pixels", type=megapixel_limit, default=DEFAULT_MAX_PIXELS,
                   metavar="N",
                   help=f"largest image to open, in megapixels (default {megapixels(DEFAULT_MAX_PIXELS)}, Pillow's "
                   "guard against image bombs: small files that claim a huge image); raise it to process a genuine "
                   "larger image")


def apply_pixel_limit(args: argparse.Namespace) -> int:
    set_max_pixels(args.max_pixels)
    return args.max_pixels
