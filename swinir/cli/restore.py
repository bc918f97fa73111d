"""`python -m swinir restore`: restore image files or folders with a SwinIR model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_model
from ..describe import describe
from ..engine import PRECISIONS, resolve_device, restore
from ..errors import SwinIRError
from ..imageio import IMAGE_SUFFIXES, read_image, write_image
from ..model_ref import resolve_model
from .progress import ProgressBar


def _tile(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tile takes 'auto' or a size in pixels, not {value!r}") from None
    if size < 0:
        raise argparse.ArgumentTypeError("--tile must be positive")
    return size or "auto"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "restore",
        help="restore (upscale, denoise, de-JPEG) image files or folders",
        description="Restore images with a SwinIR model. Without --model the pack's own SwinIR-S x2 "
        "super-resolution model is used. Every output is written to a temporary file and renamed, so an "
        "interrupted run never leaves a partial image.",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="image files (PNG, JPEG, WebP, TIFF, BMP) or folders of them")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output folder (created if missing), or a file name when restoring a single image")
    p.add_argument("--model", default="default",
                   help="checkpoint path (.safetensors/.pth), a catalogue name (see `download --list`) already "
                   "downloaded, or 'default' (the pack's SwinIR-S x2)")
    p.add_argument("--models-dir", type=Path, help="where downloaded catalogue models are (default: ComfyUI's models/swinir)")
    p.add_argument("--tile", type=_tile, default="auto",
                   help="tile size in input pixels, or 'auto' (default): the whole image when it fits in memory, "
                   "else the largest tile that fits. Tiles are aligned to the model's window and blended seamlessly")
    p.add_argument("--overlap", type=int, default=None,
                   help="pixels shared by neighbouring tiles (default: 4 windows, 32 px for window 8, 28 for window 7)")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                   help="fp32 (default, exact); bf16 (faster on recent GPUs); fp16 (GPU only, tiles that overflow are "
                   "redone in fp32)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--gray-mode", choices=("luma", "per_channel"), default="luma",
                   help="gray models on colour images: restore the luma and keep the colour (default), or run each "
                   "RGB channel separately")
    p.add_argument("--ext", default=".png", help="output file type when -o is a folder (default .png)")
    p.set_defaults(func=run)


def collect_inputs(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(f for f in item.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SwinIRError(f"{item}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise SwinIRError(f"{item}: no such file or folder")
    return files


def output_paths(files: list[Path], output: Path, ext: str) -> dict[Path, Path]:
    """Where each input is written. Inputs that would share a name (photo.png and photo.jpg) keep their
    extension in the name (photo_png.png, photo_jpg.png) instead of overwriting each other."""
    if len(files) == 1 and output.suffix.lower() in IMAGE_SUFFIXES:
        output.parent.mkdir(parents=True, exist_ok=True)
        return {files[0]: output}
    output.mkdir(parents=True, exist_ok=True)
    ext = ext if ext.startswith(".") else "." + ext
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem] = stems.get(f.stem, 0) + 1
    targets: dict[Path, Path] = {}
    for f in files:
        name = f.stem if stems[f.stem] == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}"
        target = output / (name + ext)
        n = 1
        while target in targets.values():
            target = output / f"{name}_{n}{ext}"
            n += 1
        targets[f] = target
    return targets


def run(args: argparse.Namespace) -> int:
    files = collect_inputs(args.inputs)
    device = resolve_device(args.device, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_model(resolve_model(args.model, args.models_dir))
    targets = output_paths(files, args.output, args.ext)
    print(f"model: {describe(model.config)}", file=sys.stderr)
    failures: list[str] = []
    for index, source in enumerate(files, 1):
        bar = ProgressBar(f"[{index}/{len(files)}] {source.name}")
        try:
            pixels, bits = read_image(source)
            x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]
            y = restore(model, x, tile=args.tile, overlap=args.overlap, precision=args.precision, device=device,
                        progress=bar.update, gray_mode=args.gray_mode)
            write_image(targets[source], y[0].permute(1, 2, 0).numpy(), bits=bits)
        except SwinIRError as e:
            failures.append(str(e))
        except OSError as e:
            failures.append(f"{targets[source]}: cannot write ({e.strerror or e}); check the output folder")
        finally:
            bar.close()
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {len(files)} images failed; the others were written", file=sys.stderr)
        return 1
    return 0
