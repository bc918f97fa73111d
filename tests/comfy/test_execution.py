"""Prompts run by the real server: outputs equal swinir.restore's on the same input and model."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from swinir.precision import cpu_has_native

from testkit.comfy_harness import (
    ComfyEvents,
    DENOISE_NAME,
    GRAY_DENOISE_NAME,
    JPEG_NAME,
    NOT_SWINIR_NAME,
    SPANDREL_SR_NAME,
    SR_NAME,
    assert_close_u8,
    blend,
    default_model_path,
    engine,
    error_text,
    make_image,
    p_load_image,
    p_loader,
    p_restore,
    p_save,
    quantise,
    to_tensor,
)

ODD = (45, 61)  # height, width: neither is a multiple of the window (8 or 7)


@pytest.fixture(scope="module")
def odd_image(comfy):
    img = make_image(*ODD, seed=1)
    comfy.put_input("odd.png", img)
    return img


def run_single(comfy, node, model_name, image_name, prefix, **kw):
    if node != "SwinIRUpscale":
        kw.setdefault("strength", 1.0)
    prompt = {
        "1": p_load_image(image_name),
        "2": p_loader(model_name),
        "3": p_restore(node, ["2", 0], ["1", 0], **kw),
        "4": p_save(["3", 0], prefix),
    }
    entry = comfy.run_ok(prompt)
    images = comfy.output_images(entry, "4")
    assert len(images) == 1
    return images[0]


def test_sr_odd_size_whole_and_tiled(comfy, odd_image):
    path = comfy.models[SR_NAME]
    x = to_tensor(odd_image)
    out = run_single(comfy, "SwinIRUpscale", SR_NAME, "odd.png", "sr_odd")
    assert out.shape == (ODD[0] * 2, ODD[1] * 2, 3)
    assert_close_u8(out, quantise(engine(path, x)))
    tiled = run_single(comfy, "SwinIRUpscale", SR_NAME, "odd.png", "sr_odd_tiled", tile_size=32, overlap=8)
    assert_close_u8(tiled, quantise(engine(path, x, tile=32, overlap=8)))


def test_sr_scale_by(comfy, odd_image):
    path = comfy.models[SR_NAME]
    out = run_single(comfy, "SwinIRUpscale", SR_NAME, "odd.png", "sr_scale_by", scale_by=1.5)
    h, w = round(ODD[0] * 1.5), round(ODD[1] * 1.5)
    assert out.shape == (h, w, 3)
    y = engine(path, to_tensor(odd_image))
    expected = F.interpolate(y, size=(h, w), mode="bicubic", antialias=True).clamp(0, 1)
    assert_close_u8(out, quantise(expected))
    native = run_single(comfy, "SwinIRUpscale", SR_NAME, "odd.png", "sr_scale_by_2", scale_by=2.0)
    assert native.shape == (ODD[0] * 2, ODD[1] * 2, 3)


def test_bf16_precision_runs_close_to_fp32(comfy, odd_image):
    fp32 = run_single(comfy, "SwinIRDenoise", DENOISE_NAME, "odd.png", "dn_fp32")
    bf16 = run_single(comfy, "SwinIRDenoise", DENOISE_NAME, "odd.png", "dn_bf16", precision="bf16")
    assert bf16.shape == fp32.shape
    diff = abs(bf16.astype(int) - fp32.astype(int))
    assert diff.mean() < 2.0 and diff.max() <= 16, (diff.mean(), diff.max())
    # On a CPU without bf16 units (AVX2 only) the console says once that bf16 is emulated and to choose fp32.
    said = "bf16 on this CPU is emulated" in comfy.log_text()
    assert said == (not cpu_has_native(torch.bfloat16)), comfy.log_tail()


def test_jpeg_window7_model(comfy, odd_image):
    path = comfy.models[JPEG_NAME]
    out = run_single(comfy, "SwinIRJPEGCleanup", JPEG_NAME, "odd.png", "jpeg_w7")
    assert out.shape == (*ODD, 3)
    assert_close_u8(out, quantise(engine(path, to_tensor(odd_image))))


def test_denoise_strength_blends(comfy, odd_image):
    path = comfy.models[DENOISE_NAME]
    x = to_tensor(odd_image)
    out = run_single(comfy, "SwinIRDenoise", DENOISE_NAME, "odd.png", "dn_half", strength=0.5)
    assert_close_u8(out, quantise(blend(x, engine(path, x), 0.5)))
    same = run_single(comfy, "SwinIRDenoise", DENOISE_NAME, "odd.png", "dn_zero", strength=0.0)
    assert_close_u8(same, odd_image)


def test_gray_model_on_rgb(comfy, odd_image):
    path = comfy.models[GRAY_DENOISE_NAME]
    out = run_single(comfy, "SwinIRDenoise", GRAY_DENOISE_NAME, "odd.png", "gray_on_rgb")
    assert out.shape == (*ODD, 3)
    assert_close_u8(out, quantise(engine(path, to_tensor(odd_image))))


def test_batch_of_two(comfy):
    a, b = make_image(40, 56, seed=2), make_image(40, 56, seed=3)
    comfy.put_input("batch_a.png", a)
    comfy.put_input("batch_b.png", b)
    prompt = {
        "1": p_load_image("batch_a.png"),
        "2": p_load_image("batch_b.png"),
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": p_loader(JPEG_NAME),
        "5": p_restore("SwinIRJPEGCleanup", ["4", 0], ["3", 0], strength=1.0),
        "6": p_save(["5", 0], "batch"),
    }
    images = comfy.output_images(comfy.run_ok(prompt), "6")
    assert len(images) == 2
    path = comfy.models[JPEG_NAME]
    both = engine(path, torch.cat([to_tensor(a), to_tensor(b)]))
    for got, i in zip(images, range(2)):
        assert_close_u8(got, quantise(both[i : i + 1]))


def test_from_upscale_model(comfy, odd_image):
    prompt = {
        "1": p_load_image("odd.png"),
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": SPANDREL_SR_NAME}},
        "3": {"class_type": "SwinIRFromUpscaleModel", "inputs": {"upscale_model": ["2", 0]}},
        "4": p_restore("SwinIRUpscale", ["3", 0], ["1", 0]),
        "5": p_save(["4", 0], "from_upscale_model"),
    }
    (out,) = comfy.output_images(comfy.run_ok(prompt), "5")
    assert out.shape == (ODD[0] * 2, ODD[1] * 2, 3)
    assert_close_u8(out, quantise(engine(comfy.models[SPANDREL_SR_NAME], to_tensor(odd_image))))


def test_from_upscale_model_refuses_other_architectures(comfy):
    prompt = {
        "1": p_load_image("odd.png"),
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": NOT_SWINIR_NAME}},
        "3": {"class_type": "SwinIRFromUpscaleModel", "inputs": {"upscale_model": ["2", 0]}},
        "4": p_restore("SwinIRUpscale", ["3", 0], ["1", 0]),
        "5": p_save(["4", 0], "not_swinir"),
    }
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error"
    text = error_text(entry)
    assert "SwinIR architecture" in text and "Upscale Image (using Model)" in text, text


@pytest.mark.parametrize(
    "node, model, task_words, right_node",
    [
        ("SwinIRUpscale", JPEG_NAME, "JPEG-artifact removal model (color, quality 10)", "SwinIR JPEG Cleanup"),
        ("SwinIRJPEGCleanup", DENOISE_NAME, "denoising model (color, noise level 15)", "SwinIR Denoise"),
        ("SwinIRDenoise", SR_NAME, "super-resolution model (x2", "SwinIR Upscale"),
    ],
)
def test_wrong_task_is_a_clear_error_and_the_server_goes_on(comfy, odd_image, node, model, task_words, right_node):
    prompt = {
        "1": p_load_image("odd.png"),
        "2": p_loader(model),
        "3": p_restore(node, ["2", 0], ["1", 0], **({} if node == "SwinIRUpscale" else {"strength": 1.0})),
        "4": p_save(["3", 0], "wrong_task"),
    }
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error"
    text = error_text(entry)
    assert task_words in text and f"'{right_node}'" in text, text
    assert comfy.get("/object_info/SwinIRUpscale").status_code == 200
    # The next prompt runs normally.
    out = run_single(comfy, "SwinIRUpscale", SR_NAME, "odd.png", "after_error")
    assert out.shape == (ODD[0] * 2, ODD[1] * 2, 3)


def test_interrupt_stops_within_a_tile(comfy):
    """POST /interrupt during a long tiled upscale: the run stops at the next tile, not at the end."""
    default = default_model_path()
    assert default.is_file(), f"the pack's default model is missing: {default}"
    comfy.put_input("big.png", make_image(384, 384, seed=4))
    prompt = {
        "1": p_load_image("big.png"),
        "2": p_loader("(default) " + default.name),
        "3": p_restore("SwinIRUpscale", ["2", 0], ["1", 0], tile_size=32, overlap=8),
        "4": p_save(["3", 0], "interrupted"),
    }
    events = ComfyEvents(comfy)
    try:
        pid = events.queue(prompt)
        # The server's own signal that tiles are being done: a progress message of the upscale node.
        first = events.wait_for(lambda m: m.get("type") == "progress" and m["data"].get("node") == "3"
                                and m["data"]["prompt_id"] == pid and m["data"]["value"] >= 1, timeout=300)
        total = first["data"]["max"]
        assert comfy.post("/interrupt").status_code == 200
        done_after = [first["data"]["value"]]

        def ends(m: dict) -> bool:
            """The prompt's end message; tiles reported done on the way are recorded."""
            if m.get("type") == "progress" and m["data"].get("prompt_id") == pid:
                done_after.append(m["data"]["value"])
            return m.get("type") in ComfyEvents.END and m["data"].get("prompt_id") == pid

        end = events.wait_for(ends, timeout=300)
    finally:
        events.close()
    assert end["type"] == "execution_interrupted", end
    assert end["data"]["node_type"] == "SwinIRUpscale"
    # At most the tile under way when the interrupt came (and the one whose progress was on its way) finished.
    assert max(done_after) <= done_after[0] + 2 < total, (done_after, total)
    entry = comfy.wait(pid, timeout=120)
    assert entry["status"]["status_str"] == "error"
    assert not entry.get("outputs")
    # The server goes on.
    assert comfy.get("/object_info/SwinIRUpscale").status_code == 200
