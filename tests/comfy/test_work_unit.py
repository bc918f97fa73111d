"""nodes/work.py without ComfyUI: the pack imported as a package, the way ComfyUI imports it."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import pytest
import torch

from testkit.comfy_harness import REPO

PKG = "comfyui_swinir_pack_under_test"


@pytest.fixture(scope="module")
def pack():
    spec = importlib.util.spec_from_file_location(PKG, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PKG] = module
    spec.loader.exec_module(module)
    yield module
    for name in [n for n in sys.modules if n == PKG or n.startswith(PKG + ".")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def work(pack):
    return importlib.import_module(PKG + ".nodes.work")


@pytest.fixture(scope="module")
def core(pack):
    return importlib.import_module(PKG + ".swinir")


def test_pack_exports_only_the_v3_entry_point(pack):
    assert callable(pack.comfy_entrypoint)
    assert pack.WEB_DIRECTORY == "./web"
    # A module exporting V1 mappings has its V3 entry point ignored by ComfyUI 0.3.75.
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")
    assert "comfy" not in sys.modules and "comfy_api" not in sys.modules


def tiny(core, task, **kw):
    cfg = dict(task=task, scale=1, in_chans=3, window_size=8, embed_dim=12, depths=(2,), num_heads=(2,), upsampler="")
    cfg.update(kw)
    torch.manual_seed(0)
    return core.SwinIR(core.SwinIRConfig(**cfg)).eval()


@pytest.mark.parametrize(
    "task, kw, family, words, node",
    [
        ("color_jpeg", dict(window_size=7, img_range=255.0, jpeg_quality=10), "sr",
         "JPEG-artifact removal model (color, quality 10)", "SwinIR JPEG Cleanup"),
        ("gray_denoise", dict(in_chans=1, noise_level=25), "jpeg", "denoising model (grayscale, noise level 25)",
         "SwinIR Denoise"),
        ("lightweight_sr", dict(scale=3, upsampler="pixelshuffledirect"), "denoise",
         "super-resolution model (x3, lightweight)", "SwinIR Upscale"),
    ],
)
def test_wrong_task_message(core, work, task, kw, family, words, node):
    model = tiny(core, task, **kw)
    with pytest.raises(work.WrongModelError) as e:
        work.check_task(model, family)
    assert words in str(e.value) and f"'{node}'" in str(e.value)
    work.check_task(model, work.task_family(model.config))  # the right node accepts it


def test_output_size(work):
    assert work.output_size(45, 61, 2, 0) == (90, 122)
    assert work.output_size(45, 61, 2, 2.0) == (90, 122)
    assert work.output_size(45, 61, 2, 1.5) == (round(67.5), round(91.5))
    with pytest.raises(ValueError):
        work.output_size(10, 10, 2, -1)


def test_resize_is_antialiased(work):
    lines = torch.zeros(1, 8, 64, 3)
    lines[:, :, ::4] = 1.0  # one bright column in four
    quarter = work.resize(lines, 8, 16)
    assert quarter.shape == (1, 8, 16, 3)
    inner = quarter[:, :, 2:-2]
    assert torch.allclose(inner, torch.full_like(inner, 0.25), atol=0.03)  # point sampling would miss the lines


def test_blend(work):
    a, b = torch.zeros(1, 4, 4, 3), torch.ones(1, 4, 4, 3)
    assert torch.equal(work.blend(a, b, 1.0), b)
    assert torch.allclose(work.blend(a, b, 0.25), torch.full_like(a, 0.25))
    assert torch.equal(work.blend(a, b, 0.0), a)
    with pytest.raises(ValueError):
        work.blend(a, b, 1.5)


def test_restore_batch_matches_engine_and_reports_progress(core, work):
    model = tiny(core, "color_denoise")
    images = torch.rand(2, 40, 70, 3)
    seen = []
    out = work.restore_batch(model, images, tile_size=32, overlap=8, progress=lambda d, t: seen.append((d, t)))
    assert out.shape == images.shape
    expected = core.restore(model, images.movedim(-1, 1), tile=32, overlap=8).movedim(1, -1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert seen[-1][0] == seen[-1][1] and len(seen) == seen[-1][1] > 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_restore_batch_cancel(core, work):
    model = tiny(core, "color_denoise")
    with pytest.raises(core.Cancelled):
        work.restore_batch(model, torch.rand(1, 40, 70, 3), tile_size=32, overlap=8, cancel=lambda: True)


def test_tile_arg(work):
    assert work.tile_arg(0) is None
    assert work.tile_arg(256) == 256
    with pytest.raises(ValueError):
        work.tile_arg(-8)
