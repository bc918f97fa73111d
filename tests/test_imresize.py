"""MATLAB-compatible imresize: shapes, and bit-exact reproduction of Set5/Set14 LR files."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from shared_data import DATA, need
from swinir.training.imresize import imresize, imresize_uint8



@pytest.mark.parametrize(
    "shape,scale,expected",
    [
        ((3, 10, 12), 0.5, (3, 5, 6)),
        ((2, 3, 7, 9), 1 / 3, (2, 3, 3, 3)),
        ((1, 5, 4), 2.0, (1, 10, 8)),
        ((3, 17, 13), 4.0, (3, 68, 52)),
    ],
)
def test_shape(shape: tuple[int, ...], scale: float, expected: tuple[int, ...]) -> None:
    out = imresize(torch.rand(shape, dtype=torch.float32), scale)
    assert out.shape == expected
    assert out.dtype == torch.float32


def test_constant_image_is_preserved() -> None:
    # Weights are normalised per output pixel, so a flat image stays flat.
    x = torch.full((3, 20, 16), 0.25, dtype=torch.float64)
    for scale in (0.5, 1 / 3, 0.25, 2.0, 3.0):
        out = imresize(x, scale)
        assert torch.allclose(out, torch.full_like(out, 0.25), atol=1e-12)


def test_uint8_rejects_float() -> None:
    with pytest.raises(ValueError):
        imresize_uint8(np.zeros((4, 4), dtype=np.float32), 0.5)


def _lr_cases() -> list[tuple[str, int]]:
    return [(s, x) for s in ("Set5", "Set14") for x in (2, 3, 4)]


@pytest.mark.parametrize("set_name,scale", _lr_cases())
def test_reproduces_benchmark_lr(set_name: str, scale: int) -> None:
    hr_dir = need(DATA / set_name / "HR", f"the benchmark LR check needs {set_name}")
    hr_files = sorted(hr_dir.glob("*.png"))
    assert hr_files, f"{hr_dir} has no PNG files"
    for hr_path in hr_files:
        hr = Image.open(hr_path)
        mode = "L" if hr.mode == "L" else "RGB"
        hr_arr = np.asarray(hr.convert(mode))
        h, w = hr_arr.shape[:2]
        hr_arr = hr_arr[: h - h % scale, : w - w % scale]
        lr_path = DATA / set_name / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"
        lr_ref = np.asarray(Image.open(lr_path).convert(mode))
        lr = imresize_uint8(hr_arr, 1 / scale)
        assert lr.shape == lr_ref.shape, hr_path.name
        diff = np.abs(lr.astype(np.int16) - lr_ref.astype(np.int16))
        assert diff.max() == 0, f"{hr_path.name}: max diff {diff.max()}, {np.count_nonzero(diff)} px"
