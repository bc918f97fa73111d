"""The shipped blind denoiser and JPEG remover meet issue 10's marks on test sets they never saw.

CBSD68 (68 images), Gaussian noise added in float with numpy's generator seeded 0 (as the official test does):
RGB PSNR at least CBM3D's 33.52 / 30.71 / 27.38 dB at sigma 15 / 25 / 50. Scored by the code that writes the
table in bench/RESULTS.md (swinir/training/evaluate.py), so the recorded figures and this check cannot drift apart.
About 11 minutes per level on the 2-core CI machine, most of the full suite's time (a SwinIR-S pass over a
481x321 image takes about 10 s there).

The blind JPEG model's mark is at least 1.2 dB above the JPEG input on colour LIVE1 at every quality 10-40; the
shipped export meets it at all four (+1.23 dB at q 10, bench/RESULTS.md). LIVE1 is re-scored
here at q 10 only: it is the hardest level (the smallest gain of the four), and each LIVE1 level costs as much CI
time as a CBSD68 one. All four qualities get a floor instead: the gains on classic5 (luma, five 512x512 images,
about two minutes per quality on the CI machine) as recorded in bench/RESULTS.md, so a re-export that restores less
than the shipped file fails here, and one that restores more must record its figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import swinir
from shared_data import DATA, need
from swinir.training import evaluate

CBM3D_CBSD68 = {15: 33.52, 25: 30.71, 50: 27.38}
# Whole test sets, most of the full suite's time. The quick tier scores the default models on a few images
# (test_default_quality.py).
pytestmark = pytest.mark.full
JPEG_MARK_DB = 1.2  # gain over the JPEG input on LIVE1 (ARCNN's on gray LIVE1 at q 10)
# The shipped JPEG default's gain over the JPEG input on classic5, dB, as recorded (rounded to 0.01).
JPEG_CLASSIC5_RECORDED = {10: 1.23, 20: 1.24, 30: 1.19, 40: 1.12}


def set_folder(name: str) -> Path:
    return need(DATA / name, f"the quality checks need the {name} test set")


@pytest.fixture(scope="module")
def denoiser() -> swinir.SwinIR:
    return swinir.load_model(swinir.default_model_path("denoise"))


@pytest.mark.parametrize("sigma", sorted(CBM3D_CBSD68))
def test_blind_denoiser_reaches_cbm3d_on_cbsd68(sigma: int, denoiser: swinir.SwinIR) -> None:
    out, noisy, n = evaluate.score(denoiser, set_folder("CBSD68"), "denoise", sigma)
    assert n == 68
    assert out >= CBM3D_CBSD68[sigma], (
        f"CBSD68 sigma {sigma}: blind denoiser {out:.3f} dB (noisy input {noisy:.3f}), below CBM3D's "
        f"{CBM3D_CBSD68[sigma]} dB"
    )


@pytest.fixture(scope="module")
def jpeg_model() -> swinir.SwinIR:
    return swinir.load_model(swinir.default_model_path("jpeg"))


def test_blind_jpeg_model_reaches_the_mark_on_live1_q10(jpeg_model: swinir.SwinIR) -> None:
    out, jpeg, n = evaluate.score(jpeg_model, set_folder("LIVE1"), "jpeg", 10)
    assert n == 29
    assert out - jpeg >= JPEG_MARK_DB, (
        f"LIVE1 q10: the JPEG default gains {out - jpeg:.3f} dB over its input ({jpeg:.3f} dB), under the "
        f"{JPEG_MARK_DB} dB mark"
    )


@pytest.mark.parametrize("quality", sorted(JPEG_CLASSIC5_RECORDED))
def test_blind_jpeg_model_keeps_its_recorded_gain_on_classic5(quality: int, jpeg_model: swinir.SwinIR) -> None:
    out, jpeg, n = evaluate.score(jpeg_model, set_folder("classic5"), "jpeg", quality)
    assert n == 5
    gain, recorded = out - jpeg, JPEG_CLASSIC5_RECORDED[quality]
    assert gain >= recorded - 0.01, (
        f"classic5 q{quality}: the JPEG default gains {gain:.3f} dB over its input ({jpeg:.3f} dB), under the "
        f"{recorded} dB recorded in bench/RESULTS.md"
    )
