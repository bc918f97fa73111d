"""The shipped default model meets issue 3's quality mark: Set5 and Set14 x2 PSNR-Y at least bicubic + 2.5 dB.

Scored the official SwinIR way (Y channel, border = scale, the standard LR_bicubic files) by the same code
that writes the table in bench/RESULTS.md, so the recorded figures and this check cannot drift apart.
"""

from __future__ import annotations

import pytest

from shared_data import DATA, need
from swinir.training import evaluate
from swinir.model_ref import default_model_path

MARGIN_DB = 2.5
# Whole test sets: the full suite's. The quick tier scores the default models on a few images
# (test_default_quality.py).
pytestmark = pytest.mark.full


@pytest.fixture(scope="module")
def default_upscaler() -> evaluate.Upscaler:
    return evaluate.model_upscaler(str(default_model_path()))


@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
def test_default_model_beats_bicubic_by_margin(set_name: str, default_upscaler: evaluate.Upscaler) -> None:
    set_dir = need(DATA / set_name, f"the quality check needs the {set_name} test set")
    bicubic, _, n = evaluate.evaluate_set(set_dir, 2, evaluate.bicubic, gray_rgb=False)
    model, _, _ = evaluate.evaluate_set(set_dir, 2, default_upscaler, gray_rgb=False)
    assert n == {"Set5": 5, "Set14": 14}[set_name]
    assert model >= bicubic + MARGIN_DB, (
        f"{set_name} x2: default model {model:.3f} dB, bicubic {bicubic:.3f} dB, "
        f"gain {model - bicubic:.3f} < {MARGIN_DB} dB"
    )
