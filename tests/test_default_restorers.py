"""The shipped blind denoiser meets issue 10's mark on a test set it never saw.

CBSD68 (68 images), Gaussian noise added in float with numpy's generator seeded 0 (as the official test does):
RGB PSNR at least CBM3D's 33.52 / 30.71 / 27.38 dB at sigma 15 / 25 / 50. Scored by the code that writes the
table in bench/RESULTS.md (bench/eval_restore.py), so the recorded figures and this check cannot drift apart.
About 11 minutes per level on the 2-core CI machine: 34 of the suite's 46 minutes in the clean-clone run of
2026-12-02 (a SwinIR-S pass over a 481x321 image takes about 10 s there).

The blind JPEG model's mark (LIVE1, at least 1.2 dB above the JPEG input at quality 10-40) is not met yet
(bench/RESULTS.md, seventh and eighth sessions), so it has no check here yet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import swinir
from bench import eval_restore

CBM3D_CBSD68 = {15: 33.52, 25: 30.71, 50: 27.38}


@pytest.fixture(scope="module")
def cbsd68() -> Path:
    folder = eval_restore.DEFAULT_DATA / "CBSD68"
    if not folder.is_dir():
        pytest.skip(f"../shared/data not present ({folder}); the quality check needs the CBSD68 test set")
    return folder


@pytest.fixture(scope="module")
def denoiser() -> swinir.SwinIR:
    return swinir.load_model(swinir.default_model_path("denoise"))


@pytest.mark.parametrize("sigma", sorted(CBM3D_CBSD68))
def test_blind_denoiser_reaches_cbm3d_on_cbsd68(sigma: int, cbsd68: Path, denoiser: swinir.SwinIR) -> None:
    out, noisy, n = eval_restore.score(denoiser, cbsd68, "denoise", sigma)
    assert n == 68
    assert out >= CBM3D_CBSD68[sigma], (
        f"CBSD68 sigma {sigma}: blind denoiser {out:.3f} dB (noisy input {noisy:.3f}), below CBM3D's "
        f"{CBM3D_CBSD68[sigma]} dB"
    )
