"""The pack as a person meets it in Chromium, in each frontend (the bundled 1.32.9 and the newest from PyPI).

Every step waits on the app's own state (search results, the graph, the side panel, the image a node shows),
with generous limits for a loaded machine, never on a fixed delay.
"""

from __future__ import annotations

import io
import os
import shutil

from testkit.comfy_harness import (
    BUNDLED_FRONTEND,
    REPO,
    UI_TIMEOUT_MS,
    default_model_path,
    load_workflow,
    make_scene,
    open_ui,
)

DISPLAY_NAMES = [
    "Load SwinIR Model",
    "SwinIR From Upscale Model",
    "SwinIR Upscale",
    "SwinIR Denoise",
    "SwinIR JPEG Cleanup",
]
# docs/screenshot.png is committed (from the bundled frontend); refresh it with SWINIR_UPDATE_SCREENSHOT=1 (tests
# do not dirty the checkout).
DOCS_SCREENSHOT = REPO / "docs" / "screenshot.png"

# The text of the node search's result rows ([role=option] in both frontends; 1.32.9 adds an empty one for the
# input chip).
RESULTS_JS = "() => Array.from(document.querySelectorAll('[role=option]')).map(o => o.innerText).filter(t => t.trim())"


def test_nodes_appear_in_node_search(fresh_ui):
    ui = fresh_ui
    page = ui.page
    ui.dismiss_all()
    page.evaluate("() => app.graph.clear()")
    ui.settle()
    _open_node_search(page)
    page.keyboard.type("SwinIR", delay=20)
    page.wait_for_function(
        f"(names) => {{ const rows = ({RESULTS_JS})(); return names.every(n => rows.some(r => r.includes(n))); }}",
        arg=DISPLAY_NAMES,
        timeout=UI_TIMEOUT_MS,
    )
    # Pick "SwinIR Upscale" as a person would: type more, press Enter once the search has highlighted it (the
    # highlight is cleared while the results refresh; Enter before that adds nothing).
    page.keyboard.type(" Upscale", delay=20)
    page.wait_for_function(
        """() => {
            const input = document.activeElement;
            const id = input && input.getAttribute('aria-activedescendant');  // 1.32.9
            const row = id ? document.getElementById(id) : document.querySelector('[role=option][aria-selected=true]');
            return input.value === 'SwinIR Upscale' && row && row.innerText.startsWith('SwinIR Upscale');
        }""",
        timeout=UI_TIMEOUT_MS,
    )
    page.keyboard.press("Enter")
    page.wait_for_function("() => app.graph._nodes.some(n => n.type === 'SwinIRUpscale')", timeout=UI_TIMEOUT_MS)
    assert page.evaluate("() => app.graph._nodes.map(n => n.type)") == ["SwinIRUpscale"]


def _open_node_search(page) -> None:
    """Double-click an empty part of the canvas until the node search box shows. On a loaded machine the canvas
    can take the two clicks for single ones (it times them itself); a person then double-clicks again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator("#graph-canvas").bounding_box()
    search = page.get_by_role("combobox").or_(page.locator(".comfy-vue-node-search-container input")).first
    for _ in range(10):
        page.mouse.dblclick(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        try:
            search.wait_for(state="visible", timeout=UI_TIMEOUT_MS // 10)
            return
        except PlaywrightTimeout:
            pass
    raise AssertionError("the node search box did not open on double-clicks on the canvas")


def test_help_page_shows_for_a_selected_node(fresh_ui):
    """Select the node, press the info button of the selection toolbox: the side panel shows web/docs/<id>.md."""
    ui = fresh_ui
    page = ui.page
    ui.dismiss_all()
    ui.load_workflow(load_workflow("upscale_x2.json"), "help")
    ui.set_view(offset=(120, 250))
    ui.select_node("SwinIRUpscale")
    page.locator("[data-testid=info-button]").first.click(timeout=UI_TIMEOUT_MS)
    page.wait_for_function(
        "() => document.body.innerText.includes('shared borders are blended')", timeout=UI_TIMEOUT_MS
    )
    text = ui.body_text()
    assert "scale_by" in text and "SwinIR Upscale" in text
    page.keyboard.press("Escape")


def test_queue_from_ui_shows_result_and_screenshot(browser, fresh_comfy):
    assert default_model_path().is_file(), f"the pack's default model is missing: {default_model_path()}"
    fresh_comfy.put_input("swinir_scene.png", make_scene(120, 160))
    with open_ui(browser, fresh_comfy) as ui:
        wf = load_workflow("upscale_x2.json")
        for node in wf["nodes"]:
            if node["type"] == "LoadImage":
                node["widgets_values"][0] = "swinir_scene.png"
        ui.load_workflow(wf, "upscale_x2")
        entry = ui.queue_from_ui()
        assert entry["status"]["status_str"] == "success", entry
        (save_id,) = [k for k, n in entry["prompt"][2].items() if n["class_type"] == "SaveImage"]
        # The SaveImage node shows the result: the frontend loads it from /view.
        ui.wait_for_shown_images({save_id: 320})
        ui.set_view(offset=(70, 40))
        ui.page.mouse.click(700, 700)  # empty canvas: nothing selected, no tooltip
        ui.settle()
        png = ui.page.screenshot(full_page=False)
    shot = REPO / "out" / "comfy-tests" / f"screenshot-{fresh_comfy.frontend.version}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    _save_small(png, shot)
    assert shot.stat().st_size < 300_000
    if os.environ.get("SWINIR_UPDATE_SCREENSHOT") == "1" and fresh_comfy.frontend == BUNDLED_FRONTEND:
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def _save_small(png: bytes, path):
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    img.save(path, optimize=True)
    if path.stat().st_size >= 300_000:
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
