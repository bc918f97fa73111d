"""The version-tolerant layer of nodes/runtime.py, in this process, against the real ComfyUI 0.3.75 modules: where a
newer release differs, that one piece takes the newer form (an InterruptProcessingException that derives from
BaseException, comfy.model_management.is_oom, comfy.model_patcher.CoreModelPatcher) and everything else stays
0.3.75's own. The model runs on the CPU, as ComfyUI does with --cpu."""

from __future__ import annotations

import sys

import pytest
import torch

from testkit.comfy_harness import COMFY_DIR, missing, pack_module


@pytest.fixture(scope="module")
def comfy_modules():
    if not (COMFY_DIR / "comfy" / "model_management.py").is_file():
        missing(f"ComfyUI not installed at {COMFY_DIR}; run scripts/get-comfyui.sh")
    before = set(sys.modules)
    sys.path.insert(0, str(COMFY_DIR))
    try:
        import comfy.cli_args

        comfy.cli_args.args.cpu = True  # as main.py --cpu: model_management picks its device on import
        import comfy.model_management as mm
        import comfy.model_patcher
        import comfy.utils

        yield mm, comfy.model_patcher, comfy.utils, pack_module("nodes.runtime"), pack_module("swinir")
    finally:
        # Other tests check that the ComfyUI-free modules import no ComfyUI: this process holds none afterwards.
        sys.path.remove(str(COMFY_DIR))
        for name in set(sys.modules) - before:
            where = getattr(sys.modules[name], "__file__", None) or ""
            if name.split(".")[0] in ("comfy", "comfy_api", "comfy_execution") or where.startswith(str(COMFY_DIR)) \
                    or name.endswith(".nodes.runtime"):
                del sys.modules[name]


@pytest.fixture
def env(comfy_modules):
    mm, patchers, utils, runtime, core = comfy_modules
    yield comfy_modules
    mm.interrupt_current_processing(False)
    mm.unload_all_models()


def tiny_sr(core, seed: int = 0):
    torch.manual_seed(seed)
    config = core.SwinIRConfig(task="classical_sr", scale=2, in_chans=3, window_size=4, embed_dim=12, depths=(2,),
                               num_heads=(2,), upsampler="pixelshuffle", num_feat=16)
    return core.SwinIR(config).eval()


def images(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(seed))  # BHWC, ComfyUI's IMAGE


def out_of_memory_above(model, pixels: int, error):
    """A forward on more than `pixels` input pixels raises error(message)."""
    def pre(module, args):
        h, w = args[0].shape[-2:]
        if h * w > pixels:
            raise error(f"simulated: {h}x{w}")
    return model.register_forward_pre_hook(pre)


def test_interrupt_that_is_a_base_exception_stops_the_run(env, monkeypatch):
    mm, patchers, utils, runtime, core = env
    newer = type("InterruptProcessingException", (BaseException,), {})
    monkeypatch.setattr(mm, "InterruptProcessingException", newer)
    done: list[int] = []

    def hook(value, total, preview, prompt_id=None, node_id=None):  # what main.py installs, less the websocket
        done.append(value)
        if value == 2:
            mm.interrupt_current_processing(True)
        mm.throw_exception_if_processing_interrupted()

    monkeypatch.setattr(utils, "PROGRESS_BAR_HOOK", hook)
    with pytest.raises(newer):
        runtime.run(runtime.managed(tiny_sr(core)), images(), "sr", tile_size=16, overlap=4, precision="fp32")
    assert done == [1, 2], done


def test_interrupt_between_tiles_is_the_release_exception(env, monkeypatch):
    """An interrupt seen by the engine's cancel check (no progress hook) is raised as the release's exception."""
    mm, patchers, utils, runtime, core = env
    newer = type("InterruptProcessingException", (BaseException,), {})
    monkeypatch.setattr(mm, "InterruptProcessingException", newer)
    monkeypatch.setattr(utils, "PROGRESS_BAR_HOOK", None)
    mm.interrupt_current_processing(True)
    with pytest.raises(newer):
        runtime.run(runtime.managed(tiny_sr(core)), images(), "sr", tile_size=16, overlap=4, precision="fp32")


def test_accelerator_oom_on_0_3_75_shrinks_the_tile(env):
    mm, patchers, utils, runtime, core = env
    assert not hasattr(mm, "is_oom") and runtime.is_oom() is None  # 0.3.75: the engine's own test
    model = runtime.managed(tiny_sr(core))
    x = images(2)
    expected = runtime.run(model, x, "sr", tile_size=16, overlap=4, precision="fp32")
    handle = out_of_memory_above(model, 16 * 16, lambda m: torch.AcceleratorError(f"CUDA error: out of memory {m}"))
    try:
        out = runtime.run(model, x, "sr", tile_size=32, overlap=4, precision="fp32")
    finally:
        handle.remove()
    assert torch.equal(out, expected)


def test_release_is_oom_decides(env, monkeypatch):
    mm, patchers, utils, runtime, core = env
    asked: list[BaseException] = []

    def is_oom(error):  # a newer release's comfy.model_management.is_oom: its own verdict
        asked.append(error)
        return "out of memory" in str(error)

    monkeypatch.setattr(mm, "is_oom", is_oom, raising=False)
    assert runtime.is_oom() is is_oom
    model = runtime.managed(tiny_sr(core))
    x = images(3)
    expected = runtime.run(model, x, "sr", tile_size=16, overlap=4, precision="fp32")
    handle = out_of_memory_above(model, 16 * 16, lambda m: torch.AcceleratorError(f"CUDA error: out of memory {m}"))
    try:
        assert torch.equal(runtime.run(model, x, "sr", tile_size=32, overlap=4, precision="fp32"), expected)
    finally:
        handle.remove()
    assert len(asked) == 1
    handle = out_of_memory_above(model, 16 * 16, lambda m: RuntimeError(f"not a memory failure {m}"))
    try:
        with pytest.raises(RuntimeError, match="not a memory failure"):
            runtime.run(model, x, "sr", tile_size=32, overlap=4, precision="fp32")
    finally:
        handle.remove()
    assert len(asked) == 2


def test_core_model_patcher_is_used_where_the_release_has_it(env, monkeypatch):
    mm, patchers, utils, runtime, core = env
    assert not hasattr(patchers, "CoreModelPatcher")
    assert type(runtime.managed(tiny_sr(core)).patcher) is patchers.ModelPatcher  # 0.3.75
    newer = type("CoreModelPatcher", (patchers.ModelPatcher,), {})
    monkeypatch.setattr(patchers, "CoreModelPatcher", newer, raising=False)
    model = runtime.managed(tiny_sr(core))
    assert type(model.patcher) is newer
    runtime.run(model, images(), "sr", tile_size=0, overlap=4, precision="fp32")
    assert model.patcher in runtime.loaded_models()
    mm.unload_all_models()
    assert runtime.loaded_models() == [] and core.cached_bytes() == {}


def test_previews_are_throttled_by_time_and_cost(env, monkeypatch):
    mm, patchers, utils, runtime, core = env
    sent: list[tuple] = []
    monkeypatch.setattr(utils, "PROGRESS_BAR_HOOK", lambda v, t, preview, **kw: sent.append((v, t, preview)))
    now = [0.0]
    shown = runtime.Previews(utils.ProgressBar(10), 64, clock=lambda: now[0])
    canvas = core.engine.Canvas(torch.rand(1, 3, 100, 80), torch.ones(1, 1, 100, 80), 100, 80)
    for tick in range(1, 11):
        now[0] += 0.4  # a tile every 0.4 s
        shown.progress(tick, 10)
        shown.preview(canvas)
    previews = [p for _, _, p in sent if p is not None]
    assert len(previews) == 3 and shown.sent == 3  # at 1.2, 2.4 and 3.6 s: one a second at most
    kind, image, side = previews[0]
    assert kind == "JPEG" and side == 64 and max(image.size) <= 64
    # A preview that costs more than 1 % of the run so far waits until the run has caught up.
    slow = runtime.Previews(utils.ProgressBar(10), 64, clock=lambda: now[0])
    slow.spent = 1.0
    now[0] += 50.0
    slow.preview(canvas)
    assert slow.sent == 0
    now[0] += 60.0
    slow.preview(canvas)
    assert slow.sent == 1
