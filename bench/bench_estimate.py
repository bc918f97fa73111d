"""Accuracy and speed of the degradation estimators (`swinir.estimate_degradation`, issue 12).

    python -m bench.bench_estimate                      # everything, Markdown tables for bench/RESULTS.md
    python -m bench.bench_estimate --limit 3 --parts noise jpeg   # a quick look on 3 images per set

Parts:
- noise: sigma error per level (0-50, step 5) on CBSD68 and Kodak24, float noise (`add_gaussian_noise`, neither
  rounded nor clipped) and 8-bit (rounded and clipped to 0-255, as a saved file holds it); also how often a
  noisy never-compressed image is taken for a JPEG.
- jpeg: IJG quality error per quality 10-95 (step 5) on LIVE1, classic5 and Kodak24 (`jpeg_roundtrip`: Pillow,
  4:2:0 for colour), on the grid (no crop) and off it (cropped by a random 1-7 rows and 1-7 columns).
- clean: the share of uncompressed test images reported as no JPEG (Kodak24 are film scans, never JPEG; BSD68's
  originals were JPEGs, so CBSD68 shows what a re-saved JPEG looks like), and their sigma.
- double: JPEGs saved twice at two qualities, on the grid and with a crop in between.
- jpeg-noise: the sigma reported on clean JPEGs (what Auto Restore would see on a compressed photo).
- time: seconds per megapixel for the whole estimate, on LIVE1 and on 2x and 4x enlargements of it.

The marks of issue 12 are checked in the last column of each table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from testkit.data import DATA  # noqa: E402
from swinir.training.degrade import add_gaussian_noise, jpeg_roundtrip  # noqa: E402
from swinir.estimate import Degradation, estimate_degradation  # noqa: E402

PARTS = ("noise", "jpeg", "clean", "double", "jpeg-noise", "time")
SIGMAS = tuple(range(0, 51, 5))
QUALITIES = tuple(range(10, 96, 5))
DOUBLE = ((90, 70), (70, 90), (75, 50), (50, 75), (60, 30), (30, 60), (95, 80), (80, 95))
SUFFIXES = {".png", ".bmp", ".jpg", ".tif"}


def images(data: Path, name: str, limit: int | None) -> list[tuple[str, np.ndarray]]:
    """(file name, uint8 HWC RGB or HW gray) of a test set."""
    folder = data / name
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES) if folder.is_dir() else []
    if not files:
        raise SystemExit(f"no images in {folder}; pass --data DIR (the folder holding {name}/)")
    out = []
    for path in files[:limit]:
        img = Image.open(path)
        out.append((path.name, np.asarray(img if img.mode == "L" else img.convert("RGB"))))
    return out


def estimate(pixels: np.ndarray, scale: float = 255.0) -> Degradation:
    """The public API on one image: HWC or HW, values on the 0-`scale` range."""
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32) / scale)
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    return estimate_degradation(x)[0]


def rng_for(*key: object) -> np.random.Generator:
    """A generator seeded by the key: the same noise and crops on every run."""
    return np.random.default_rng(zlib.crc32("/".join(map(str, key)).encode()))


def crop_offset(img: np.ndarray, key: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Crop 1-7 rows and 1-7 columns: the grid then starts at (8 - rows, 8 - columns)."""
    rows, cols = (int(v) for v in rng_for("crop", key).integers(1, 8, 2))
    return img[rows:, cols:], (8 - rows, 8 - cols)


def stats(errors: list[float]) -> tuple[float, float, float]:
    e = np.asarray(errors, dtype=np.float64)
    return float(np.abs(e).mean()), float(np.abs(e).max()), float(e.mean())


def table_head(title: str, first: str, columns: list[str], last: str | None = None) -> None:
    names = [first, *columns] + ([last] if last else [])
    print(f"### {title}\n")
    print("| " + " | ".join(names) + " |")
    print("|" + "---|" * len(names))


def say(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------


def noise_part(data: Path, sets: list[str], sigmas: list[int], limit: int | None) -> None:
    loaded = {name: images(data, name, limit) for name in sets}
    table_head("Noise sigma error (0-255 scale): mean abs / max abs (signed mean)", "sigma",
               [f"{s} {kind}" for s in sets for kind in ("float", "8-bit")], "marks")
    false_jpeg: Counter = Counter()
    total_noisy: Counter = Counter()
    for sigma in sigmas:
        cells, ok = [], True
        for name in sets:
            for kind in ("float", "8-bit"):
                errors = []
                for file, img in loaded[name]:
                    clean = img.astype(np.float32) / 255.0
                    noisy = add_gaussian_noise(clean, sigma, rng_for(name, file, sigma))
                    if kind == "8-bit":
                        noisy = np.clip(np.round(noisy * 255.0), 0, 255) / 255.0
                    d = estimate(noisy, scale=1.0)
                    errors.append(d.noise_sigma - sigma)
                    if sigma > 0 and kind == "8-bit":
                        total_noisy[name] += 1
                        false_jpeg[name] += d.jpeg_quality is not None
                mean, worst, bias = stats(errors)
                cells.append(f"{mean:.2f} / {worst:.2f} ({bias:+.2f})")
                if sigma == 0:
                    limit_ = 3.0 if name == "Kodak24" else None
                elif kind == "float":
                    limit_ = 0.5
                else:
                    limit_ = 1.0 if sigma <= 25 else 2.0
                if limit_ is not None and mean > limit_:
                    ok = False
            say(f"noise {name} sigma {sigma} done")
        mark = "clean Kodak24 ≤ 3" if sigma == 0 else ("float ≤ 0.5, 8-bit ≤ 1.0" if sigma <= 25 else "float ≤ 0.5, 8-bit ≤ 2.0")
        print(f"| {sigma} | " + " | ".join(cells) + f" | {mark}: {'met' if ok else '**not met**'} |", flush=True)
    print()
    for name in sets:
        if total_noisy[name]:
            print(f"Noisy 8-bit {name} images (sigma 5-50) taken for a JPEG: {false_jpeg[name]} of {total_noisy[name]}.")
    print()


def jpeg_part(data: Path, sets: list[str], qualities: list[int], limit: int | None) -> None:
    loaded = {name: images(data, name, limit) for name in sets}
    table_head("JPEG quality: share within ±2 (exact) · not found · grid right", "quality",
               [f"{s} {kind}" for s in sets for kind in ("on grid", "cropped")], "mark (≥ 95 % within ±2)")
    worst = 100.0
    for q in qualities:
        cells, ok = [], True
        for name in sets:
            for cropped in (False, True):
                within = exact = missing = grid_right = 0
                for file, img in loaded[name]:
                    jpeg = jpeg_roundtrip(img, q)
                    grid = (0, 0)
                    if cropped:
                        jpeg, grid = crop_offset(jpeg, f"{name}/{file}/{q}")
                    d = estimate(jpeg)
                    if d.jpeg_quality is None:
                        missing += 1
                        continue
                    within += abs(d.jpeg_quality - q) <= 2
                    exact += d.jpeg_quality == q
                    grid_right += tuple(d.grid_offset) == grid
                n = len(loaded[name])
                share = 100.0 * within / n
                worst = min(worst, share)
                ok &= share >= 95.0
                cells.append(f"{share:.0f} % ({100.0 * exact / n:.0f} %) · {missing} · {100.0 * grid_right / n:.0f} %")
            say(f"jpeg {name} q{q} done")
        print(f"| {q} | " + " | ".join(cells) + f" | {'met' if ok else '**not met**'} |", flush=True)
    print(f"\nWorst share within ±2 over every quality, set and crop: {worst:.0f} %.\n")


def clean_part(data: Path, sets: list[str], limit: int | None) -> None:
    table_head("Uncompressed images: reported as no JPEG, and their sigma", "set",
               ["images", "no JPEG", "qualities reported", "sigma mean / max"], "mark")
    for name in sets:
        found: Counter = Counter()
        sigmas = []
        loaded = images(data, name, limit)
        for _, img in loaded:
            d = estimate(img)
            found["none" if d.jpeg_quality is None else f"q{d.jpeg_quality}"] += 1
            sigmas.append(d.noise_sigma)
        share = 100.0 * found["none"] / len(loaded)
        reported = ", ".join(f"{k}: {v}" for k, v in sorted(found.items()) if k != "none") or "-"
        mark = f"≥ 95 % no JPEG: {'met' if share >= 95 else '**not met**'}" if name == "Kodak24" else "-"
        print(f"| {name} | {len(loaded)} | {share:.0f} % | {reported} | {np.mean(sigmas):.2f} / {np.max(sigmas):.2f} | {mark} |",
              flush=True)
        say(f"clean {name} done")
    print()


def double_part(data: Path, sets: list[str], limit: int | None) -> None:
    table_head("Double JPEG (saved at q1, then at q2): what the estimate reports", "set",
               ["q1 → q2", "crop between", "within ±2 of q2", "within ±2 of q1", "no JPEG", "other"])
    for name in sets:
        loaded = images(data, name, limit)
        for q1, q2 in DOUBLE:
            for cropped in (False, True):
                counts: Counter = Counter()
                for file, img in loaded:
                    once = jpeg_roundtrip(img, q1)
                    if cropped:
                        once, _ = crop_offset(once, f"double/{name}/{file}")
                    d = estimate(jpeg_roundtrip(once, q2))
                    if d.jpeg_quality is None:
                        counts["none"] += 1
                    elif abs(d.jpeg_quality - q2) <= 2:
                        counts["q2"] += 1
                    elif abs(d.jpeg_quality - q1) <= 2:
                        counts["q1"] += 1
                    else:
                        counts["other"] += 1
                n = len(loaded)
                print(f"| {name} | {q1} → {q2} | {'yes' if cropped else 'no'} | {100 * counts['q2'] / n:.0f} % | "
                      f"{100 * counts['q1'] / n:.0f} % | {100 * counts['none'] / n:.0f} % | {100 * counts['other'] / n:.0f} % |",
                      flush=True)
        say(f"double {name} done")
    print()


def jpeg_noise_part(data: Path, sets: list[str], qualities: list[int], limit: int | None) -> None:
    table_head("Sigma reported on clean JPEGs (no noise added): mean / max", "quality", sets)
    loaded = {name: images(data, name, limit) for name in sets}
    for q in qualities:
        cells = []
        for name in sets:
            s = [estimate(jpeg_roundtrip(img, q)).noise_sigma for _, img in loaded[name]]
            cells.append(f"{np.mean(s):.2f} / {np.max(s):.2f}")
        print(f"| {q} | " + " | ".join(cells) + " |", flush=True)
    print()


def time_part(data: Path, limit: int | None) -> None:
    table_head("Time per megapixel (noise and JPEG together, the public API on a torch tensor)", "images",
               ["size", "wall s per MP mean / max", "CPU s per MP mean"], "mark (wall < 1 s/MP)")
    loaded = images(data, "LIVE1", limit)
    estimate(loaded[0][1])  # warm-up: first-call costs are not per-image costs
    for factor in (1, 2, 4):
        per_mp, cpu_per_mp, sizes = [], [], []
        for file, img in loaded:
            pil = Image.fromarray(img)
            if factor > 1:
                pil = pil.resize((pil.width * factor, pil.height * factor), Image.Resampling.BICUBIC)
            noisy = add_gaussian_noise(np.asarray(pil, dtype=np.float32) / 255.0, 10, rng_for("time", file))
            pixels = jpeg_roundtrip(np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8), 75)
            megapixels = pixels.shape[0] * pixels.shape[1] / 1e6
            start, cpu = time.perf_counter(), time.process_time()
            estimate(pixels)
            per_mp.append((time.perf_counter() - start) / megapixels)
            cpu_per_mp.append((time.process_time() - cpu) / megapixels)
            sizes.append(megapixels)
        ok = max(per_mp) < 1.0
        print(f"| LIVE1 x{factor} (noise 10, JPEG q75), {len(loaded)} | {np.mean(sizes):.2f} MP | "
              f"{np.mean(per_mp):.3f} / {max(per_mp):.3f} | {np.mean(cpu_per_mp):.3f} | "
              f"{'met' if ok else '**not met**'} |", flush=True)
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help=f"folder of the test sets (default {DATA})")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--limit", type=int, default=None, help="images per set (default: all)")
    ap.add_argument("--noise-sets", nargs="+", default=["CBSD68", "Kodak24"])
    ap.add_argument("--jpeg-sets", nargs="+", default=["LIVE1", "classic5", "Kodak24"])
    ap.add_argument("--clean-sets", nargs="+", default=["Kodak24", "CBSD68", "LIVE1", "classic5", "McMaster", "Set12"])
    ap.add_argument("--sigmas", type=lambda s: [int(v) for v in s.split(",")], default=list(SIGMAS))
    ap.add_argument("--qualities", type=lambda s: [int(v) for v in s.split(",")], default=list(QUALITIES))
    args = ap.parse_args(argv)
    print(f"`python -m bench.bench_estimate {' '.join(argv if argv is not None else sys.argv[1:])}`".replace("  ", " "))
    print(f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, numpy {np.__version__}, Pillow {Image.__version__})\n")
    started = time.perf_counter()
    if "noise" in args.parts:
        noise_part(args.data, args.noise_sets, args.sigmas, args.limit)
    if "jpeg" in args.parts:
        jpeg_part(args.data, args.jpeg_sets, args.qualities, args.limit)
    if "clean" in args.parts:
        clean_part(args.data, args.clean_sets, args.limit)
    if "double" in args.parts:
        double_part(args.data, ["LIVE1"], args.limit)
    if "jpeg-noise" in args.parts:
        jpeg_noise_part(args.data, ["LIVE1", "classic5"], args.qualities, args.limit)
    if "time" in args.parts:
        time_part(args.data, args.limit)
    say(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
