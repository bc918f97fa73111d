"""Progress you can see: during a tiled run the server sends preview images of the image being restored to the
websocket client that queued it (ComfyUI 0.3.75's binary PREVIEW_IMAGE message: event 1, image type 1 = JPEG, then
the JPEG), sized to the server's --preview-size (512 by default)."""

from __future__ import annotations

import io
import struct

import numpy as np

from testkit.comfy_harness import ComfyEvents, default_model_path, make_image, p_load_image, p_loader, p_restore, p_save

PREVIEW_IMAGE = 1  # protocol.BinaryEventTypes.PREVIEW_IMAGE
JPEG = 1


def test_previews_reach_the_websocket_during_a_tiled_run(comfy):
    from PIL import Image

    default = default_model_path()
    assert default.is_file(), f"the pack's default model is missing: {default}"
    comfy.put_input("preview_big.png", make_image(320, 320, seed=80))
    prompt = {
        "1": p_load_image("preview_big.png"),
        "2": p_loader("(default) " + default.name),
        "3": p_restore("SwinIRUpscale", ["2", 0], ["1", 0], tile_size=64, overlap=8),
        "4": p_save(["3", 0], "previewed"),
    }
    events = ComfyEvents(comfy)
    previews: list[Image.Image] = []
    try:
        pid = events.queue(prompt)

        def ends(m: dict) -> bool:
            if m.get("type") == "_binary":
                event, kind = struct.unpack(">II", m["data"][:8])
                if event == PREVIEW_IMAGE:
                    assert kind == JPEG
                    previews.append(Image.open(io.BytesIO(m["data"][8:])))
            return m.get("type") in ComfyEvents.END and m["data"].get("prompt_id") == pid

        end = events.wait_for(ends, timeout=600)
    finally:
        events.close()
    assert end["type"] == "execution_success", end
    assert previews, f"no preview image reached the websocket during the run:\n{comfy.log_tail()}"
    for image in previews:
        image.load()
        assert max(image.size) <= 512 and image.size[0] == image.size[1], image.size  # the square output, scaled
    # Tiles fill in: a later preview shows more of the image (fewer black pixels) than the first.
    dark = [int((np.asarray(image.convert("L")) < 4).sum()) for image in previews]
    assert len(previews) == 1 or dark[-1] <= dark[0], dark
