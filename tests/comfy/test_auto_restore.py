"""SwinIR Analyze Image and SwinIR Auto Restore in the real server (issue 12).

Every official colour denoise and JPEG level is on disk as a random-weight checkpoint under its official name;
on pictures degraded at sigma 15/25/50 and quality 10/20/30/40, Auto Restore must run the official model of that
level (its output equals that model's, and its info says so), per image, also inside one batch.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from testkit.comfy_harness import (
    DEFAULT_ENTRY,
    DENOISE_NAME,
    LEVEL_DENOISE,
    LEVEL_JPEG,
    PACK_NAME,
    assert_close_u8,
    default_entry_path,
    engine,
    history_text,
    p_auto_restore,
    p_load_image,
    p_loader,
    p_preview_text,
    p_save,
    quantise,
    to_tensor,
    write_level_models,
)

from testkit.pictures import noisy, picture

SIGMAS = (15, 25, 50)
QUALITIES = (10, 20, 30, 40)
SEEDS = (21, 22)


@pytest.fixture(scope="module")
def levels(comfy):
    paths, made = write_level_models(comfy.models_dir / "swinir")
    try:
        yield paths
    finally:
        for path in made:  # the other test modules see the model folders as make_models left them
            path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def inputs(comfy):
    """name -> (uint8 pixels as LoadImage reads them, sigma or None, quality or None)."""
    made = {}
    for seed in SEEDS:
        for sigma in SIGMAS:
            pixels = (noisy(picture(seed=seed), sigma, seed=seed, eight_bit=True) * 255).astype(np.uint8)
            made[comfy.put_input(f"auto_noise{sigma}_{seed}.png", pixels)] = (pixels, sigma, None)
        for quality in QUALITIES:
            name = f"auto_q{quality}_{seed}.jpg"
            comfy.input_dir.mkdir(parents=True, exist_ok=True)
            if seed == SEEDS[0]:
                Image.fromarray(picture(seed=seed)).save(comfy.input_dir / name, quality=quality)
            else:  # decoded, cropped off the grid and saved as PNG: the grid is found at offset (5, 3)
                name = f"auto_q{quality}_{seed}_cropped.png"
                Image.open(_jpeg_bytes(picture(seed=seed), quality)).convert("RGB").crop((5, 3, 256, 192)).save(
                    comfy.input_dir / name)
            made[name] = (np.asarray(Image.open(comfy.input_dir / name).convert("RGB")), None, quality)
    return made


def _jpeg_bytes(pixels: np.ndarray, quality: int):
    import io

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return buf


def test_auto_restore_picks_the_official_model_of_each_level(comfy, levels, inputs):
    prompt, branches = {}, {}
    for i, name in enumerate(inputs):
        load, auto, info, save = (f"{i}1", f"{i}2", f"{i}3", f"{i}4")
        prompt[load] = p_load_image(name)
        prompt[auto] = p_auto_restore([load, 0])
        prompt[info] = p_preview_text([auto, 1])
        prompt[save] = p_save([auto, 0], f"auto_{i}")
        branches[name] = (info, save)
    entry = comfy.run_ok(prompt, timeout=600)
    for name, (pixels, sigma, quality) in inputs.items():
        info_id, save_id = branches[name]
        text = history_text(entry, info_id)
        expected_name = LEVEL_DENOISE[sigma] if sigma else LEVEL_JPEG[quality]
        task = "denoise" if sigma else "JPEG cleanup"
        ran = [line.strip() for line in text.splitlines() if line.strip().startswith("ran ")]
        assert ran and ran[0].startswith(f"ran {task} with {expected_name}:"), f"{name}:\n{text}"
        assert len(ran) == 1, f"{name}: only the {task} was needed:\n{text}"
        if quality:
            assert f"JPEG quality {quality}" in text, text
        if "cropped" in name:
            assert "grid offset 5,3" in text, text
        [out] = comfy.output_images(entry, save_id)
        assert_close_u8(out, quantise(engine(levels[expected_name], to_tensor(pixels))))


def test_analyze_image_outputs(comfy, inputs):
    prompt = {
        "1": p_load_image(f"auto_noise25_{SEEDS[0]}.png"),
        "2": {"class_type": "SwinIRAnalyzeImage", "inputs": {"image": ["1", 0]}},
        "3": p_preview_text(["2", 0]),
        "4": p_preview_text(["2", 1]),
        "5": p_preview_text(["2", 2]),
        "6": p_load_image(f"auto_q30_{SEEDS[1]}_cropped.png"),
        "7": {"class_type": "SwinIRAnalyzeImage", "inputs": {"image": ["6", 0]}},
        "8": p_preview_text(["7", 1]),
        "9": p_preview_text(["7", 2]),
    }
    entry = comfy.run_ok(prompt)
    assert abs(float(history_text(entry, "3")) - 25) < 1.5
    assert history_text(entry, "4") == "0"
    assert "noise sigma" in history_text(entry, "5") and "no JPEG grid" in history_text(entry, "5")
    assert history_text(entry, "8") == "30"
    assert "JPEG quality 30 (grid offset 5,3)" in history_text(entry, "9")


def test_batch_decides_per_image_and_upscales(comfy, levels):
    # Smaller pictures: the pack's x2 model runs on them, in the server and here for the expected output.
    small = picture(96, 128, seed=31)
    noisy_name = comfy.put_input("auto_small_noise25.png", (noisy(small, 25, seed=31, eight_bit=True) * 255).astype(np.uint8))
    jpeg_name = "auto_small_q20.jpg"
    Image.fromarray(small).save(comfy.input_dir / jpeg_name, quality=20)
    pixels = {name: np.asarray(Image.open(comfy.input_dir / name).convert("RGB")) for name in (noisy_name, jpeg_name)}
    prompt = {
        "1": p_load_image(noisy_name),
        "2": p_load_image(jpeg_name),
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": p_auto_restore(["3", 0], scale=2.0),
        "5": p_preview_text(["4", 1]),
        "6": p_save(["4", 0], "auto_batch"),
    }
    entry = comfy.run_ok(prompt, timeout=600)
    text = history_text(entry, "5")
    first, second = text.split("image 2/2:")
    assert f"ran denoise with {LEVEL_DENOISE[25]}" in first and "JPEG cleanup" not in first, text
    assert f"ran JPEG cleanup with {LEVEL_JPEG[20]}" in second and "ran denoise" not in second, text
    assert first.count(f"ran upscale x2 with {DEFAULT_ENTRY}") == 1 and second.count("ran upscale x2") == 1, text
    outs = comfy.output_images(entry, "6")
    assert [o.shape for o in outs] == [(192, 256, 3)] * 2
    sr = default_entry_path(DEFAULT_ENTRY)
    for out, name, model in ((outs[0], noisy_name, LEVEL_DENOISE[25]), (outs[1], jpeg_name, LEVEL_JPEG[20])):
        restored = engine(levels[model], to_tensor(pixels[name]))
        assert_close_u8(out, quantise(engine(sr, restored)))


def test_connected_model_overrides_the_choice_and_clean_images_pass_through(comfy, levels, inputs):
    name = f"auto_noise50_{SEEDS[1]}.png"
    clean = picture(seed=SEEDS[0])
    comfy.put_input("auto_clean.png", np.ascontiguousarray(clean))
    prompt = {
        "1": p_load_image(name),
        "2": p_loader(DENOISE_NAME),
        "3": p_auto_restore(["1", 0], denoise_model=["2", 0]),
        "4": p_preview_text(["3", 1]),
        "5": p_save(["3", 0], "auto_override"),
        "6": p_load_image("auto_clean.png"),
        "7": p_auto_restore(["6", 0]),
        "8": p_preview_text(["7", 1]),
        "9": p_save(["7", 0], "auto_clean"),
    }
    entry = comfy.run_ok(prompt)
    text = history_text(entry, "4")
    assert "ran denoise with the connected denoise model" in text and LEVEL_DENOISE[50] not in text, text
    [out] = comfy.output_images(entry, "5")
    assert_close_u8(out, quantise(engine(comfy.models[DENOISE_NAME], to_tensor(inputs[name][0]))))
    assert "nothing run" in history_text(entry, "8")
    [same] = comfy.output_images(entry, "9")
    assert_close_u8(same, clean, tol=0)


def test_node_schemas_and_help_pages(comfy):
    auto = comfy.get("/object_info/SwinIRAutoRestore").json()["SwinIRAutoRestore"]
    assert auto["display_name"] == "SwinIR Auto Restore" and auto["category"] == "image/SwinIR"
    assert {"jpeg_model", "denoise_model", "upscale_model"} <= set(auto["input"]["optional"])
    assert auto["output"] == ["IMAGE", "STRING"]
    analyze = comfy.get("/object_info/SwinIRAnalyzeImage").json()["SwinIRAnalyzeImage"]
    assert analyze["output"] == ["FLOAT", "INT", "STRING"]
    assert analyze["output_name"] == ["noise_sigma", "jpeg_quality", "info"]
    for node_id, title in (("SwinIRAutoRestore", "SwinIR Auto Restore"), ("SwinIRAnalyzeImage", "SwinIR Analyze Image")):
        r = comfy.get(f"/extensions/{PACK_NAME}/docs/{node_id}.md")
        assert r.status_code == 200 and r.text.startswith(f"# {title}")


def test_work_auto_restore_without_comfyui():
    """The pure part, with stand-in loaders: order of steps, passes to reach the scale, notes kept."""
    from swinir.estimate import Degradation, recommend

    from testkit.comfy_harness import REPO  # noqa: F401  (the pack root is on sys.path through the harness)
    import importlib.util

    spec = importlib.util.spec_from_file_location("pack_for_auto", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["pack_for_auto"] = module
    try:
        spec.loader.exec_module(module)
        import importlib

        work = importlib.import_module("pack_for_auto.nodes.work")

        class Model:
            def __init__(self, scale):
                self.config = type("C", (), {"scale": scale})()

        calls = []

        def run(model, image, family):
            calls.append((family, model.config.scale))
            s = model.config.scale
            return torch.nn.functional.interpolate(image.movedim(-1, 1), scale_factor=s).movedim(1, -1)

        images = torch.rand(2, 16, 24, 3)
        found = [Degradation(30.0, None), Degradation(0.5, 20)]
        pipelines = [recommend(d, 4.0, [LEVEL_DENOISE[25], LEVEL_JPEG[20], DEFAULT_ENTRY]) for d in found]
        out, text = work.auto_restore(images, found, pipelines, load=lambda name: Model(2 if "x2" in name else 1),
                                      run=run)
        assert out.shape == (2, 64, 96, 3)
        assert calls == [("denoise", 1), ("sr", 2), ("sr", 2), ("jpeg", 1), ("sr", 2), ("sr", 2)]
        assert f"ran denoise with {LEVEL_DENOISE[25]}" in text and f"ran JPEG cleanup with {LEVEL_JPEG[20]}" in text
        assert text.count(f"ran upscale x2 2 times with {DEFAULT_ENTRY}") == 2, text
    finally:
        for name in [n for n in sys.modules if n == "pack_for_auto" or n.startswith("pack_for_auto.")]:
            del sys.modules[name]
