"""The shipped workflows/: converted to API format by the real frontend, queued, and checked against the engine."""

from __future__ import annotations

import pytest

from comfy_harness import (
    DENOISE_NAME,
    EXAMPLE_IMAGE,
    JPEG_NAME,
    RUNNABLE_WORKFLOWS,
    assert_close_u8,
    default_model_path,
    engine,
    load_workflow,
    make_image,
    quantise,
    to_tensor,
)

SIZE = (48, 64)  # height, width of the example image used in the tests


@pytest.fixture(scope="module")
def example(comfy):
    img = make_image(*SIZE, seed=7)
    comfy.put_input(EXAMPLE_IMAGE, img)
    return img


def expected_output(name: str, comfy, img):
    x = to_tensor(img)
    if name == "upscale_x2.json":
        return engine(default_model_path(), x)
    if name == "denoise.json":
        return engine(comfy.models[DENOISE_NAME], x)
    if name == "jpeg_cleanup.json":
        return engine(comfy.models[JPEG_NAME], x)
    if name == "chain_jpeg_denoise_upscale.json":
        y = engine(comfy.models[JPEG_NAME], x)
        y = engine(comfy.models[DENOISE_NAME], y)
        return engine(default_model_path(), y)
    raise AssertionError(name)


@pytest.mark.parametrize("name", RUNNABLE_WORKFLOWS)
def test_workflow_runs_and_matches_engine(ui, comfy, example, name):
    if "upscale" in name:
        assert default_model_path().is_file(), f"the pack's default model is missing: {default_model_path()}"
    api = ui.to_api(load_workflow(name))
    assert not ui.dialogs, ui.dialogs
    assert {n["class_type"] for n in api.values()} >= {"LoadImage", "SwinIRModelLoader", "SaveImage"}
    entry = comfy.run_ok(api)
    (save_id,) = [k for k, n in api.items() if n["class_type"] == "SaveImage"]
    (out,) = comfy.output_images(entry, save_id)
    expected = quantise(expected_output(name, comfy, example))
    scale = 2 if "upscale" in name else 1
    assert out.shape == (SIZE[0] * scale, SIZE[1] * scale, 3)
    assert_close_u8(out, expected)
