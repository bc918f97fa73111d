"""Regenerates workflows/*.json: each graph is built in the real frontend and saved with app.graph.serialize().

    .venv/bin/python tests/comfy/build_workflows.py

Needs what the ComfyUI tests need (scripts/get-comfyui.sh, scripts/get-chromium.sh). Hand-written UI workflows
miss fields the frontend's schema requires; serialising the frontend's own graph cannot.
"""

from __future__ import annotations

import json
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import comfy_harness as cf  # noqa: E402

WORKFLOWS = cf.REPO / "workflows"
EXAMPLE_IMAGE = "swinir_example.png"
DEFAULT_MODEL = "(default) swinir-s-x2-default.safetensors"
SD_CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"

DOWNLOAD_NOTE = (
    "This workflow needs the official SwinIR model {name}.\n\n"
    "Get it with (from the ComfyUI-SwinIR folder):\n"
    "  python -m swinir download {name}\n"
    "which saves it into ComfyUI/models/swinir/. Then pick your image in Load Image."
)


def restore_node(nid, node_type, pos, **widgets):
    return {"id": nid, "type": node_type, "pos": pos, "widgets": widgets}


def spec_upscale_x2():
    return {
        "nodes": [
            {"id": "img", "type": "LoadImage", "pos": [40, 260], "widgets": {"image": EXAMPLE_IMAGE}},
            {"id": "model", "type": "SwinIRModelLoader", "pos": [40, 80], "widgets": {"model_name": DEFAULT_MODEL}},
            {"id": "up", "type": "SwinIRUpscale", "pos": [420, 120], "widgets": {}},
            {"id": "save", "type": "SaveImage", "pos": [780, 120], "size": [420, 400],
             "widgets": {"filename_prefix": "SwinIR_x2"}},
        ],
        "links": [["model", 0, "up", "model"], ["img", 0, "up", "image"], ["up", 0, "save", "images"]],
    }


def _single(node_type, model_name, prefix):
    return {
        "nodes": [
            {"id": "note", "type": "Note", "pos": [40, -170], "size": [520, 150],
             "widgets": {"text": DOWNLOAD_NOTE.format(name=model_name)}},
            {"id": "img", "type": "LoadImage", "pos": [40, 260], "widgets": {"image": EXAMPLE_IMAGE}},
            {"id": "model", "type": "SwinIRModelLoader", "pos": [40, 80], "widgets": {"model_name": model_name}},
            {"id": "fix", "type": node_type, "pos": [460, 120], "widgets": {}},
            {"id": "save", "type": "SaveImage", "pos": [820, 120], "size": [360, 340], "widgets": {"filename_prefix": prefix}},
        ],
        "links": [["model", 0, "fix", "model"], ["img", 0, "fix", "image"], ["fix", 0, "save", "images"]],
    }


def spec_denoise():
    return _single("SwinIRDenoise", cf.DENOISE_NAME, "SwinIR_denoise")


def spec_jpeg():
    return _single("SwinIRJPEGCleanup", cf.JPEG_NAME, "SwinIR_jpeg")


def spec_chain():
    note = (
        "JPEG cleanup, then denoising, then x2 upscaling.\n\nModels: python -m swinir download "
        f"{cf.JPEG_NAME}\nand python -m swinir download {cf.DENOISE_NAME}\n(saved into ComfyUI/models/swinir/). "
        "The x2 model ships with the pack."
    )
    return {
        "nodes": [
            {"id": "note", "type": "Note", "pos": [40, -200], "size": [560, 170], "widgets": {"text": note}},
            {"id": "img", "type": "LoadImage", "pos": [40, 420], "widgets": {"image": EXAMPLE_IMAGE}},
            {"id": "m_jpeg", "type": "SwinIRModelLoader", "pos": [40, 0], "widgets": {"model_name": cf.JPEG_NAME}},
            {"id": "m_dn", "type": "SwinIRModelLoader", "pos": [40, 140], "widgets": {"model_name": cf.DENOISE_NAME}},
            {"id": "m_up", "type": "SwinIRModelLoader", "pos": [40, 280], "widgets": {"model_name": DEFAULT_MODEL}},
            {"id": "jpeg", "type": "SwinIRJPEGCleanup", "pos": [460, 0], "widgets": {}},
            {"id": "dn", "type": "SwinIRDenoise", "pos": [820, 0], "widgets": {}},
            {"id": "up", "type": "SwinIRUpscale", "pos": [1180, 0], "widgets": {}},
            {"id": "save", "type": "SaveImage", "pos": [1540, 0], "widgets": {"filename_prefix": "SwinIR_chain"}},
        ],
        "links": [
            ["m_jpeg", 0, "jpeg", "model"], ["img", 0, "jpeg", "image"],
            ["m_dn", 0, "dn", "model"], ["jpeg", 0, "dn", "image"],
            ["m_up", 0, "up", "model"], ["dn", 0, "up", "image"],
            ["up", 0, "save", "images"],
        ],
    }


def spec_diffusion():
    note = (
        "Generate with Stable Diffusion, then upscale x2 with SwinIR.\n\nPick any SD 1.5 checkpoint you have in "
        "Load Checkpoint. The x2 SwinIR model ships with the pack."
    )
    return {
        "nodes": [
            {"id": "note", "type": "Note", "pos": [40, -190], "size": [520, 150], "widgets": {"text": note}},
            {"id": "ckpt", "type": "CheckpointLoaderSimple", "pos": [40, 0], "widgets": {"ckpt_name": SD_CHECKPOINT}},
            {"id": "pos", "type": "CLIPTextEncode", "pos": [420, -60],
             "widgets": {"text": "a lighthouse on a rocky coast at sunset, detailed, sharp"}},
            {"id": "neg", "type": "CLIPTextEncode", "pos": [420, 200], "widgets": {"text": "blurry, low quality"}},
            {"id": "lat", "type": "EmptyLatentImage", "pos": [420, 440],
             "widgets": {"width": 512, "height": 512, "batch_size": 1}},
            {"id": "ks", "type": "KSampler", "pos": [860, 0],
             "widgets": {"seed": 42, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
            {"id": "vae", "type": "VAEDecode", "pos": [1220, 0], "widgets": {}},
            {"id": "model", "type": "SwinIRModelLoader", "pos": [1220, 140], "widgets": {"model_name": DEFAULT_MODEL}},
            {"id": "up", "type": "SwinIRUpscale", "pos": [1580, 0], "widgets": {}},
            {"id": "save", "type": "SaveImage", "pos": [1940, 0], "widgets": {"filename_prefix": "SwinIR_sd_x2"}},
        ],
        "links": [
            ["ckpt", 0, "ks", "model"], ["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"],
            ["pos", 0, "ks", "positive"], ["neg", 0, "ks", "negative"], ["lat", 0, "ks", "latent_image"],
            ["ks", 0, "vae", "samples"], ["ckpt", 2, "vae", "vae"],
            ["vae", 0, "up", "image"], ["model", 0, "up", "model"], ["up", 0, "save", "images"],
        ],
    }


SPECS = {
    "upscale_x2.json": spec_upscale_x2,
    "denoise.json": spec_denoise,
    "jpeg_cleanup.json": spec_jpeg,
    "chain_jpeg_denoise_upscale.json": spec_chain,
    "upscale_diffusion_output.json": spec_diffusion,
}

BUILD_JS = """
async (spec) => {
  app.graph.clear();
  const nodes = {};
  for (const n of spec.nodes) {
    const node = LiteGraph.createNode(n.type);
    if (!node) throw new Error('unknown node type ' + n.type);
    app.graph.add(node);
    node.pos = n.pos;
    for (const [k, v] of Object.entries(n.widgets || {})) {
      const w = (node.widgets || []).find(w => w.name === k);
      if (!w) throw new Error(n.type + ' has no widget ' + k);
      w.value = v;
    }
    if (n.size) node.size = n.size;
    nodes[n.id] = node;
  }
  for (const [src, slot, dst, input] of spec.links) {
    const idx = nodes[dst].findInputSlot(input);
    if (idx < 0) throw new Error(spec.nodes.find(n => n.id === dst).type + ' has no input ' + input);
    if (!nodes[src].connect(slot, nodes[dst], idx)) throw new Error('could not link ' + src + ' -> ' + dst + '.' + input);
  }
  app.graph.setDirtyCanvas(true, true);
  return JSON.parse(JSON.stringify(app.graph.serialize()));
}
"""


def main() -> int:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for d in ("custom_nodes", "input", "output", "user", "temp", "models"):
            (base / d).mkdir()
        (base / "custom_nodes" / cf.PACK_NAME).symlink_to(cf.PACK_DIR, target_is_directory=True)
        cf.make_models(base / "models")
        server = cf.ComfyServer(base, cf.free_port(), base / "server.log")
        server.start()
        try:
            server.post("/settings/Comfy.TutorialCompleted", data="true")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=cf.CHROMIUM, args=cf.CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                ui = cf.UIPage(page, server).open()
                WORKFLOWS.mkdir(exist_ok=True)
                for name, spec in SPECS.items():
                    wf = page.evaluate(BUILD_JS, spec())
                    # A stable id per file (the frontend gives a cleared graph the all-zero id).
                    wf["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cf.PACK_NAME}/workflows/{name}"))
                    (WORKFLOWS / name).write_text(json.dumps(wf, indent=2) + "\n")
                    print("wrote", WORKFLOWS / name, len(wf["nodes"]), "nodes")
                assert not ui.dialogs and not ui.errors, (ui.dialogs, ui.errors)
                browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
