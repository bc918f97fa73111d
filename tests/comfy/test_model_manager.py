"""The pack's models go through ComfyUI's model manager on the real 0.3.75 server: loaded on the first run ("Requested
to load SwinIR" in the server's log), kept loaded for the next run, unloaded by POST /free (the Unload Models
button) with the core's caches emptied, loaded again after; a chain of two SwinIR nodes loads both models.

The server's log is read from a mark taken before each prompt, so what earlier tests of the session loaded does not
count. GET /swinir/cache says how many of the pack's models the manager holds and what the caches hold.
"""

from __future__ import annotations

import time

import pytest

from testkit.comfy_harness import (
    DENOISE_NAME,
    SR_NAME,
    make_image,
    p_load_image,
    p_loader,
    p_restore,
    p_save,
)

LOADED = "Requested to load SwinIR"


def _state(comfy) -> dict:
    return comfy.get("/swinir/cache").json()


def _run_logged(comfy, prompt: dict) -> str:
    """Run a prompt to success; the server's log lines it wrote."""
    mark = len(comfy.log_text())
    comfy.run_ok(prompt)
    return comfy.log_text()[mark:]


def _free(comfy) -> dict:
    """POST /free as the Unload Models button sends it; the state once the prompt worker has carried it out."""
    assert comfy.post("/free", json={"unload_models": True}).status_code == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # /free is carried out by the prompt worker between prompts
        state = _state(comfy)
        if state["loaded_models"] == 0 and not state["bytes"]:
            return state
        time.sleep(0.2)
    pytest.fail(f"after POST /free the server still reports {_state(comfy)}:\n{comfy.log_tail()}")


def _denoise(image: str, prefix: str) -> dict:
    return {
        "1": p_load_image(image),
        "2": p_loader(DENOISE_NAME),
        "3": p_restore("SwinIRDenoise", ["2", 0], ["1", 0], strength=1.0),
        "4": p_save(["3", 0], prefix),
    }


def test_loaded_by_the_model_manager_kept_and_unloaded_by_free(comfy):
    names = [comfy.put_input(f"managed_{i}.png", make_image(40, 48, seed=60 + i)) for i in range(3)]
    _free(comfy)  # from a known state: none of the pack's models loaded

    first = _run_logged(comfy, _denoise(names[0], "managed_first"))
    assert first.count(LOADED) == 1, first
    state = _state(comfy)
    assert state["loaded_models"] == 1 and state["bytes"].get("cpu", 0) > 0, state

    # The same model (the loader's cached output) on another image: the manager still holds it.
    again = _run_logged(comfy, _denoise(names[1], "managed_again"))
    assert LOADED not in again, again
    assert _state(comfy)["loaded_models"] == 1

    # Unload Models: the manager unloads it and the caches go with it; the next run loads it again.
    _free(comfy)
    after = _run_logged(comfy, _denoise(names[2], "managed_after_free"))
    assert after.count(LOADED) == 1, after
    assert _state(comfy)["loaded_models"] == 1


def test_chained_denoise_and_upscale_load_both(comfy):
    name = comfy.put_input("managed_chain.png", make_image(40, 48, seed=70))
    _free(comfy)
    prompt = {
        "1": p_load_image(name),
        "2": p_loader(DENOISE_NAME),
        "3": p_restore("SwinIRDenoise", ["2", 0], ["1", 0], strength=1.0),
        "4": p_loader(SR_NAME),
        "5": p_restore("SwinIRUpscale", ["4", 0], ["3", 0]),
        "6": p_save(["5", 0], "managed_chain"),
    }
    logged = _run_logged(comfy, prompt)
    assert logged.count(LOADED) == 2, logged
    assert _state(comfy)["loaded_models"] == 2
    # No direct free_memory call of the pack's: nothing it does makes ComfyUI unload a model of its own accord.
    assert "models unloaded" not in logged, logged
