"""The shipped templates on a fresh install, in each frontend (issue 10's check).

A fresh ComfyUI 0.3.75 with the pack and no model added (fixture fresh_comfy), served once with the frontend it
bundles (1.32.9) and once with the newest from PyPI (scripts/get-frontend.sh). In Chromium, every template is
opened from the template browser as a person does; each that needs no download and no Stable Diffusion checkpoint
is queued from the UI (app.queuePrompt, what the Run button does) and must finish with its images, equal to what
the engine computes with the same default models; together they run the upscale, denoise and JPEG nodes. The
download template must open with no missing node and with its model listed by the loader (the download itself is
tested against a local mirror elsewhere).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import swinir
import swinir.model_ref

from testkit.comfy_harness import (
    ALL_WORKFLOWS,
    DOWNLOAD_WORKFLOWS,
    EXAMPLE_IMAGE,
    PACK_NAME,
    RESTORE_NODES,
    RUNNABLE_WORKFLOWS,
    SD_WORKFLOWS,
    WORKFLOWS,
    assert_close_u8,
    default_entry_path,
    engine,
    error_text,
    load,
    load_workflow,
    pack_module,
    quantise,
    real_x4_entry,
    size_mb,
    to_tensor,
)

THUMBNAIL_MAX_BYTES = 80_000


def _widgets(wf: dict, node_type: str) -> list[list]:
    return [n["widgets_values"] for n in wf["nodes"] if n["type"] == node_type]


def _types(wf: dict) -> set[str]:
    return {n["type"] for n in wf["nodes"]}


# --- the files -----------------------------------------------------------------------------------------


def test_template_folder_holds_each_template_and_its_thumbnail():
    assert sorted(p.name for p in WORKFLOWS.glob("*.json")) == sorted(ALL_WORKFLOWS)
    for name in ALL_WORKFLOWS:
        thumb = WORKFLOWS / name.replace(".json", ".jpg")
        assert thumb.is_file(), f"{thumb} is missing: run python -m tests.comfy.build_workflows"
        assert thumb.stat().st_size < THUMBNAIL_MAX_BYTES, f"{thumb} is {thumb.stat().st_size} bytes"
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and im.width == im.height >= 200, (im.format, im.size)


def test_runnable_templates_need_only_the_packs_defaults_and_cover_every_restore_node():
    covered = set()
    for name in RUNNABLE_WORKFLOWS:
        wf = load_workflow(name)
        loaders = _widgets(wf, "SwinIRModelLoader")
        # Auto Restore picks its models itself (on a fresh install, the defaults); every other template loads them.
        assert loaders or "SwinIRAutoRestore" in _types(wf), (name, loaders)
        assert all(v[0].startswith("(default) ") for v in loaders), (name, loaders)
        for (value,) in loaders:
            assert default_entry_path(value).is_file(), f"{name} needs {default_entry_path(value)}, absent"
        assert _widgets(wf, "LoadImage")[0][0] == EXAMPLE_IMAGE, name
        covered |= _types(wf)
    assert covered >= RESTORE_NODES | {"SwinIRModelLoader"}, covered


def test_download_template_names_the_catalogue_model_and_its_size():
    entry = real_x4_entry()
    assert entry.task == "real_sr" and entry.scale == 4 and entry.variant == "M", entry
    (name,) = DOWNLOAD_WORKFLOWS
    wf = load_workflow(name)
    assert _widgets(wf, "SwinIRModelLoader") == [[entry.file]]
    (note,) = _widgets(wf, "Note")
    assert entry.file in note[0] and size_mb(entry.size_bytes) in note[0], note[0]


# --- in the browser, with each frontend ---------------------------------------------------------------------


def test_missing_node_is_reported_by_the_frontend(fresh_ui):
    """The control for the checks below: a workflow with an unknown node type does raise the frontend's warning."""
    wf = load_workflow("upscale_x2.json")
    wf["nodes"][0]["type"] = "NoSuchNodeForThisTest"
    fresh_ui.dismiss_all()
    fresh_ui.load_workflow(wf, "missing_node_control")
    fresh_ui.page.wait_for_function(
        "() => document.body.innerText.toLowerCase().includes('missing node')", timeout=120_000
    )
    assert fresh_ui.unknown_nodes() == ["NoSuchNodeForThisTest"]
    fresh_ui.dismiss_all()


def test_template_browser_shows_each_template_with_its_thumbnail(fresh_ui):
    names = [n.removesuffix(".json") for n in ALL_WORKFLOWS]
    cards = fresh_ui.template_cards(names)
    for name, card in cards.items():
        url = f"{fresh_ui.comfy.url}/api/workflow_templates/{PACK_NAME}/{name}.jpg"
        assert fresh_ui.template_responses.get(url) == 200, (url, fresh_ui.template_responses)
        # The card shows that image (the frontends show it from a blob: copy, and fall back to a generic
        # picture, assets/images/default-template.png, when the request fails).
        assert "default-template" not in card["src"], (name, card)
        with Image.open(WORKFLOWS / f"{name}.jpg") as im:
            assert (card["width"], card["height"]) == im.size, (name, card)
    fresh_ui.dismiss_all()


def _auto_restore_expected(inputs: dict, image):
    """Auto Restore as a fresh install has it: the work layer's own choice among the pack's defaults, each step run
    by the engine (tests/comfy/test_auto_restore.py checks the choices themselves)."""
    import torch

    work = pack_module("nodes.work")
    defaults = {f"(default) {p.name}": p for p in swinir.model_ref.default_model_paths().values()}
    bhwc = image.movedim(1, -1)
    found = work.analyse_images(bhwc)
    pipelines = work.plan_images(found, inputs["scale"], list(defaults), inputs["denoise_threshold"])

    def run(model, batch, family):
        out = swinir.restore(model, batch.movedim(-1, 1), overlap=inputs["overlap"], precision=inputs["precision"])
        return out.movedim(1, -1)

    with torch.inference_mode():
        out, _ = work.auto_restore(bhwc, found, pipelines, load=lambda name: load(defaults[name]), run=run)
    return out.movedim(-1, 1)


def _expected(api: dict, save_id: str, input_dir) -> np.ndarray:
    """What the prompt's SaveImage should hold: the engine run along the same graph, with the same model files."""
    memo: dict[str, object] = {}

    def value(ref):
        node_id, _slot = ref
        if node_id not in memo:
            node = api[node_id]
            cls, inputs = node["class_type"], node["inputs"]
            if cls == "LoadImage":
                memo[node_id] = to_tensor(np.asarray(Image.open(input_dir / inputs["image"]).convert("RGB")))
            elif cls == "SwinIRModelLoader":
                memo[node_id] = default_entry_path(inputs["model_name"])
            elif cls in RESTORE_NODES:
                # The templates keep the nodes' defaults (whole image, no blend, native scale): the engine's call.
                assert inputs["tile_size"] == 0 and inputs.get("strength", 1.0) == 1.0, inputs
                assert inputs.get("scale_by", 0.0) == 0.0, inputs
                memo[node_id] = engine(
                    value(inputs["model"]), value(inputs["image"]), overlap=inputs["overlap"],
                    precision=inputs["precision"],
                )
            elif cls == "SwinIRAutoRestore":
                memo[node_id] = _auto_restore_expected(inputs, value(inputs["image"]))
            else:
                raise AssertionError(f"no expectation for {cls}")
        return memo[node_id]

    return quantise(value(api[save_id]["inputs"]["images"]))


@pytest.mark.parametrize("name", ALL_WORKFLOWS)
def test_fresh_install_opens_and_runs_template(fresh_ui, fresh_comfy, single_thread, name):
    ui = fresh_ui
    stem = name.removesuffix(".json")
    ui.open_template(stem)
    assert ui.unknown_nodes() == [], ui.unknown_nodes()
    if name not in SD_WORKFLOWS:
        assert ui.broken_nodes() == [], ui.broken_nodes()
    assert not ui.dialogs and not ui.errors, (ui.dialogs, ui.errors)
    warnings = ui.missing_warnings()
    unlisted = ui.unlisted_choices()
    if name in SD_WORKFLOWS:
        # The user's own SD checkpoint is the one thing such a template lacks on a fresh install.
        assert all(u.startswith("CheckpointLoaderSimple.") for u in unlisted), unlisted
        assert not [w for w in warnings if "missing node" in w.lower()], warnings
        return
    assert unlisted == [], f"choices the server does not list: {unlisted}"
    assert warnings == [], warnings
    if name in DOWNLOAD_WORKFLOWS:
        # Listed by the loader (so it opens clean and runs once fetched); not run here: it would download.
        loaders = ui.page.evaluate(
            "() => app.graph._nodes.filter(n => n.type === 'SwinIRModelLoader').map(n => n.widgets[0].value)"
        )
        assert loaders == [real_x4_entry().file], loaders
        return

    entry = ui.queue_from_ui()
    assert entry["status"]["status_str"] == "success", error_text(entry)
    api = entry["prompt"][2]  # the prompt as the server ran it, converted by this frontend
    ran = {n["class_type"] for n in api.values()}
    assert ran == _types(load_workflow(name)) - {"Note"}, ran
    (save_id,) = [k for k, n in api.items() if n["class_type"] == "SaveImage"]
    (out,) = fresh_comfy.output_images(entry, save_id)
    expected = _expected(api, save_id, fresh_comfy.input_dir)
    assert_close_u8(out, expected)
    # The Save Image node shows the result, loaded from the server as a person sees it.
    ui.wait_for_shown_images({save_id: out.shape[1]})
