"""Bulk throughput and video memory (issue 13): images per second restored here, locally and over a Ray cluster
with 1 and 2 actors (the cluster's start-up timed apart); frames per second and peak memory of a 720p video at
two lengths, each in a fresh process (memory must not grow with the length).

    python -m bench.bench_bulk                       # the default model, 16 images of 256², 720p at 4 and 12 frames
    python -m bench.bench_bulk --address HOST:PORT   # an existing cluster instead of a local one
    python -m bench.bench_bulk --tiny --json out.json   # a seconds-long rehearsal (tiny random model), for the tests

Images are random noise (speed does not depend on content); the video is synthetic (gradients and a moving
square, x264), restored to x264 at the default CRF with the local runner. Needs `ray[data]` and PyAV.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from testkit.peak_memory import RSS, run_child  # noqa: E402

# One video through the local runner in a fresh interpreter: its own peak RSS (VmHWM), the baseline taken after
# torch, PyAV and the model are loaded and one small frame has been restored (one-off allocations).
VIDEO_CHILD = r"""
import json, sys, time, torch
from pathlib import Path
import numpy as np
import swinir
from swinir.bulk.outputs import Outputs
from swinir.bulk.plan import Job, VIDEO
from swinir.bulk.settings import Settings
from swinir.bulk.worker import Worker
from swinir.fileutil import sha256_of
{rss}
if {threads}:
    torch.set_num_threads({threads})
model_path = Path({model!r})
model = swinir.load_model(model_path)
outputs = Outputs(Settings(tile={tile!r}), model_path.name, sha256_of(model_path), model.config.scale)
worker = Worker(model, outputs)
with torch.inference_mode():
    worker.restore_rgb8(np.zeros((16, 16, 3), np.uint8))
    base = rss()
    t = time.perf_counter()
    outcome = worker.run(Job(Path({source!r}), Path({target!r}), VIDEO))
    seconds = time.perf_counter() - t
assert outcome.status == "done", outcome.message
print(json.dumps(dict(frames=outcome.frames, seconds=seconds, peak=rss(), base=base)))
"""


def tiny_model(folder: Path) -> Path:
    import torch

    import swinir
    from testkit.reference import randomize_

    cfg = swinir.SwinIRConfig(task="lightweight_sr", scale=2, in_chans=3, window_size=8, embed_dim=12, depths=(2,),
                              num_heads=(2,), upsampler="pixelshuffledirect")
    model = swinir.SwinIR(cfg).eval()
    randomize_(model, 0, cfg.img_range, cfg.upsampler)
    with torch.no_grad():
        model.upsample[0].weight.mul_(0.25)
    path = folder / "tiny-x2.safetensors"
    swinir.save_safetensors(model, path)
    return path


def make_images(folder: Path, count: int, size: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def steady_rate(folder: Path) -> float:
    """Images per second between the first and the last output written: the rate once the workers run."""
    times = sorted(p.stat().st_mtime for p in folder.iterdir() if not p.name.startswith("."))
    return rate(len(times) - 1, times[-1] - times[0]) if len(times) > 1 else float("nan")


def bench_images(args, model_path: Path, work: Path) -> dict:
    if not args.address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local cluster listens on 127.0.0.1
    import ray
    import torch

    import swinir
    from swinir.bulk.local import run_local
    from swinir.bulk.outputs import Outputs
    from swinir.bulk.plan import plan_jobs
    from swinir.bulk.ray_runner import run_on_ray
    from swinir.bulk.settings import Settings
    from swinir.bulk.worker import Worker
    from swinir.fileutil import sha256_of

    source = work / "images"
    make_images(source, args.images, args.size)
    settings = Settings(tile=args.tile, device="cpu")
    rows = []

    out = work / "local"
    model = swinir.load_model(model_path)
    worker = Worker(model, Outputs(settings, model_path.name, sha256_of(model_path), model.config.scale))
    jobs = plan_jobs([source], out)
    t = time.perf_counter()
    with torch.inference_mode():
        outcomes = run_local(jobs, worker)
    seconds = time.perf_counter() - t
    assert all(o.status == "done" for o in outcomes), [o.message for o in outcomes if o.message]
    rows.append(dict(mode="local", threads=torch.get_num_threads(), seconds=seconds,
                     images_per_s=rate(len(jobs), seconds), steady_images_per_s=steady_rate(out)))

    t = time.perf_counter()
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - t
    try:
        for actors in args.actors:
            out = work / f"ray{actors}"
            jobs = plan_jobs([source], out)
            t = time.perf_counter()
            outcomes = run_on_ray(jobs, model_path, settings, actors=actors)
            seconds = time.perf_counter() - t
            assert all(o.status == "done" for o in outcomes), [o.message for o in outcomes if o.message]
            rows.append(dict(mode=f"ray, {actors} actor{'s' if actors > 1 else ''}", threads=None, seconds=seconds,
                             images_per_s=rate(len(jobs), seconds), steady_images_per_s=steady_rate(out)))
    finally:
        ray.shutdown()
    return dict(images=args.images, size=args.size, ray_startup_s=startup, rows=rows)


def bench_video(args, model_path: Path, work: Path) -> dict:
    from testkit.video_clips import make_clip

    width, height = (int(v) for v in args.video_size.split("x"))
    rows = []
    for frames in args.lengths:
        source = make_clip(work / f"clip{frames}.mp4", width=width, height=height, frames=frames,
                           rate=Fraction(25), audio="aac")
        child = VIDEO_CHILD.format(rss=RSS, threads=args.threads, model=str(model_path),
                                   tile=args.tile, source=str(source), target=str(work / f"clip{frames}_x2.mp4"))
        r = run_child(child, timeout=24 * 3600)
        rows.append(dict(r, fps=rate(r["frames"], r["seconds"])))
    first, last = rows[0], rows[-1]
    return dict(video_size=args.video_size, rows=rows, peak_growth=last["peak"] / first["peak"] - 1)


def tile_arg(value: str) -> int | str:
    return value if value == "auto" else int(value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="checkpoint (default: the pack's default model)")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--size", type=int, default=256, help="side of the square images")
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    p.add_argument("--address", default=None, help="a running Ray cluster (default: start a local one)")
    p.add_argument("--video-size", default="1280x720")
    p.add_argument("--lengths", type=int, nargs=2, default=[4, 12], help="two video lengths in frames")
    p.add_argument("--tile", type=tile_arg, default="auto", help="tile size (default auto, as the command line)")
    p.add_argument("--threads", type=int, default=0, help="torch threads of the video child (0: torch's default)")
    p.add_argument("--tiny", action="store_true", help="a tiny random model and tiny inputs: a rehearsal")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_bulk_") as tmp:
        work = Path(tmp)
        if args.tiny:
            model_path = tiny_model(work)
            args.images, args.size, args.video_size, args.lengths, args.tile = 4, 24, "48x32", [3, 6], "auto"
        else:
            import swinir

            model_path = Path(args.model) if args.model else swinir.default_model_path()
        images = bench_images(args, model_path, work)
        video = bench_video(args, model_path, work)

    print(f"## Images: {images['images']} of {images['size']}², tile {args.tile}; Ray start-up "
          f"{images['ray_startup_s']:.1f} s (not counted below)\n")
    print("| runner | wall s | images/s (wall) | images/s (first to last output) |")
    print("|---|---|---|---|")
    for r in images["rows"]:
        print(f"| {r['mode']} | {r['seconds']:.1f} | {r['images_per_s']:.3f} | {r['steady_images_per_s']:.3f} |")
    print(f"\n## Video {video['video_size']}, x264 out, tile {args.tile}, each length in a fresh process\n")
    print("| frames | s | fps | peak RSS MiB | base MiB | used (peak - base) MiB |")
    print("|---|---|---|---|---|---|")
    for r in video["rows"]:
        mib = 1 << 20
        print(f"| {r['frames']} | {r['seconds']:.1f} | {r['fps']:.3f} | {r['peak'] / mib:.0f} | {r['base'] / mib:.0f} "
              f"| {(r['peak'] - r['base']) / mib:.0f} |")
    print(f"\npeak RSS growth {video['rows'][0]['frames']} → {video['rows'][-1]['frames']} frames: "
          f"{100 * video['peak_growth']:+.1f} %")
    if args.json:
        args.json.write_text(json.dumps(dict(images=images, video=video), indent=1))


if __name__ == "__main__":
    main()
