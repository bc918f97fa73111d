"""Regenerates workflows/*.json and their thumbnails workflows/*.jpg, in a real ComfyUI and its real frontend.

    .venv/bin/python -m tests.comfy.build_workflows [--json-only]   (from the repository root)

Each graph is built in the frontend and saved with app.graph.serialize() (hand-written UI workflows miss fields
the frontend's schema requires; serialising the frontend's own graph cannot). Each thumbnail is a before/after of
the template run from the UI (app.queuePrompt, as the Run button does) on samples/chelsea_lr.png, degraded as the
template expects (noise, JPEG); the templates that cannot run here (a model to download, an SD checkpoint) get a
picture of their graph instead. Rerun after a default model changes. Needs what the ComfyUI tests need
(scripts/get-comfyui.sh, scripts/get-chromium.sh) and the pack's default models in swinir/models/.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

from testkit import comfy_harness as cf

WORKFLOWS = cf.REPO / "workflows"
EXAMPLE_IMAGE = cf.EXAMPLE_IMAGE
DEFAULT_X2 = "(default) swinir-s-x2-default.safetensors"
DEFAULT_DENOISE = "(default) swinir-s-denoise-default.safetensors"
DEFAULT_JPEG = "(default) swinir-s-jpeg-default.safetensors"
SD_CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"
PICK_IMAGE = "Pick your image in Load Image (it opens on ComfyUI's example.png)."


def _note(text, pos, size):
    return {"id": "note", "type": "Note", "pos": pos, "size": size, "widgets": {"text": text}}


def spec_upscale_x2():
    note = (
        "Upscales x2 with the pack's built-in SwinIR-S x2 model: runs offline, nothing to download.\n\n"
        + PICK_IMAGE
    )
    return {
        "nodes": [
            _note(note, [40, -130], [520, 110]),
            {"id": "img", "type": "LoadImage", "pos": [40, 260], "widgets": {"image": EXAMPLE_IMAGE}},
            {"id": "model", "type": "SwinIRModelLoader", "pos": [40, 80], "widgets": {"model_name": DEFAULT_X2}},
            {"id": "up", "type": "SwinIRUpscale", "pos": [420, 120], "widgets": {}},
            {"id": "save", "type": "SaveImage", "pos": [780, 120], "size": [420, 400],
             "widgets": {"filename_prefix": "SwinIR_x2"}},
        ],
        "links": [["model", 0, "up", "model"], ["img", 0, "up", "image"], ["up", 0, "save", "images"]],
    }


def _official(name: str) -> str:
    from swinir.catalogue import find_entry

    entry = find_entry(name)
    return f"{entry.file} ({cf.size_mb(entry.size_bytes)}, downloaded on first run)"


def _single(node_type, model_name, prefix, note):
    return {
        "nodes": [
            _note(note, [40, -170], [520, 150]),
            {"id": "img", "type": "LoadImage", "pos": [40, 260], "widgets": {"image": EXAMPLE_IMAGE}},
            {"id": "model", "type": "SwinIRModelLoader", "pos": [40, 80], "widgets": {"model_name": model_name}},
            {"id": "fix", "type": node_type, "pos": [460, 120], "widgets": {}},
            {"id": "save", "type": "SaveImage", "pos": [820, 120], "size": [360, 340], "widgets": {"filename_prefix": prefix}},
        ],
        "links": [["model", 0, "fix", "model"], ["img", 0, "fix", "image"], ["fix", 0, "save", "images"]],
    }


def _blind_note(what: str, known: str, official: str) -> str:
    return (
        f"{what}: runs offline, nothing to download. strength blends with the input.\n\n"
        f"For the paper's quality at one known {known}, pick an official model in the loader, e.g. "
        f"{_official(official)}.\n\n{PICK_IMAGE}"
    )


def spec_denoise():
    note = _blind_note(
        "Removes noise with the pack's built-in blind colour denoiser (any noise level from 0 to 50 on the 0-255 "
        "scale)", "noise level", "color-denoise-M-noise15",
    )
    return _single("SwinIRDenoise", DEFAULT_DENOISE, "SwinIR_denoise", note)


def spec_jpeg():
    note = _blind_note(
        "Removes JPEG artifacts (blocks, ringing) with the pack's built-in blind colour model (JPEG quality 10 to "
        "90)", "JPEG quality", "color-jpeg-M-q10",
    )
    return _single("SwinIRJPEGCleanup", DEFAULT_JPEG, "SwinIR_jpeg", note)


def spec_chain():
    note = (
        "JPEG cleanup, then denoising, then x2 upscaling: for a noisy, compressed photo. All three models ship "
        "with the pack: runs offline, nothing to download.\n\n" + PICK_IMAGE
    )
    return {
        "nodes": [
            _note(note, [40, -200], [560, 150]),
            {"id": "img", "type": "LoadImage", "pos": [40, 420], "widgets": {"image": EXAMPLE_IMAGE}},
            {"id": "m_jpeg", "type": "SwinIRModelLoader", "pos": [40, 0], "widgets": {"model_name": DEFAULT_JPEG}},
            {"id": "m_dn", "type": "SwinIRModelLoader", "pos": [40, 140], "widgets": {"model_name": DEFAULT_DENOISE}},
            {"id": "m_up", "type": "SwinIRModelLoader", "pos": [40, 280], "widgets": {"model_name": DEFAULT_X2}},
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


def spec_auto():
    note = (
        "Measures the image (noise level, JPEG quality) and restores it with the models that fit: JPEG cleanup when a "
        "JPEG grid is found, denoising when the noise is above the threshold, then x2. On a fresh install it uses "
        "the pack's blind defaults and runs offline; official models of the nearest level are used when they are in "
        "models/swinir/ (or, with allow_download, fetched on first use). The text box says what it found, what it "
        "ran and why.\n\n" + PICK_IMAGE
    )
    return {
        "nodes": [
            _note(note, [40, -230], [560, 190]),
            {"id": "img", "type": "LoadImage", "pos": [40, 60], "widgets": {"image": EXAMPLE_IMAGE}},
            {"id": "auto", "type": "SwinIRAutoRestore", "pos": [460, 60], "widgets": {}},
            {"id": "save", "type": "SaveImage", "pos": [860, 60], "size": [420, 400],
             "widgets": {"filename_prefix": "SwinIR_auto"}},
            {"id": "info", "type": "PreviewAny", "pos": [460, 420], "size": [380, 200], "widgets": {}},
        ],
        "links": [["img", 0, "auto", "image"], ["auto", 0, "save", "images"], ["auto", 1, "info", "source"]],
    }


def real_x4_note(entry) -> str:
    return (
        "Upscales x4 with the official real-world SwinIR-M x4 model (GAN), made for images with unknown blur, "
        "noise and compression, such as diffusion outputs.\n\n"
        f"Download: the first run fetches {entry.file} ({cf.size_mb(entry.size_bytes)}) into "
        "ComfyUI/models/swinir/ (progress in the node, checked against its sha256); later runs use that file. "
        "Offline, put the file there by hand.\n\n" + PICK_IMAGE
    )


def spec_real_x4():
    entry = cf.real_x4_entry()
    return {
        "nodes": [
            _note(real_x4_note(entry), [40, -210], [560, 190]),
            {"id": "img", "type": "LoadImage", "pos": [40, 260], "widgets": {"image": EXAMPLE_IMAGE}},
            {"id": "model", "type": "SwinIRModelLoader", "pos": [40, 80], "widgets": {"model_name": entry.file}},
            {"id": "up", "type": "SwinIRUpscale", "pos": [460, 120], "widgets": {}},
            {"id": "save", "type": "SaveImage", "pos": [820, 120], "size": [420, 400],
             "widgets": {"filename_prefix": "SwinIR_real_x4"}},
        ],
        "links": [["model", 0, "up", "model"], ["img", 0, "up", "image"], ["up", 0, "save", "images"]],
    }


def spec_diffusion():
    note = (
        "Generate with Stable Diffusion, then upscale x2 with SwinIR.\n\nPick any SD 1.5 checkpoint you have in "
        "Load Checkpoint. The x2 SwinIR model ships with the pack."
    )
    return {
        "nodes": [
            _note(note, [40, -190], [520, 150]),
            {"id": "ckpt", "type": "CheckpointLoaderSimple", "pos": [40, 0], "widgets": {"ckpt_name": SD_CHECKPOINT}},
            {"id": "pos", "type": "CLIPTextEncode", "pos": [420, -60],
             "widgets": {"text": "a lighthouse on a rocky coast at sunset, detailed, sharp"}},
            {"id": "neg", "type": "CLIPTextEncode", "pos": [420, 200], "widgets": {"text": "blurry, low quality"}},
            {"id": "lat", "type": "EmptyLatentImage", "pos": [420, 440],
             "widgets": {"width": 512, "height": 512, "batch_size": 1}},
            {"id": "ks", "type": "KSampler", "pos": [860, 0],
             "widgets": {"seed": 42, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
            {"id": "vae", "type": "VAEDecode", "pos": [1220, 0], "widgets": {}},
            {"id": "model", "type": "SwinIRModelLoader", "pos": [1220, 140], "widgets": {"model_name": DEFAULT_X2}},
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
    "auto_restore.json": spec_auto,
    "upscale_x4_real_world.json": spec_real_x4,
    "upscale_diffusion_output.json": spec_diffusion,
}
assert sorted(SPECS) == sorted(cf.ALL_WORKFLOWS)

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


# --- thumbnails: workflows/<name>.jpg, which both frontends' template browsers show -----------------------

THUMB_SIDE = 320
SAMPLE = cf.REPO / "samples" / "chelsea_lr.png"  # CC0 (samples/README.md)


def _degraded_inputs() -> dict[str, tuple[np.ndarray, str]]:
    """For each runnable template: the image its Load Image gets for the thumbnail run, and what is wrong with it."""
    from PIL import Image

    clean = np.asarray(Image.open(SAMPLE).convert("RGB"))
    rng = np.random.default_rng(0)

    def noisy(img, sigma):
        return np.clip(np.round(img.astype(np.float64) + rng.normal(0, sigma, img.shape)), 0, 255).astype(np.uint8)

    def jpeg(img, quality):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality)  # Pillow's default 4:2:0 chroma
        return np.asarray(Image.open(buf).convert("RGB"))

    return {
        "upscale_x2.json": (clean, "bicubic x2"),
        "denoise.json": (noisy(clean, 25), "noisy (sigma 25)"),
        "jpeg_cleanup.json": (jpeg(clean, 15), "JPEG quality 15"),
        "chain_jpeg_denoise_upscale.json": (jpeg(noisy(clean, 15), 30), "noisy JPEG, bicubic x2"),
        "auto_restore.json": (jpeg(clean, 20), "JPEG q20, bicubic x2"),
    }


def _label(draw, text, xy, size=13):
    from PIL import ImageFont

    font = ImageFont.load_default(size=size)
    x, y = xy
    box = draw.textbbox((x, y), text, font=font)
    draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=(0, 0, 0))
    draw.text((x, y), text, fill=(255, 255, 255), font=font)


def before_after(before: np.ndarray, after: np.ndarray, before_text: str, after_text: str, zoom: float = 0.7):
    """A square thumbnail: the left half of `before`, the right half of `after` (same size), of a centre square
    `zoom` times the short side (the cat's eyes in samples/chelsea_lr.png)."""
    from PIL import Image, ImageDraw

    h, w = after.shape[:2]
    side = int(min(h, w) * zoom)
    top, left = (h - side) // 2, (w - side) // 2
    crop = (slice(top, top + side), slice(left, left + side))
    a = Image.fromarray(before[crop]).resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    b = Image.fromarray(after[crop]).resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    half = THUMB_SIDE // 2
    canvas = a.copy()
    canvas.paste(b.crop((half, 0, THUMB_SIDE, THUMB_SIDE)), (half, 0))
    draw = ImageDraw.Draw(canvas)
    draw.line([(half, 0), (half, THUMB_SIDE)], fill=(255, 255, 255), width=2)
    _label(draw, before_text, (8, THUMB_SIDE - 20))
    _label(draw, after_text, (half + 8, THUMB_SIDE - 20))
    return canvas


def save_thumbnail(img, name: str) -> Path:
    path = WORKFLOWS / (Path(name).stem + ".jpg")
    img.convert("RGB").save(path, "JPEG", quality=85, optimize=True, progressive=False)
    return path


def thumbnail_from_run(ui, server, name: str, image: np.ndarray, before_text: str) -> Path:
    """Run the template from the UI on `image` (put in Load Image, as a user picks a file) and picture its output."""
    from PIL import Image

    wf = json.loads((WORKFLOWS / name).read_text())
    input_name = f"thumb_{Path(name).stem}.png"
    server.put_input(input_name, image)
    ui.load_workflow(wf, Path(name).stem)
    ui.page.evaluate(
        "(v) => { app.graph._nodes.find(n => n.type === 'LoadImage').widgets.find(w => w.name === 'image').value = v; }",
        input_name,
    )
    entry = ui.queue_from_ui()
    assert entry["status"]["status_str"] == "success", cf.error_text(entry)
    (out,) = server.output_images(entry)
    scale = out.shape[0] // image.shape[0]
    before = np.asarray(Image.fromarray(image).resize((out.shape[1], out.shape[0]), Image.Resampling.BICUBIC))
    after_text = {1: "SwinIR", 2: "SwinIR x2"}[scale]
    # Scale-1 outputs are small (the sample is 225x150): show all of their short side.
    zoom = 0.7 if scale > 1 else 1.0
    return save_thumbnail(before_after(before if scale > 1 else image, out, before_text, after_text, zoom), name)


def thumbnail_of_graph(ui, name: str, caption: str) -> Path:
    """For a template that cannot run here (a model to download, an SD checkpoint): its graph as the frontend
    draws it at 100 % (focus mode, no menus), shrunk into the square, with a caption."""
    from PIL import Image, ImageDraw

    page = ui.page
    ui.load_workflow(json.loads((WORKFLOWS / name).read_text()), Path(name).stem)
    ui.dismiss_all()  # e.g. the Missing Models dialog for the SD checkpoint
    bounds = page.evaluate(
        """() => app.graph._nodes.reduce((b, n) => [Math.min(b[0], n.pos[0]), Math.min(b[1], n.pos[1] - 30),
            Math.max(b[2], n.pos[0] + n.size[0]), Math.max(b[3], n.pos[1] + n.size[1])], [1e9, 1e9, -1e9, -1e9])"""
    )
    margin = 30
    width, height = int(bounds[2] - bounds[0]) + 2 * margin, int(bounds[3] - bounds[1]) + 2 * margin
    old_viewport = page.viewport_size
    # Larger than the clip, so that the canvas's own overlays (zoom buttons, minimap) stay outside it.
    page.set_viewport_size({"width": width + 400, "height": height + 300})
    if not page.evaluate("() => app.extensionManager.focusMode"):
        page.evaluate("() => app.extensionManager.toggleFocusMode()")
    page.wait_for_function(
        "([w, h]) => { const r = app.canvas.canvas.getBoundingClientRect(); return r.width >= w && r.height >= h; }",
        arg=[width, height],
        timeout=cf.UI_TIMEOUT_MS,
    )
    page.evaluate(
        """([x, y]) => { app.canvas.deselectAll && app.canvas.deselectAll(); app.canvas.show_info = false;
                        app.canvas.ds.scale = 1;
                        app.canvas.ds.offset = [x, y]; app.canvas.setDirty(true, true); }""",
        [margin - bounds[0], margin - bounds[1]],
    )
    ui.settle()
    r = page.evaluate("() => { const r = app.canvas.canvas.getBoundingClientRect(); return [r.left, r.top]; }")
    png = page.screenshot(clip={"x": r[0], "y": r[1], "width": width, "height": height})
    page.evaluate("() => { app.extensionManager.toggleFocusMode(); app.canvas.show_info = true; }")
    page.set_viewport_size(old_viewport)
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    shot.thumbnail((THUMB_SIDE, THUMB_SIDE - 40), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (THUMB_SIDE, THUMB_SIDE), shot.getpixel((2, 2)))
    canvas.paste(shot, ((THUMB_SIDE - shot.width) // 2, (THUMB_SIDE - 40 - shot.height) // 2 + 4))
    draw = ImageDraw.Draw(canvas)
    _label(draw, caption, (10, THUMB_SIDE - 26), size=16)
    return save_thumbnail(canvas, name)


def build_thumbnails(ui, server) -> None:
    for name, (image, before_text) in _degraded_inputs().items():
        wf = json.loads((WORKFLOWS / name).read_text())
        absent = [str(cf.default_entry_path(n["widgets_values"][0])) for n in wf["nodes"]
                  if n["type"] == "SwinIRModelLoader" and not cf.default_entry_path(n["widgets_values"][0]).is_file()]
        if absent:
            print(f"no thumbnail for {name}: {', '.join(absent)} absent", file=sys.stderr)
            continue
        print("thumbnail", thumbnail_from_run(ui, server, name, image, before_text))
    entry = cf.real_x4_entry()
    print("thumbnail", thumbnail_of_graph(ui, "upscale_x4_real_world.json",
                                          f"x4 real-world: downloads {cf.size_mb(entry.size_bytes)}"))
    print("thumbnail", thumbnail_of_graph(ui, "upscale_diffusion_output.json", "SD 1.5 + SwinIR x2"))


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json-only", action="store_true", help="write the .json files, not the thumbnails")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = cf.start_server(Path(tmp), "build-workflows", fresh=True)
        try:
            for key, value in (("Comfy.TutorialCompleted", "true"), ("Comfy.Minimap.Visible", "false")):
                server.post(f"/settings/{key}", data=value)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=cf.CHROMIUM, args=cf.CHROMIUM_ARGS, headless=True)
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                context.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
                ui = cf.UIPage(context.new_page(), server).open()
                WORKFLOWS.mkdir(exist_ok=True)
                for name, spec in SPECS.items():
                    wf = ui.page.evaluate(BUILD_JS, spec())
                    # A stable id per file (the frontend gives a cleared graph the all-zero id).
                    wf["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cf.PACK_NAME}/workflows/{name}"))
                    (WORKFLOWS / name).write_text(json.dumps(wf, indent=2) + "\n")
                    print("wrote", WORKFLOWS / name, len(wf["nodes"]), "nodes")
                if not args.json_only:
                    build_thumbnails(ui, server)
                assert not ui.dialogs and not ui.errors, (ui.dialogs, ui.errors)
                browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
