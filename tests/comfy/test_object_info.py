"""The pack's nodes as ComfyUI's server describes them to the frontend (/object_info)."""

from __future__ import annotations

import pytest

from testkit.comfy_harness import ALL_WORKFLOWS, DEFAULT_ENTRY, DENOISE_NAME, GRAY_DENOISE_NAME, JPEG_NAME, PACK_NAME, SPANDREL_SR_NAME

NODES = {
    "SwinIRModelLoader": "Load SwinIR Model",
    "SwinIRFromUpscaleModel": "SwinIR From Upscale Model",
    "SwinIRUpscale": "SwinIR Upscale",
    "SwinIRDenoise": "SwinIR Denoise",
    "SwinIRJPEGCleanup": "SwinIR JPEG Cleanup",
}
RESTORE_INPUTS = ["model", "image", "tile_size", "overlap", "precision"]


@pytest.fixture(scope="module")
def info(comfy):
    r = comfy.get("/object_info")
    assert r.status_code == 200
    return r.json()


@pytest.mark.parametrize("node_id", list(NODES))
def test_node_is_registered_with_tooltips(info, node_id):
    node = info[node_id]
    assert node["display_name"] == NODES[node_id]
    assert node["python_module"] == f"custom_nodes.{PACK_NAME}"
    assert node["category"] == "image/SwinIR"
    assert len(node["description"]) > 40
    inputs = {**node["input"].get("required", {}), **node["input"].get("optional", {})}
    assert inputs
    for name, (_, opts) in inputs.items():
        assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert all(node["output_tooltips"]), f"{node_id} has outputs without tooltips"


def test_restore_nodes_inputs(info):
    for node_id, extra in [("SwinIRUpscale", []), ("SwinIRDenoise", ["strength"]), ("SwinIRJPEGCleanup", ["strength"])]:
        node = info[node_id]
        assert node["input_order"]["required"] == RESTORE_INPUTS + extra
        req = node["input"]["required"]
        assert req["model"][0] == "SWINIR_MODEL"
        assert req["image"][0] == "IMAGE"
        assert req["tile_size"][0] == "INT" and req["tile_size"][1]["default"] == 0
        assert req["overlap"][0] == "INT"
        assert req["precision"][1]["options"] == ["fp32", "bf16", "fp16"]
        assert node["output"] == ["IMAGE"]
        if extra:
            s = req["strength"][1]
            assert (s["min"], s["max"], s["default"]) == (0.0, 1.0, 1.0)
    up = info["SwinIRUpscale"]["input"]["optional"]["scale_by"]
    assert up[0] == "FLOAT" and up[1]["default"] == 0.0


def test_loader_lists_default_swinir_and_upscale_models(info):
    node = info["SwinIRModelLoader"]
    options = node["input"]["required"]["model_name"][1]["options"]
    assert options[0] == DEFAULT_ENTRY
    assert DENOISE_NAME in options and JPEG_NAME in options  # models/swinir/
    assert GRAY_DENOISE_NAME in options  # a 'swinir' folder from extra_model_paths.yaml
    assert SPANDREL_SR_NAME in options  # models/upscale_models/
    assert node["output"] == ["SWINIR_MODEL", "STRING"]
    assert info["SwinIRFromUpscaleModel"]["input"]["required"]["upscale_model"][0] == "UPSCALE_MODEL"


def test_model_list_follows_the_folder(comfy):
    """A file dropped into models/swinir/ shows up on the next /object_info (what the UI's refresh reads)."""
    extra = comfy.models_dir / "swinir" / "added_later.safetensors"
    extra.write_bytes(b"")
    try:
        options = comfy.get("/object_info/SwinIRModelLoader").json()["SwinIRModelLoader"]["input"]["required"][
            "model_name"
        ][1]["options"]
        assert "added_later.safetensors" in options
    finally:
        extra.unlink()


@pytest.mark.parametrize("node_id", list(NODES))
def test_help_page_is_served(comfy, node_id):
    # Frontend 1.32.9 looks up a custom node's help at /extensions/<pack>/docs/<NodeId>.md (WEB_DIRECTORY).
    r = comfy.get(f"/extensions/{PACK_NAME}/docs/{node_id}.md")
    assert r.status_code == 200
    assert r.text.startswith(f"# {NODES[node_id]}")


def test_workflows_are_listed_as_templates(comfy):
    listed = comfy.get("/workflow_templates").json()
    names = [n.removesuffix(".json") for n in ALL_WORKFLOWS]
    assert sorted(listed[PACK_NAME]) == sorted(names)
    for name in names:
        r = comfy.get(f"/api/workflow_templates/{PACK_NAME}/{name}.json")
        assert r.status_code == 200 and r.json()["nodes"]
        # The thumbnail the template browsers ask for.
        r = comfy.get(f"/api/workflow_templates/{PACK_NAME}/{name}.jpg")
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
