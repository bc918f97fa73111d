"""Two prompts queued back to back with the same model and different precisions give the same images as each run
alone (issue 14, part 4, the ComfyUI half).

The second prompt is queued while the first one's restore node is running (its "executing" websocket message),
every restore node really runs (no cached output stands in), and fp32 and bf16 give different images, so a
precision carried over from one prompt to the next would be seen. In ComfyUI the device is the server's: the
CUDA case runs the same pair on a second server started on the GPU, where there is one.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from testkit.comfy_harness import (
    DENOISE_NAME,
    SR_NAME,
    ComfyEvents,
    make_image,
    p_load_image,
    p_loader,
    p_restore,
    p_save,
    start_server,
)

# Its servers (`comfy`, `gpu_comfy`) come through request.getfixturevalue, which conftest's marking cannot see.
pytestmark = pytest.mark.full

SIZE = (96, 112)  # height, width: 20 tiles of 32 px, so the first prompt still runs when the second is queued
CASES = {"upscale": ("SwinIRUpscale", SR_NAME, {}), "denoise": ("SwinIRDenoise", DENOISE_NAME, {"strength": 1.0})}


@pytest.fixture(scope="module")
def gpu_comfy(tmp_path_factory):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here; the pair on the GPU needs a server with one")
    base = tmp_path_factory.mktemp("comfy_cuda")
    server = start_server(base, "comfy-cuda", device="cuda")
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def _prompt(image: str, node: str, model: str, precision: str, prefix: str, extra: dict) -> dict:
    return {
        "1": p_load_image(image),
        "2": p_loader(model),
        "3": p_restore(node, ["2", 0], ["1", 0], tile_size=32, overlap=8, precision=precision, **extra),
        "4": p_save(["3", 0], prefix),
    }


def _result(comfy, events: ComfyEvents, pid: str) -> np.ndarray:
    """The prompt's one output image, after checking that it ended well and that its restore node ran."""
    ran = events.wait_for(lambda m: m.get("type") == "executing" and m["data"].get("prompt_id") == pid
                          and m["data"].get("node") == "3")
    assert ran
    end = events.wait_end(pid)
    assert end["type"] == "execution_success", end
    (image,) = comfy.output_images(comfy.wait(pid), "4")
    return image


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("first, second", [("fp32", "bf16"), ("bf16", "fp32")])
def test_back_to_back_prompts_match_runs_alone(request, device, case, first, second):
    comfy = request.getfixturevalue("comfy" if device == "cpu" else "gpu_comfy")
    node, model, extra = CASES[case]
    picture = make_image(*SIZE, seed=21)
    # Same pixels under four names: each prompt's LoadImage differs, so none reuses another's cached outputs.
    names = {tag: comfy.put_input(f"concurrency_{case}_{first}_{tag}.png", picture)
             for tag in ("alone1", "alone2", "pair1", "pair2")}
    events = ComfyEvents(comfy)
    try:
        alone = {}
        for tag, precision in (("alone1", first), ("alone2", second)):
            pid = events.queue(_prompt(names[tag], node, model, precision, f"conc_{tag}", extra))
            alone[precision] = _result(comfy, events, pid)
        # Back to back: the second is queued while the first one's restore node runs.
        pid1 = events.queue(_prompt(names["pair1"], node, model, first, "conc_pair1", extra))
        events.wait_for(lambda m: m.get("type") == "executing" and m["data"].get("prompt_id") == pid1
                        and m["data"].get("node") == "3")
        pid2 = events.queue(_prompt(names["pair2"], node, model, second, "conc_pair2", extra))
        queued2 = time.time() * 1000
        # The first prompt's events were read up to its node start; its result, then the second's.
        end1 = events.wait_end(pid1)
        assert end1["type"] == "execution_success", end1
        entry1 = comfy.wait(pid1)
        (pair1,) = comfy.output_images(entry1, "4")
        pair2 = _result(comfy, events, pid2)
    finally:
        events.close()
    ended1 = dict(entry1["status"]["messages"])["execution_success"]["timestamp"]  # ms, the server's clock (ours)
    assert queued2 < ended1, "the second prompt was queued only after the first had finished"
    assert np.abs(alone[first].astype(int) - alone[second].astype(int)).max() > 0, "fp32 and bf16 gave one image"
    assert np.array_equal(pair1, alone[first]), f"{first} queued first differs from {first} alone"
    assert np.array_equal(pair2, alone[second]), f"{second} queued second differs from {second} alone"
