"""Writes docs/icon.png, the pack's Comfy Registry icon ([tool.comfy] Icon in pyproject.toml).

A 256 px square of the cat's eye in samples/chelsea_lr.png, split on the diagonal: the input blown up pixel by
pixel (top left) and the default model's x2 output (bottom right).

    .venv/bin/python scripts/make_icon.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import swinir  # noqa: E402

SIDE = 256
EYE = (62, 40, 48)  # left, top, side of the square around the cat's left eye, in chelsea_lr.png pixels


def main() -> None:
    lr = np.array(Image.open(ROOT / "samples" / "chelsea_lr.png").convert("RGB"))
    model = swinir.load_model(swinir.default_model_path())
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    sr = (swinir.restore(model, x)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    left, top, side = EYE
    before = Image.fromarray(lr[top : top + side, left : left + side]).resize((SIDE, SIDE), Image.Resampling.NEAREST)
    after = Image.fromarray(sr[2 * top : 2 * (top + side), 2 * left : 2 * (left + side)]).resize(
        (SIDE, SIDE), Image.Resampling.LANCZOS
    )
    mask = Image.new("L", (SIDE, SIDE), 0)
    ImageDraw.Draw(mask).polygon([(SIDE, 0), (SIDE, SIDE), (0, SIDE)], fill=255)
    icon = Image.composite(after, before, mask)
    ImageDraw.Draw(icon).line([(SIDE, 0), (0, SIDE)], fill=(255, 255, 255), width=4)
    out = ROOT / "docs" / "icon.png"
    icon.save(out, optimize=True)
    print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
