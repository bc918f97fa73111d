"""Writes docs/before_after.png: bicubic x2 (left) vs the default model x2 (right) on samples/chelsea_lr.png."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import swinir  # noqa: E402
from swinir.training.imresize import imresize_uint8  # noqa: E402


def main() -> None:
    lr = np.array(Image.open(ROOT / "samples" / "chelsea_lr.png").convert("RGB"))
    bicubic = imresize_uint8(lr, 2)
    model = swinir.load_model(swinir.default_model_path())
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    sr = (swinir.restore(model, x)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    h, w = bicubic.shape[:2]
    crop = (slice(h // 4, h // 4 + 160), slice(w // 2 - 40, w // 2 + 200))  # the cat's eye and whiskers
    left, right = Image.fromarray(bicubic[crop]), Image.fromarray(sr[crop])
    left, right = (im.resize((im.width * 2, im.height * 2), Image.NEAREST) for im in (left, right))
    canvas = Image.new("RGB", (left.width * 2 + 8, left.height), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + 8, 0))
    draw = ImageDraw.Draw(canvas)
    for text, xpos in (("bicubic x2", 6), ("SwinIR-S x2 (default model)", left.width + 14)):
        draw.rectangle((xpos - 4, 4, xpos + 8 + 7 * len(text), 22), fill="black")
        draw.text((xpos, 7), text, fill="white")
    out = ROOT / "docs" / "before_after.png"
    out.parent.mkdir(exist_ok=True)
    canvas.save(out, optimize=True)


if __name__ == "__main__":
    main()
