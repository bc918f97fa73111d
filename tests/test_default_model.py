"""The shipped default model meets issue 3's quality mark: Set5 and Set14 x2 PSNR-Y at least bicubic + 2.5 dB.

Scored the official SwinIR way (Y channel, border = scale, the standard LR_bicubic files) by the same code
that writes the table in bench/RESULTS.md, so the recorded figures and this check cannot drift apart.
"""

from __future__ import annotations

import pytest

from bench import eval_sr
from swinir.model_ref import default_model_path

DATA = eval_sr.DEFAULT_DATA
MARGIN_DB = 2.5


@pytest.fixture(scope="module")
def default_upscaler() -> eval_sr.Upscaler:
    return eval_sr.model_upscaler(str(default_model_path()))


@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
def test_default_model_beats_bicubic_by_margin(set_name: str, default_upscaler: eval_sr.Upscaler) -> None:
    set_dir = DATA / set_name
    if not set_dir.is_dir():
        pytest.skip(f"../shared/data not present ({set_dir}); the quality check needs the {set_name} test set")
    bicubic, _, n = eval_sr.evaluate_set(set_dir, 2, eval_sr.bicubic, gray_rgb=False)
    model, _, _ = eval_sr.evaluate_set(set_dir, 2, default_upscaler, gray_rgb=False)
    assert n == {"Set5": 5, "Set14": 14}[set_name]
    assert model >= bicubic + MARGIN_DB, (
        f"{set_name} x2: default model {model:.3f} dB, bicubic {bicubic:.3f} dB, "
        f"gain {model - bicubic:.3f} < {MARGIN_DB} dB"
    )
