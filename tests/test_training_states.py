"""The resume states in models/training/ go with the shipped models: a state is committed only with its export.

Each state's EMA weights are the shipped model's weights, tensor for tensor, and the model's recorded step is the
state's step, so a state trained on without a new export (or a new export without its state) fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from swinir.model_ref import DEFAULT_MODELS, default_model_path

STATES = Path(__file__).resolve().parents[1] / "models" / "training"


@pytest.mark.parametrize("family", sorted(DEFAULT_MODELS))
def test_resume_state_is_the_shipped_model(family: str) -> None:
    model_path = default_model_path(family)
    state_path = STATES / model_path.name.replace(".safetensors", ".state.pt")
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    shipped = load_file(str(model_path))
    assert sorted(state["ema"]) == sorted(shipped)
    differing = [k for k, v in shipped.items() if not torch.equal(state["ema"][k], v)]
    assert not differing, f"{state_path.name}: EMA differs from {model_path.name} in {differing[:3]}"
    with safe_open(str(model_path), "pt") as f:
        assert f.metadata()["training_steps"] == str(state["step"])
