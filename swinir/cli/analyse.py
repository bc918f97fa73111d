"""`python -m swinir analyse`: measure each image's noise level and JPEG quality, and say which models fit it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..bulk.plan import collect_inputs
from ..catalogue import load_catalogue
from ..download import default_models_dir
from ..errors import SwinIRError
from ..estimate import DENOISE_THRESHOLD, estimate_degradation, jpeg_file_quality, recommend
from ..imageio import IMAGE_SUFFIXES, read_image
from ..model_ref import default_model_paths
from .options import add_pixel_limit, apply_pixel_limit


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyse",
        aliases=["analyze"],
        help="measure noise and JPEG quality of images and recommend the models to restore them",
        description="For each image: the noise sigma (0-255 scale) and the JPEG quality measured from the pixels "
        "(and, for a JPEG file, the quality its own quantisation tables say), then the pipeline that fits it: JPEG "
        "cleanup when a block grid is found, denoising when sigma is above the threshold, then the upscale, each "
        "with the best model available and the reason. One line per image; a file that cannot be read is named "
        "and the others are still analysed (exit code 1).",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders of them")
    p.add_argument("--scale", type=float, default=1.0, help="target upscale factor of the pipeline (default 1: none)")
    p.add_argument("--threshold", type=float, default=DENOISE_THRESHOLD,
                   help=f"denoise only when sigma is above this (default {DENOISE_THRESHOLD:g})")
    p.add_argument("--models-dir", type=Path,
                   help="folder of downloaded official models (default: ComfyUI's models/swinir when installed there)")
    p.add_argument("--any-official", action="store_true",
                   help="recommend from every official model, as if all were downloaded (shows what to download)")
    p.add_argument("--why", action="store_true", help="also print the reason for each step, indented under the line")
    add_pixel_limit(p)
    p.set_defaults(func=run)


def available_models(models_dir: Path | None, any_official: bool) -> list[str]:
    """Model file names the pipeline may use: the pack's defaults, the official files on disk (or all of them)."""
    names = [path.name for path in default_model_paths().values()]
    if any_official:
        return names + [entry.file for entry in load_catalogue()]
    folder = models_dir or default_models_dir()
    if folder is not None and folder.is_dir():
        names += sorted(f.name for f in folder.iterdir() if f.is_file())
    return names


def _images(inputs: list[Path]) -> tuple[list[Path], list[str]]:
    files, failures = [], []
    for item in inputs:
        try:
            found = collect_inputs([item])
        except SwinIRError as e:
            failures.append(str(e))
            continue
        files += [f for f in found if not item.is_dir() or f.suffix.lower() in IMAGE_SUFFIXES]
    return files, failures


def analyse_file(path: Path, scale: float, available: list[str], threshold: float, why: bool) -> str:
    pixels, _ = read_image(path)
    image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]
    found = estimate_degradation(image)[0]
    jpeg = "none" if found.jpeg_quality is None else f"q{found.jpeg_quality}"
    if found.grid_offset not in (None, (0, 0)):
        jpeg += f" (grid offset {found.grid_offset[0]},{found.grid_offset[1]})"
    tables = jpeg_file_quality(path)
    if tables is not None:
        jpeg += f", file tables {tables.description}"
    pipeline = recommend(found, scale, available, threshold)
    line = f"{path}: sigma {found.noise_sigma:.1f}, JPEG {jpeg}{', gray' if found.gray else ''}; {pipeline.summary}"
    extra = list(found.notes) + list(pipeline.notes)
    if extra and not why:
        line += f" ({'; '.join(extra)})"
    if why:
        line += "".join(f"\n    {step.description}" for step in pipeline.steps)
        line += "".join(f"\n    note: {note}" for note in extra)
    return line


def run(args: argparse.Namespace) -> int:
    if args.scale < 1:
        raise SwinIRError(f"--scale must be 1 or more, got {args.scale:g}")
    apply_pixel_limit(args)
    files, failures = _images(args.inputs)
    available = available_models(args.models_dir, args.any_official)
    analysed = 0
    for path in files:
        try:
            print(analyse_file(path, args.scale, available, args.threshold, args.why), flush=True)
            analysed += 1
        except SwinIRError as e:
            failures.append(str(e))
        except MemoryError:
            failures.append(f"{path}: too large to analyse in the memory available; use a smaller image")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} input{'s' if len(failures) != 1 else ''} could not be analysed"
              + (f"; the other{'s were' if analysed != 1 else ' was'}" if analysed else ""), file=sys.stderr)
        return 1
    return 0
