"""The ComfyUI test harness: a real ComfyUI 0.3.75 server with this pack, Chromium, test models and images.

ComfyUI comes from scripts/get-comfyui.sh (into .comfyui/ComfyUI), Chromium from scripts/get-chromium.sh.
Without them these tests skip with the reason; with SWINIR_REQUIRE_COMFY=1 (CI) they fail instead.

The server runs from a temporary --base-directory (custom_nodes/, models/, input/, output/, user/), with
the pack linked in as custom_nodes/ComfyUI-SwinIR, on 127.0.0.1 and a free port, on the CPU. It is stopped
by its PID at the end of the session, also when tests fail. Its log is kept in out/comfy-tests/.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
COMFY_DIR = Path(os.environ.get("SWINIR_COMFYUI_DIR", REPO / ".comfyui" / "ComfyUI"))
CHROMIUM = os.environ.get("SWINIR_CHROMIUM", "/usr/bin/chromium")
PACK_NAME = "ComfyUI-SwinIR"
PACK_DIR = Path(os.environ.get("SWINIR_PACK_DIR", REPO))
REQUIRE = os.environ.get("SWINIR_REQUIRE_COMFY") == "1"
LOG_DIR = REPO / "out" / "comfy-tests"
START_TIMEOUT = float(os.environ.get("SWINIR_COMFY_START_TIMEOUT", "180"))

# The expected outputs come from the core library, imported from the checkout as `swinir`.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Official-style file names of the small random-weight models the tests write (the names decide task/level).
DENOISE_NAME = "005_colorDN_DFWB_s128w8_SwinIR-M_noise15.pth"
JPEG_NAME = "006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg10.pth"
GRAY_DENOISE_NAME = "004_grayDN_DFWB_s128w8_SwinIR-M_noise25.pth"
SR_NAME = "tiny_classicalSR_s48w8_x2.pth"
SPANDREL_SR_NAME = "tiny_swinir_x2_upscale_model.pth"
NOT_SWINIR_NAME = "tiny_compact_x2_not_swinir.pth"


def missing(reason: str):
    """Skip, or fail under SWINIR_REQUIRE_COMFY=1 (CI must not pass by skipping)."""
    if REQUIRE:
        pytest.fail(f"{reason} (SWINIR_REQUIRE_COMFY=1)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# Small random-weight checkpoints, in the official .pth form ({'params': state_dict}).


def _spandrel_swinir(**kw):
    from spandrel.architectures.SwinIR import SwinIR

    torch = pytest.importorskip("torch")
    torch.manual_seed(kw.pop("seed", 0))
    base = dict(
        img_size=48,
        patch_size=1,
        embed_dim=24,
        depths=[2],
        num_heads=[2],
        mlp_ratio=2.0,
        resi_connection="1conv",
    )
    base.update(kw)
    net = SwinIR(**base).eval()
    # Random init gives near-identity SR models; perturb so outputs carry real network arithmetic.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return net


def write_official_pth(path: Path, net) -> Path:
    import torch

    torch.save({"params": net.state_dict()}, path)
    return path


def make_models(models_dir: Path) -> dict[str, Path]:
    """Writes the test models into models_dir/swinir and models_dir/upscale_models; returns name -> path."""
    import torch

    swinir_dir = models_dir / "swinir"
    upscale_dir = models_dir / "upscale_models"
    swinir_dir.mkdir(parents=True, exist_ok=True)
    upscale_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    out[DENOISE_NAME] = write_official_pth(
        swinir_dir / DENOISE_NAME,
        _spandrel_swinir(upscale=1, in_chans=3, img_size=128, window_size=8, img_range=1.0, upsampler="", seed=1),
    )
    out[JPEG_NAME] = write_official_pth(
        swinir_dir / JPEG_NAME,
        _spandrel_swinir(upscale=1, in_chans=3, img_size=126, window_size=7, img_range=255.0, upsampler="", seed=2),
    )
    # This one lives in a folder that only extra_model_paths.yaml names (see ComfyServer.start).
    extra_dir = models_dir.parent / "extra_models" / "swinir_extra"
    extra_dir.mkdir(parents=True, exist_ok=True)
    out[GRAY_DENOISE_NAME] = write_official_pth(
        extra_dir / GRAY_DENOISE_NAME,
        _spandrel_swinir(upscale=1, in_chans=1, img_size=128, window_size=8, img_range=1.0, upsampler="", seed=3),
    )
    out[SR_NAME] = write_official_pth(
        swinir_dir / SR_NAME,
        _spandrel_swinir(upscale=2, in_chans=3, window_size=8, img_range=1.0, upsampler="pixelshuffle", seed=4),
    )
    # For the built-in Load Upscale Model -> SwinIR From Upscale Model path (spandrel loads it).
    out[SPANDREL_SR_NAME] = write_official_pth(
        upscale_dir / SPANDREL_SR_NAME,
        _spandrel_swinir(upscale=2, in_chans=3, window_size=8, img_range=1.0, upsampler="pixelshuffledirect", seed=5),
    )
    # A non-SwinIR upscale model (spandrel's Compact / Real-ESRGAN SRVGG), to check the clear refusal.
    from spandrel.architectures.Compact import Compact as SRVGGNetCompact

    torch.manual_seed(6)
    compact = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    torch.save(compact.state_dict(), upscale_dir / NOT_SWINIR_NAME)
    out[NOT_SWINIR_NAME] = upscale_dir / NOT_SWINIR_NAME
    return out


# --------------------------------------------------------------------------------------------------
# The server.


class ComfyServer:
    def __init__(self, base: Path, port: int, log_path: Path):
        self.base = base
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.input_dir = base / "input"
        self.output_dir = base / "output"
        self.models_dir = base / "models"
        self.proc: subprocess.Popen | None = None
        self.models: dict[str, Path] = {}

    # -- process ------------------------------------------------------------------------------------
    def start(self) -> None:
        import requests

        cmd = [
            sys.executable,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--disable-api-nodes",
            "--base-directory",
            str(self.base),
            "--database-url",
            f"sqlite:///{self.base / 'comfyui.db'}",
            "--log-stdout",
        ]
        # The user's way to keep models elsewhere: the 'swinir' folder name works in extra_model_paths.yaml.
        extra = self.base / "extra_model_paths.yaml"
        extra.write_text(
            "swinir_tests:\n"
            f"    base_path: {self.base / 'extra_models'}\n"
            "    swinir: swinir_extra\n"
        )
        cmd += ["--extra-model-paths-config", str(extra)]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("SWINIR_REQUIRE_COMFY", None)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=COMFY_DIR, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                r = requests.get(self.url + "/object_info/SwinIRUpscale", timeout=5)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"ComfyUI did not answer within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")
        log = self.log_text()
        if "IMPORT FAILED" in log and PACK_NAME in log.split("IMPORT FAILED", 1)[1].splitlines()[0]:
            raise RuntimeError(f"ComfyUI could not import the pack:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        if getattr(self, "_log", None):
            self._log.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- HTTP ------------------------------------------------------------------------------------------
    def get(self, path: str, **kw):
        import requests

        kw.setdefault("timeout", 30)
        return requests.get(self.url + path, **kw)

    def post(self, path: str, **kw):
        import requests

        kw.setdefault("timeout", 30)
        return requests.post(self.url + path, **kw)

    def queue(self, prompt: dict) -> str:
        r = self.post("/prompt", json={"prompt": prompt, "client_id": "pytest"})
        assert r.status_code == 200, f"/prompt refused the prompt: {r.status_code} {r.text}"
        return r.json()["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        """The /history entry of a finished prompt."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), f"ComfyUI died:\n{self.log_tail()}"
            h = self.get(f"/history/{prompt_id}").json()
            if prompt_id in h and h[prompt_id].get("status", {}).get("completed") is not None:
                entry = h[prompt_id]
                if entry["status"].get("status_str") in ("success", "error") or entry.get("outputs"):
                    return entry
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 300) -> dict:
        return self.wait(self.queue(prompt), timeout)

    def run_ok(self, prompt: dict, timeout: float = 300) -> dict:
        entry = self.run(prompt, timeout)
        assert entry["status"]["status_str"] == "success", error_text(entry)
        return entry

    # -- files -----------------------------------------------------------------------------------------
    def put_input(self, name: str, array: np.ndarray) -> str:
        from PIL import Image

        self.input_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(self.input_dir / name)
        return name

    def output_images(self, entry: dict, node_id: str | None = None) -> list[np.ndarray]:
        from PIL import Image

        images = []
        for nid, out in entry["outputs"].items():
            if node_id is not None and nid != str(node_id):
                continue
            for img in out.get("images", []):
                path = self.output_dir / img.get("subfolder", "") / img["filename"]
                images.append(np.asarray(Image.open(path).convert("RGB")))
        return images


def error_text(entry: dict) -> str:
    msgs = entry.get("status", {}).get("messages", [])
    return json.dumps(msgs, indent=1)[:4000]


class UIPage:
    """A ComfyUI tab, with the dialogs and page errors it raised."""

    def __init__(self, page, comfy: ComfyServer):
        self.page = page
        self.comfy = comfy
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._on_dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _on_dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self):
        self.page.goto(self.comfy.url + "/", wait_until="domcontentloaded", timeout=120_000)
        self.page.wait_for_function("() => !!(window.app && window.app.graph)", timeout=120_000)
        # Let extensions finish registering node definitions.
        self.page.wait_for_function(
            "() => !!(window.LiteGraph && LiteGraph.registered_node_types['SwinIRUpscale'])", timeout=60_000
        )
        self.page.keyboard.press("Escape")
        return self

    def body_text(self) -> str:
        return self.page.inner_text("body")

    def load_workflow(self, wf: dict, name: str | None = None):
        self.page.evaluate("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); }", [wf, name])
        self.page.wait_for_timeout(500)

    def node_screen_pos(self, node_type: str, dx: float = 60, dy: float = -15) -> tuple[float, float]:
        """Page coordinates of a point of the first node of a type (default: on its title bar)."""
        return tuple(
            self.page.evaluate(
                """([type, dx, dy]) => {
                    const n = app.graph._nodes.find(n => n.type === type);
                    const [x, y] = app.canvas.ds.convertOffsetToCanvas([n.pos[0] + dx, n.pos[1] + dy]);
                    const r = app.canvas.canvas.getBoundingClientRect();
                    return [r.left + x, r.top + y];
                }""",
                [node_type, dx, dy],
            )
        )

    def set_view(self, offset=(0, 0), scale=1.0):
        self.page.evaluate(
            "([o, s]) => { app.canvas.ds.offset = o; app.canvas.ds.scale = s; app.graph.setDirtyCanvas(true, true); }",
            [list(offset), scale],
        )
        self.page.wait_for_timeout(300)

    def to_api(self, wf: dict) -> dict:
        """The workflow in API format, as the Run button sends it (the frontend's own converter)."""
        return self.page.evaluate(
            "async (wf) => { await app.loadGraphData(wf); return (await app.graphToPrompt()).output; }", wf
        )



@contextlib.contextmanager
def open_ui(browser, comfy: ComfyServer):
    """A fresh browser context on the ComfyUI page, ready for use; closed afterwards."""
    # A new user gets the Templates dialog over the canvas (it swallows clicks and keys); the minimap and the
    # "Nodes 2.0" banner only clutter screenshots.
    for key, value in (("Comfy.TutorialCompleted", "true"), ("Comfy.Minimap.Visible", "false")):
        r = comfy.post(f"/settings/{key}", data=value)
        assert r.status_code == 200, r.text
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield UIPage(page, comfy).open()
    finally:
        context.close()


# --------------------------------------------------------------------------------------------------
# Images, expected outputs, API prompts.


WORKFLOWS = REPO / "workflows"
RUNNABLE_WORKFLOWS = [
    "upscale_x2.json",
    "denoise.json",
    "jpeg_cleanup.json",
    "chain_jpeg_denoise_upscale.json",
]
ALL_WORKFLOWS = RUNNABLE_WORKFLOWS + ["upscale_diffusion_output.json"]
EXAMPLE_IMAGE = "swinir_example.png"
DEFAULT_ENTRY = "(default) swinir-s-x2-default.safetensors"


def default_model_path() -> Path:
    """The default model the server's copy of the pack uses."""
    import swinir

    return PACK_DIR / "models" / swinir.default_model_path().name


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB uint8 image with gradients, edges and texture (so every stage does real work)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 127 + 100 * np.sin(x / 7.0 + seed) * np.cos(y / 11.0)
    g = 255 * x / max(width - 1, 1)
    b = np.where(((x // 9 + y // 9) % 2) == 0, 220, 40).astype(np.float32)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_scene(height: int = 96, width: int = 128) -> np.ndarray:
    """A small picture (sky, sun, hills, lettering) drawn 4x larger and shrunk: what an SR model is for."""
    from PIL import Image, ImageDraw, ImageFont

    s = 4
    big = Image.new("RGB", (width * s, height * s))
    d = ImageDraw.Draw(big)
    for y in range(height * s):
        t = y / (height * s)
        d.line([(0, y), (width * s, y)], fill=(int(70 + 120 * t), int(130 + 80 * t), int(220 - 40 * t)))
    d.ellipse([width * s * 0.68, height * s * 0.08, width * s * 0.88, height * s * 0.35], fill=(255, 214, 90))
    d.polygon([(0, height * s), (0, height * s * 0.62), (width * s * 0.3, height * s * 0.4),
               (width * s * 0.62, height * s * 0.7), (width * s, height * s * 0.5), (width * s, height * s)],
              fill=(52, 110, 60))
    d.polygon([(0, height * s), (width * s * 0.45, height * s * 0.75), (width * s, height * s * 0.82),
               (width * s, height * s)], fill=(34, 80, 40))
    try:
        font = ImageFont.load_default(size=22 * s // 2)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    d.text((width * s * 0.06, height * s * 0.08), "SwinIR", fill=(255, 255, 255), font=font,
           stroke_width=s, stroke_fill=(20, 30, 60))
    small = big.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=None)
    return np.asarray(small)


def to_tensor(img: np.ndarray):
    """uint8 HWC -> NCHW float in [0, 1], exactly as ComfyUI's LoadImage makes it."""
    import torch

    return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def quantise(x) -> np.ndarray:
    """NCHW float -> HWC uint8 like SaveImage in ComfyUI 0.3.75: clip(255 * x) then truncate to uint8."""
    arr = 255.0 * x[0].permute(1, 2, 0).cpu().numpy()
    return np.clip(arr, 0, 255).astype(np.uint8)


_MODELS: dict[str, object] = {}


def load(path: Path):
    import swinir

    key = str(path)
    if key not in _MODELS:
        _MODELS[key] = swinir.load_model(path)
    return _MODELS[key]


def engine(path: Path, x, **kw):
    """swinir.restore with the nodes' defaults (overlap 32, fp32, automatic tile)."""
    import swinir

    kw.setdefault("overlap", 32)
    kw.setdefault("precision", "fp32")
    return swinir.restore(load(path), x, **kw)


def blend(x, y, strength: float):
    return (x + strength * (y - x)).clamp(0, 1)


def assert_close_u8(actual: np.ndarray, expected: np.ndarray, tol: int = 1):
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= tol, f"max difference {diff.max()} grey levels (> {tol}) at {np.argwhere(diff > tol)[:5].tolist()}"


def load_workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / name).read_text())


# --- API-format prompt pieces -----------------------------------------------------------------------


def p_load_image(name: str) -> dict:
    return {"class_type": "LoadImage", "inputs": {"image": name}}


def p_loader(model_name: str) -> dict:
    return {"class_type": "SwinIRModelLoader", "inputs": {"model_name": model_name}}


def p_restore(node: str, model_ref, image_ref, tile_size=0, overlap=32, precision="fp32", **extra) -> dict:
    inputs = {"model": model_ref, "image": image_ref, "tile_size": tile_size, "overlap": overlap, "precision": precision}
    inputs.update(extra)
    return {"class_type": node, "inputs": inputs}


def p_save(image_ref, prefix: str) -> dict:
    return {"class_type": "SaveImage", "inputs": {"images": image_ref, "filename_prefix": prefix}}
