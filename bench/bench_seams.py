"""Seams: tiled vs whole-image output of the default model, ours vs ComfyUI's `tiled_scale`, side by side.

For each Set14 x2 LR image, the tile is the largest window multiple that still splits the image at least 2x2.
Ours runs at its default overlap; ComfyUI's tiler (what "Upscale Image (using Model)" uses, 512 px tiles with
32 px overlap) runs with the same tile and the same overlap/tile ratio (1/16), on the same model. The figure is
PSNR(tiled, whole) in dB over the whole RGB output: higher means fewer seams.

    python -m bench.bench_seams [--data ../shared/data] [--images N]
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

import swinir  # noqa: E402
from swinir.engine import default_overlap  # noqa: E402
from swinir.imageio import read_image  # noqa: E402

from testkit.comfy_path import import_comfy_utils  # noqa: E402


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--images", type=int, default=14)
    args = ap.parse_args()
    comfy_utils = import_comfy_utils()
    model = swinir.load_model(swinir.default_model_path())
    w = model.config.window_size
    files = sorted((args.data / "Set14" / "LR_bicubic" / "X2").glob("*.png"))[: args.images]
    print("| image | size | tile | ours overlap | ours PSNR dB | ComfyUI overlap | ComfyUI PSNR dB |")
    print("|---|---|---|---|---|---|---|")
    ours_all, comfy_all = [], []
    for f in files:
        pixels, _ = read_image(f)
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1).contiguous()
        h, wd = x.shape[-2:]
        tile = max(w * 4, (min(h, wd) - 1) // w * w // 2 + w)  # < half the short side rounded: >= 2x2 tiles
        tile = min(tile, (min(h, wd) - 1) // w * w)
        while math.ceil(h / tile) < 2 or math.ceil(wd / tile) < 2:
            tile -= w
        whole = swinir.restore(model, x, tile=max(h, wd) + w)
        ours = swinir.restore(model, x, tile=tile)
        comfy_overlap = max(1, tile // 16)
        with torch.inference_mode():
            theirs = comfy_utils.tiled_scale(
                x, lambda a: model(a), tile_x=tile, tile_y=tile, overlap=comfy_overlap,
                upscale_amount=model.config.scale,
            ).clamp(0, 1)
        p_ours, p_comfy = psnr(ours, whole), psnr(theirs, whole)
        ours_all.append(p_ours)
        comfy_all.append(p_comfy)
        print(f"| {f.stem} | {wd}x{h} | {tile} | {default_overlap(w)} | {p_ours:.2f} | {comfy_overlap} | {p_comfy:.2f} |",
              flush=True)
    print(f"| **mean** | | | | **{statistics.mean(ours_all):.2f}** | | **{statistics.mean(comfy_all):.2f}** |")
    print(f"| **min** | | | | **{min(ours_all):.2f}** | | **{min(comfy_all):.2f}** |")


if __name__ == "__main__":
    main()
