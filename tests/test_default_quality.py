"""The quick tier's quality check of the three default models: a few fixed images each, scored against recorded
per-image PSNR, so that a changed network, engine or weight file fails within seconds.

The marks on whole test sets (test_default_model.py, test_default_restorers.py) run in the full suite. Here each
model restores three small images from ../shared/data (x2: whole Set5/Set14 LR images, PSNR-Y at border 2, as
swinir/training/evaluate.py scores; denoise and JPEG: 128x128 centre crops degraded and scored as it does,
RGB PSNR, or luma for classic5's gray image), and each score must be its recorded value in
default_quality.json within TOLERANCE_DB. The table also records the SHA-256 of the weight files it was scored
with, so any change to a default model's file fails even where it moves no score by TOLERANCE_DB. A new export
re-records the table in the same commit:

    .venv/bin/python tests/test_default_quality.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # run as a script to re-record: make the checkout and the test helpers importable
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import swinir  # noqa: E402
from shared_data import DATA, need  # noqa: E402
from swinir.model_ref import DEFAULT_MODELS  # noqa: E402
from swinir.training import evaluate  # noqa: E402
from swinir.training.metrics import psnr, psnr_y  # noqa: E402

RECORDED = Path(__file__).with_name("default_quality.json")
# The same weights score the same to 1e-5 dB on one or two threads (fp32 on the CPU); the margin is for other CPUs'
# kernels. Noise of 1% of each weight matrix's spread moves the denoiser's scores by 0.001-0.006 dB; smaller changes
# to a file are caught by its digest.
TOLERANCE_DB = 0.001
CROP = 128


@dataclass(frozen=True)
class Case:
    family: str  # 'sr', 'denoise' or 'jpeg' (swinir.model_ref.DEFAULT_MODELS)
    image: str  # path under ../shared/data (for SR: the HR file; its LR is LR_bicubic/X2/<stem>x2.png)
    level: int  # the scale, the noise sigma or the JPEG quality

    @property
    def id(self) -> str:
        return f"{self.family}/{self.image}@{self.level}"


CASES = [
    Case("sr", "Set5/HR/bird.png", 2),
    Case("sr", "Set5/HR/butterfly.png", 2),
    Case("sr", "Set14/HR/comic.png", 2),
    Case("denoise", "CBSD68/101085.png", 15),
    Case("denoise", "CBSD68/102061.png", 25),
    Case("denoise", "CBSD68/105025.png", 50),
    Case("jpeg", "LIVE1/bikes.bmp", 10),
    Case("jpeg", "LIVE1/caps.bmp", 30),
    Case("jpeg", "classic5/barbara.bmp", 20),
]


@lru_cache(maxsize=None)
def _model(family: str) -> swinir.SwinIR:
    return swinir.load_model(swinir.default_model_path(family))


@lru_cache(maxsize=None)
def _upscaler() -> evaluate.Upscaler:
    return evaluate.model_upscaler(str(swinir.default_model_path("sr")))


def _centre_crop(img: np.ndarray) -> np.ndarray:
    top, left = (img.shape[0] - CROP) // 2, (img.shape[1] - CROP) // 2
    return np.ascontiguousarray(img[top : top + CROP, left : left + CROP])


def score(case: Case) -> float:
    """The case's PSNR in dB, from the pack's default model of its family."""
    path = need(DATA / case.image, f"the quick quality check of the default models needs {case.image}")
    if case.family == "sr":
        hr = evaluate.modcrop(evaluate.load_uint8(path), case.level)
        lr = evaluate.load_uint8(path.parent.parent / "LR_bicubic" / f"X{case.level}" / f"{path.stem}x{case.level}.png")
        return float(psnr_y(_upscaler()(lr, case.level), hr, case.level))
    clean = _centre_crop(evaluate.load_uint8(path))
    x = evaluate.degrade(clean, case.family, case.level)
    return float(psnr(evaluate.run_model(_model(case.family), x), clean))


def recorded() -> dict[str, float]:
    return json.loads(RECORDED.read_text())["psnr_db"]


def weight_digests() -> dict[str, str]:
    return {
        family: hashlib.sha256(swinir.default_model_path(family).read_bytes()).hexdigest()
        for family in sorted(DEFAULT_MODELS)
    }


def test_the_table_was_recorded_with_the_shipped_weights() -> None:
    assert json.loads(RECORDED.read_text())["weights_sha256"] == weight_digests(), (
        "a default model's file changed since tests/default_quality.json was recorded; a new export re-records it "
        "with `python tests/test_default_quality.py` in the same commit"
    )


def test_the_recorded_table_covers_every_case_and_every_default_model() -> None:
    assert sorted(recorded()) == sorted(c.id for c in CASES)
    assert {c.family for c in CASES} == set(DEFAULT_MODELS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_default_model_scores_its_recorded_psnr(case: Case) -> None:
    got, want = score(case), recorded()[case.id]
    assert abs(got - want) <= TOLERANCE_DB, (
        f"{case.id}: {swinir.default_model_path(case.family).name} scores {got:.5f} dB, recorded {want:.5f} dB "
        f"(tolerance {TOLERANCE_DB} dB): the network, the engine or the weights changed; if the weights are a new "
        f"export, re-record with `python tests/test_default_quality.py` in the same commit"
    )


if __name__ == "__main__":
    table = {c.id: round(score(c), 5) for c in CASES}
    note = "Per-image PSNR (dB) of the default models, written by `python tests/test_default_quality.py`."
    document = {"about": note, "weights_sha256": weight_digests(), "psnr_db": table}
    RECORDED.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(table, indent=2))
