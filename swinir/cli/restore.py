"""`python -m swinir restore`: restore image files, folders, videos and frame folders with a SwinIR model, here or
over a Ray cluster (the work itself is in `swinir.bulk`)."""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import torch

from ..bulk.local import run_local
from ..bulk.outputs import Outputs
from ..bulk.plan import VIDEO_TO_FRAMES, Job, plan_jobs
from ..bulk.settings import DONE, FAILED, Settings, summary
from ..bulk.video import require_av, resolve_codec
from ..bulk.worker import Worker, tile_note
from ..checkpoint import load_model
from ..describe import describe
from ..devices import default_device, resolve_device
from ..precision import PRECISIONS
from ..errors import SwinIRError
from ..fileutil import sha256_of
from ..model_ref import resolve_model
from .download import DownloadBar
from .options import add_pixel_limit, apply_pixel_limit
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


def _fps(value: str) -> str:
    try:
        rate = Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"--fps takes a rate such as 25 or 30000/1001, not {value!r}") from None
    if rate <= 0:
        raise argparse.ArgumentTypeError("--fps must be positive")
    return str(rate)


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {value!r}")
    return int(value)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "restore",
        help="restore (upscale, denoise, de-JPEG) images, folders, videos and frame folders",
        description="Restore images and videos with a SwinIR model. Without --model the pack's own SwinIR-S x2 "
        "super-resolution model is used. Every output is written to a temporary file and renamed, so an "
        "interrupted run never leaves a partial file; a rerun skips the outputs that are already complete and "
        "never overwrites an output made from another input or with other settings (unless --overwrite).",
    )
    p.add_argument("inputs", nargs="+", type=Path,
                   help="image files (PNG, JPEG, WebP, TIFF, BMP), videos (MP4, MKV, MOV, WebM, AVI...) or folders "
                   "of them; with -o NAME.mp4, one folder of frames (natural order: 2 before 10)")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output folder (created if missing); or a file name for a single image or video "
                   "(clip_x2.mp4: a video, or a frame folder made into one); or a frame pattern such as "
                   "frames/%%06d.png to write a video's frames as images, numbered from 1")
    p.add_argument("--model", default="default",
                   help="checkpoint path (.safetensors/.pth); 'default' (the pack's SwinIR-S x2 upscaler), "
                   "'default-denoise' (its blind denoiser, any sigma 0-50) or 'default-jpeg' (its blind JPEG-artifact "
                   "remover, quality 10-90); or an official model's catalogue or file name (see `download --list`), "
                   "downloaded into --models-dir first if it is not there yet")
    p.add_argument("--models-dir", type=Path,
                   help="where official models are kept and downloaded to (default: ComfyUI's models/swinir when this "
                   "pack is installed in ComfyUI)")
    p.add_argument("--tile", type=_tile, default="auto",
                   help="tile size in input pixels, or 'auto' (default): the whole image when it fits in memory, "
                   "else the largest tile that fits. Tiles are aligned to the model's window and blended seamlessly")
    p.add_argument("--overlap", type=int, default=None,
                   help="pixels shared by neighbouring tiles (default: 4 windows, 32 px for window 8, 28 for window 7)")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                   help="fp32 (default, exact); bf16 (faster on recent GPUs and on CPUs with AMX or AVX-512 BF16, "
                   "several times slower on other CPUs); fp16 (GPU only, tiles that overflow are redone in fp32)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--gray-mode", choices=("luma", "per_channel"), default="luma",
                   help="gray models on colour images: restore the luma and keep the colour (default), or run each "
                   "RGB channel separately")
    p.add_argument("--ext", default=".png", help="output file type of images when -o is a folder (default .png)")
    p.add_argument("--codec", default=None,
                   help="video encoder: libx264 (default; libvpx-vp9 for .webm), libx265, libvpx-vp9, libsvtav1, or "
                   "ffv1 (lossless RGB, in .mkv)")
    p.add_argument("--crf", type=int, default=None,
                   help="video quality, lower is better: constant rate factor of x264/x265/VP9/AV1 (default 18 for "
                   "x264, 20 for x265, 24 for VP9 and AV1: visually near-lossless; 0 is lossless for x264)")
    p.add_argument("--fps", type=_fps, default="25",
                   help="frame rate of a video made from a frame folder (default 25; e.g. 30000/1001)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that exist but were made from another input, with other settings, or not "
                   "by this command (by default they are left alone and reported)")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile (the first tile of each size compiles, minutes on a "
                   "small CPU; see bench/RESULTS.md for when it pays off)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run over a Ray cluster (pip install -r requirements-ray.txt): the cluster at ADDRESS "
                   "(host:port of its head, or 'auto' on a node of it), or without ADDRESS a local cluster on this "
                   "machine. Inputs and outputs must be on storage every node sees at the same path")
    p.add_argument("--actors", type=_count, default=None,
                   help="with --ray: how many model copies work at once (default: one per GPU of the cluster, else "
                   "one per 4 CPUs); each holds the model once and writes its own outputs")
    add_pixel_limit(p)
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(tile=args.tile, overlap=args.overlap, precision=args.precision, device=args.device,
                    gray_mode=args.gray_mode, codec=args.codec, crf=args.crf, fps=args.fps, overwrite=args.overwrite,
                    compile=args.compile, max_pixels=args.max_pixels)


def _wrote(jobs: list[Job], outcomes: list, output: Path) -> str | None:
    """What a run wrote, in one line: the file, or how many files went into which folder."""
    done = [o for o in outcomes if o.status == DONE]
    if not done:
        return None
    frames = sum(o.frames for o in done)
    if len(jobs) == 1 and jobs[0].kind == VIDEO_TO_FRAMES:
        return f"wrote {frames} frames to {output.parent}"
    if len(jobs) == 1 and jobs[0].target == output:
        return f"wrote {output}" + (f" ({frames} frames)" if frames else "")
    return f"wrote {len(done)} file{'s' if len(done) != 1 else ''} to {output}"


def _check_video(jobs: list[Job], settings: Settings) -> None:
    """PyAV present and the encoder usable, before the model is loaded."""
    for job in jobs:
        if job.is_video:
            require_av()
            if job.kind != VIDEO_TO_FRAMES:
                resolve_codec(job.target, settings.codec)


def _bar(index: int, total: int, job: Job) -> ProgressBar:
    label = f"[{index}/{total}] {job.source.name}"
    if job.is_video:
        return ProgressBar(label, unit="frames", rate_unit="fps")
    return ProgressBar(label)


def _model_path(args: argparse.Namespace) -> Path:
    """The checkpoint of --model; an official model not on disk yet is downloaded first, with a progress line."""
    bar = DownloadBar(str(args.model), sys.stderr)
    try:
        return resolve_model(args.model, args.models_dir, download=True, progress=bar)
    finally:
        bar.finish()


def run(args: argparse.Namespace) -> int:
    if args.ray not in (None, "local") and Path(args.ray).exists():
        raise SwinIRError(f"--ray took {args.ray} for the cluster's address: put --ray after the inputs, or write "
                          "--ray=ADDRESS")
    settings = _settings(args)
    apply_pixel_limit(args)
    if args.ray is None:
        resolve_device(args.device, default_device())
    jobs = plan_jobs(args.inputs, args.output, args.ext)
    _check_video(jobs, settings)
    model_path = _model_path(args)
    if args.ray is not None:
        from ..bulk.ray_runner import run_on_ray  # Ray only when asked for: it is an optional extra

        outcomes = run_on_ray(jobs, model_path, settings, address=args.ray, actors=args.actors,
                              progress=ProgressBar("ray", unit="tasks"), log=lambda line: print(line, file=sys.stderr))
    else:
        model = load_model(model_path)
        print(f"model: {describe(model.config)}", file=sys.stderr)
        if note := tile_note(settings.tile, model.config.window_size):
            print(note, file=sys.stderr)
        outputs = Outputs(settings, model_path.name, sha256_of(model_path), model.config.scale)
        with torch.inference_mode():
            outcomes = run_local(jobs, Worker(model, outputs), lambda i, job: _bar(i, len(jobs), job))
    failures = [o for o in outcomes if o.status == FAILED]
    for failure in failures:
        print(f"error: {failure.message}", file=sys.stderr)
    if len(jobs) > 1 or any(o.status != DONE for o in outcomes):
        print(summary(outcomes), file=sys.stderr)
    if wrote := _wrote(jobs, outcomes, args.output):
        print(wrote)
    if failures:
        others = len(outcomes) - len(failures)
        print(f"{len(failures)} of {len(outcomes)} input{'s' if len(outcomes) != 1 else ''} failed"
              + (f"; the other{'s are' if others != 1 else ' is'} complete" if others else ""), file=sys.stderr)
        return 1
    return 0
