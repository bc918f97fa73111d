"""The ComfyUI test harness: a real ComfyUI 0.3.75 server with this pack, Chromium, test models and images.

ComfyUI comes from scripts/get-comfyui.sh (into .comfyui/ComfyUI), the newest frontend from scripts/get-frontend.sh
(into .comfyui/frontend-VERSION), Chromium from scripts/get-chromium.sh. Without them these tests skip with the
reason; with SWINIR_REQUIRE_COMFY=1 (CI) they fail instead.

The server runs from a temporary --base-directory (custom_nodes/, models/, input/, output/, user/), with
the pack linked in as custom_nodes/ComfyUI-SwinIR, on 127.0.0.1 and a free port, on the CPU. It is stopped
by its PID at the end of the session, also when tests fail. Its log is kept in out/comfy-tests/. A server serves
either the frontend ComfyUI bundles (1.32.9) or, with --front-end-root, the newest from PyPI (FRONTENDS).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
COMFY_DIR = Path(os.environ.get("SWINIR_COMFYUI_DIR", REPO / ".comfyui" / "ComfyUI"))
CHROMIUM = os.environ.get("SWINIR_CHROMIUM", "/usr/bin/chromium")
PACK_NAME = "ComfyUI-SwinIR"
PACK_DIR = Path(os.environ.get("SWINIR_PACK_DIR", REPO))
# CI (where CI is set, and .ci/run sets SWINIR_REQUIRE_COMFY=1) fails instead of skipping; the same rule as
# tests/shared_data.py for the test data (this module is also imported outside pytest, without tests/ on the path).
REQUIRE = os.environ.get("SWINIR_REQUIRE_COMFY") == "1" or os.environ.get("CI", "").lower() not in ("", "0", "false")
LOG_DIR = REPO / "out" / "comfy-tests"
START_TIMEOUT = float(os.environ.get("SWINIR_COMFY_START_TIMEOUT", "180"))
# UI steps (page load, node search, dialogs) wait on the app's own state, with limits generous enough for a
# loaded 2-core machine; they return as soon as the state is reached.
UI_TIMEOUT_MS = int(float(os.environ.get("SWINIR_UI_TIMEOUT", "180")) * 1000)


def _newest_frontend_version() -> str:
    """The version scripts/get-frontend.sh installs by default (one place to raise it)."""
    text = (REPO / "scripts" / "get-frontend.sh").read_text()
    match = re.search(r"^VERSION=\$\{1:-([0-9][0-9A-Za-z.+-]*)\}", text, re.M)
    assert match, "scripts/get-frontend.sh has no VERSION=${1:-X.Y.Z} line"
    return match.group(1)


@dataclass(frozen=True)
class Frontend:
    """A ComfyUI frontend the browser tests run against: the one ComfyUI bundles, or a --front-end-root."""

    version: str
    root: Path | None  # None: the comfyui-frontend-package installed beside ComfyUI

    def missing_reason(self) -> str | None:
        if self.root is not None and not (self.root / "index.html").is_file():
            return f"ComfyUI frontend {self.version} not installed at {self.root}; run scripts/get-frontend.sh"
        return None


BUNDLED_FRONTEND = Frontend("1.32.9", None)  # what ComfyUI 0.3.75 pins in its requirements.txt
_NEWEST = os.environ.get("SWINIR_FRONTEND_VERSION") or _newest_frontend_version()
NEWEST_FRONTEND = Frontend(
    _NEWEST, REPO / ".comfyui" / f"frontend-{_NEWEST}" / "comfyui_frontend_package" / "static"
)
FRONTENDS = [BUNDLED_FRONTEND, NEWEST_FRONTEND]

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
    """Skip, or fail in CI (CI must not pass by skipping)."""
    if REQUIRE:
        pytest.fail(f"{reason} (CI runs every test: CI or SWINIR_REQUIRE_COMFY=1 is set)", pytrace=False)
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
    def __init__(self, base: Path, port: int, log_path: Path, frontend: Frontend = BUNDLED_FRONTEND):
        self.base = base
        self.frontend = frontend
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.input_dir = base / "input"
        self.output_dir = base / "output"
        self.models_dir = base / "models"
        self.proc: subprocess.Popen | None = None
        self.models: dict[str, Path] = {}
        self.env: dict[str, str] = {}  # added to this process's environment for the server (at every start)

    # -- process ------------------------------------------------------------------------------------
    def start(self) -> None:
        import requests

        cmd = [
            sys.executable,
            "main.py",
            *(["--cpu"] if getattr(self, "device", "cpu") == "cpu" else []),  # device: see start_server
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
        if self.frontend.root is not None:
            cmd += ["--front-end-root", str(self.frontend.root)]
        env = {**os.environ, **self.env}
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
        if self.frontend.root is not None and f"web root: {self.frontend.root}" not in log:
            raise RuntimeError(f"ComfyUI does not serve the frontend at {self.frontend.root}:\n{self.log_tail()}")
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


# Text the frontends show when a workflow lacks something: node types (both), model files (1.32.9 dialog,
# 1.58.1 panel), input images (1.58.1 "Media input missing").
MISSING_WORDS = ("missing node", "missing model", "media input missing")


class UIPage:
    """A ComfyUI tab, with the dialogs and page errors it raised."""

    def __init__(self, page, comfy: ComfyServer):
        self.page = page
        self.comfy = comfy
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.template_responses: dict[str, int] = {}  # URL -> HTTP status, for /api/workflow_templates/...
        page.on("dialog", self._on_dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("response", self._on_response)

    def _on_response(self, response):
        if "/api/workflow_templates/" in response.url:
            self.template_responses[response.url] = response.status

    def _on_dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self):
        self.page.goto(self.comfy.url + "/", wait_until="domcontentloaded", timeout=UI_TIMEOUT_MS)
        self.page.wait_for_function("() => !!(window.app && window.app.graph)", timeout=UI_TIMEOUT_MS)
        # Extensions register the node definitions after the app object exists.
        self.page.wait_for_function(
            "() => !!(window.LiteGraph && LiteGraph.registered_node_types['SwinIRUpscale'])", timeout=UI_TIMEOUT_MS
        )
        version = self.page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__")
        assert version == self.comfy.frontend.version, (
            f"the page runs frontend {version}, expected {self.comfy.frontend.version}"
        )
        self.page.keyboard.press("Escape")
        self.settle()
        return self

    def settle(self):
        """Until the frontend has rendered what the last step changed (Vue and the canvas draw on animation frames)."""
        self.page.evaluate(
            "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 0))))"
        )

    def dismiss_all(self):
        """Close dialogs and toasts (what a workflow opened before raised), so that what shows next is the next
        workflow's. Through the frontend's own stores: 1.32.9's dialogs ignore Escape unless focused."""
        self.page.evaluate(
            """() => {
                const stores = app.extensionManager._p._s;
                const dialogs = stores.get('dialog');
                for (const d of [...dialogs.dialogStack]) dialogs.closeDialog({key: d.key});
                const toast = app.extensionManager.toast;
                (toast.removeAll || toast.dismissAll).call(toast);
            }"""
        )
        self.page.wait_for_function(
            """() => !app.extensionManager._p._s.get('dialog').dialogStack.length
                     && !document.querySelector('[role=dialog]')""",
            timeout=UI_TIMEOUT_MS,
        )
        self.settle()

    def body_text(self) -> str:
        return self.page.inner_text("body")

    def missing_warnings(self) -> list[str]:
        """Lines of the page that say a node type, model or input of the open workflow is missing."""
        return [line for line in self.body_text().splitlines() if any(w in line.lower() for w in MISSING_WORDS)]

    def load_workflow(self, wf: dict, name: str | None = None):
        self.page.evaluate("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); }", [wf, name])
        self.settle()

    # -- the template browser (Workflow > Browse Templates) -----------------------------------------------
    def open_template_browser(self):
        """The Templates dialog, showing this pack's templates (its entry in the EXTENSIONS group)."""
        self.page.keyboard.press("Escape")
        self.page.evaluate("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        self.page.get_by_text(PACK_NAME, exact=True).first.click(timeout=UI_TIMEOUT_MS)
        return self.page.locator("[data-testid^='template-workflow-']")

    def template_cards(self, names: list[str]) -> dict[str, dict]:
        """Each template card of this pack: its title text and thumbnail, read as each thumbnail has loaded (the
        grid is virtual: a card scrolled out of view may lose its image)."""
        self.open_template_browser()
        return {name: self._loaded_card(name) for name in names}

    def _loaded_card(self, name: str) -> dict:
        """Scroll the template browser to this pack's card `name` and wait until its thumbnail has loaded
        (thumbnails load as their cards scroll into view); its title text and thumbnail."""
        self.page.locator(f"[data-testid='template-workflow-{name}']").scroll_into_view_if_needed(
            timeout=UI_TIMEOUT_MS
        )
        handle = self.page.wait_for_function(
            """(n) => {
                const card = document.querySelector(`[data-testid='template-workflow-${n}']`);
                const img = card && card.querySelector('img');
                return img && img.complete && img.naturalWidth > 0 &&
                    {text: card.innerText, src: img.src, width: img.naturalWidth, height: img.naturalHeight};
            }""",
            arg=name,
            timeout=UI_TIMEOUT_MS,
        )
        return handle.json_value()

    def open_template(self, name: str):
        """Open workflows/<name>.json as a person does: click its card in the template browser. Returns once the
        dialog has closed and the canvas holds that template's nodes."""
        wf = load_workflow(name + ".json")
        self.dismiss_all()
        self.open_template_browser()
        # The grid is virtual and lays cards out again as their thumbnails load: click once this card's has loaded,
        # so the click cannot land on a card that moved under it.
        self._loaded_card(name)
        self.settle()
        self.page.locator(f"[data-testid='template-workflow-{name}']").click(timeout=UI_TIMEOUT_MS)
        try:
            self.page.wait_for_function(
                """([path, nodes]) => {
                    const wf = app.extensionManager.workflow.activeWorkflow;
                    const have = app.graph._nodes.map(n => n.id + ':' + n.type).sort().join(',');
                    return wf && wf.path === path && have === nodes
                        && !document.querySelector("[data-testid^='template-workflow-']");
                }""",
                arg=[f"workflows/{name}.json", ",".join(sorted(f"{n['id']}:{n['type']}" for n in wf["nodes"]))],
                timeout=UI_TIMEOUT_MS,
            )
        except Exception as e:
            state = self.page.evaluate(
                """() => ({active: app.extensionManager.workflow.activeWorkflow?.path ?? null,
                           nodes: app.graph._nodes.map(n => n.type),
                           dialog_open: !!document.querySelector("[data-testid^='template-workflow-']")})"""
            )
            raise AssertionError(f"template {name} did not open: {state}") from e
        self.settle()

    def unlisted_choices(self) -> list[str]:
        """'Node.widget = value' for each combo widget whose value is not among its options: the frontends' sign of
        a missing model file (1.58.1's missing-models panel) or input image ('Media input missing')."""
        return self.page.evaluate(
            """() => app.graph._nodes.flatMap(n => (n.widgets || [])
                .filter(w => w.type === 'combo' && w.options && Array.isArray(w.options.values)
                             && !w.options.values.includes(w.value))
                .map(w => `${n.type}.${w.name} = ${w.value}`))"""
        )

    def unknown_nodes(self) -> list[str]:
        """Node types of the canvas that the frontend does not know."""
        return self.page.evaluate(
            "() => app.graph._nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type)"
        )

    def broken_nodes(self) -> list[str]:
        """Nodes the frontend marks with errors (1.58.1 also marks a loader whose model file is absent)."""
        return self.page.evaluate("() => app.graph._nodes.filter(n => n.has_errors).map(n => n.type)")

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

    def select_node(self, node_type: str) -> None:
        """Click the first node of a type on its title bar until the canvas has it selected (a first click right
        after another UI element had focus only moves the focus; a person clicks again)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        # Clicking a selected node's title again keeps it selected, so a click that was only slow does no harm.
        for _ in range(UI_TIMEOUT_MS // 5000):
            self.page.mouse.click(*self.node_screen_pos(node_type))
            try:
                self.page.wait_for_function(
                    "(t) => Object.values(app.canvas.selected_nodes || {}).some(n => n.type === t)",
                    arg=node_type,
                    timeout=5000,
                )
                return
            except PlaywrightTimeout:
                pass
        raise AssertionError(f"clicks on the {node_type} node did not select it")

    def set_view(self, offset=(0, 0), scale=1.0):
        self.page.evaluate(
            "([o, s]) => { app.canvas.ds.offset = o; app.canvas.ds.scale = s; app.graph.setDirtyCanvas(true, true); }",
            [list(offset), scale],
        )
        self.settle()

    def to_api(self, wf: dict) -> dict:
        """The workflow in API format, as the Run button sends it (the frontend's own converter)."""
        return self.page.evaluate(
            "async (wf) => { await app.loadGraphData(wf); return (await app.graphToPrompt()).output; }", wf
        )

    def queue_from_ui(self, timeout: float = 600) -> dict:
        """Queue the open workflow as the Run button does; the /history entry once it has finished."""
        before = set(self.comfy.get("/history").json())
        self.page.evaluate("async () => { await app.queuePrompt(0, 1); }")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.comfy.alive(), f"ComfyUI died:\n{self.comfy.log_tail()}"
            new = {k: v for k, v in self.comfy.get("/history").json().items() if k not in before}
            if new:
                (entry,) = new.values()
                if entry.get("status", {}).get("completed") is not None:
                    return entry
            time.sleep(0.3)
        raise TimeoutError(f"the queued workflow did not finish in {timeout} s:\n{self.comfy.log_tail()}")

    def wait_for_shown_images(self, widths: dict[str, int]):
        """Until each SaveImage node (by id) shows its result, loaded from /view, at the given width. Each node is
        brought into view first, as a person looks at it (1.32.9 loads a node's images when it draws the node)."""
        for node_id in widths:
            self.page.evaluate("(id) => app.canvas.centerOnNode(app.graph.getNodeById(Number(id)))", node_id)
            self.settle()
        self.page.wait_for_function(
            """(widths) => Object.entries(widths).every(([id, w]) => {
                const n = app.graph.getNodeById(Number(id));
                return n && n.imgs && n.imgs.length && n.imgs[0].complete && n.imgs[0].naturalWidth === w;
            })""",
            arg=widths,
            timeout=UI_TIMEOUT_MS,
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
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield UIPage(page, comfy).open()
    finally:
        context.close()


# --------------------------------------------------------------------------------------------------
# Images, expected outputs, API prompts.


WORKFLOWS = REPO / "workflows"
# Templates that run offline on a fresh install: only the pack's own default models.
RUNNABLE_WORKFLOWS = [
    "upscale_x2.json",
    "denoise.json",
    "jpeg_cleanup.json",
    "chain_jpeg_denoise_upscale.json",
    "auto_restore.json",  # Auto Restore: on a fresh install, the blind defaults and the x2 default
]
# The real-world x4 model of the catalogue, fetched by the loader on first use (the diffusion-output case).
REAL_X4_NAME = "real-M-x4-GAN"
DOWNLOAD_WORKFLOWS = ["upscale_x4_real_world.json"]
SD_WORKFLOWS = ["upscale_diffusion_output.json"]  # need a Stable Diffusion checkpoint of the user's
ALL_WORKFLOWS = RUNNABLE_WORKFLOWS + DOWNLOAD_WORKFLOWS + SD_WORKFLOWS
# The image a fresh ComfyUI has in input/ (ComfyUI's own input/example.png): the templates' Load Image names it,
# so they run as opened.
EXAMPLE_IMAGE = "example.png"
DEFAULT_ENTRY = "(default) swinir-s-x2-default.safetensors"
RESTORE_NODES = {"SwinIRUpscale", "SwinIRDenoise", "SwinIRJPEGCleanup"}


FRESH_EXAMPLE_SIDE = 96


def fresh_input(input_dir: Path) -> None:
    """A fresh install's input/: ComfyUI's own example.png, which the templates name. Shrunk from 768 to 96 px
    (same picture, same name) so that each template runs in seconds on a CPU rather than minutes."""
    from PIL import Image

    with Image.open(COMFY_DIR / "input" / EXAMPLE_IMAGE) as im:
        small = im.convert("RGB").resize((FRESH_EXAMPLE_SIDE, FRESH_EXAMPLE_SIDE), Image.Resampling.LANCZOS)
    small.save(input_dir / EXAMPLE_IMAGE)


def real_x4_entry():
    from swinir.catalogue import find_entry

    return find_entry(REAL_X4_NAME)


def size_mb(size_bytes: int) -> str:
    """A download size as the templates' notes and the loader's tooltip write it."""
    return f"{size_bytes / 1e6:.0f} MB"


def default_model_path(family: str = "sr") -> Path:
    """The pack's default model of a task family ('sr', 'denoise', 'jpeg') that the server's copy of the pack uses."""
    from swinir.model_ref import default_model_path as core_default

    return PACK_DIR / "swinir" / "models" / core_default(family).name


def default_entry_path(entry: str) -> Path:
    """The file behind a loader choice '(default) <file>'."""
    assert entry.startswith("(default) "), entry
    return PACK_DIR / "swinir" / "models" / entry[len("(default) "):]


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


# --------------------------------------------------------------------------------------------------
# Long runs (issue 14): the server's websocket events, its memory, prompt pieces for varied images.


class ComfyEvents:
    """The websocket messages the server sends to one client id, read by a background thread.

    Prompts queued through `queue` carry this client id, so their "executing", "progress" and end messages
    ("execution_success", "execution_error", "execution_interrupted") arrive here: tests wait on those real
    signals instead of polling /history or sleeping.
    """

    END = ("execution_success", "execution_error", "execution_interrupted")

    def __init__(self, comfy: ComfyServer, client_id: str | None = None):
        import queue
        import threading
        import uuid

        self.comfy = comfy
        self.client_id = client_id or f"events-{uuid.uuid4().hex[:12]}"
        self._queue: "queue.Queue[dict]" = queue.Queue()
        self._connected = threading.Event()
        self._error: BaseException | None = None
        self._loop = None
        self._ws = None
        self._thread = threading.Thread(target=self._run, name="comfy-events", daemon=True)
        self._thread.start()
        if not self._connected.wait(60):
            raise RuntimeError(f"no websocket connection to {comfy.url}/ws: {self._error!r}")
        if self._error is not None:
            raise RuntimeError(f"websocket connection to {comfy.url}/ws failed: {self._error!r}")

    def _run(self) -> None:
        import asyncio

        import aiohttp

        async def listen():
            self._loop = asyncio.get_running_loop()
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"{self.comfy.url}/ws?clientId={self.client_id}", heartbeat=30) as ws:
                    self._ws = ws
                    self._connected.set()
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self._queue.put(json.loads(msg.data))
                        elif msg.type == aiohttp.WSMsgType.BINARY:  # previews: 4-byte event type, then its data
                            self._queue.put({"type": "_binary", "data": msg.data})
                        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            break

        try:
            asyncio.run(listen())
        except BaseException as e:  # reported to the waiting test, which fails with it
            self._error = e
        finally:
            self._connected.set()
            self._queue.put({"type": "_closed"})

    def queue(self, prompt: dict) -> str:
        r = self.comfy.post("/prompt", json={"prompt": prompt, "client_id": self.client_id})
        assert r.status_code == 200, f"/prompt refused the prompt: {r.status_code} {r.text}"
        return r.json()["prompt_id"]

    def wait_for(self, match, timeout: float = 300) -> dict:
        """The next message for which match(message) is true; messages before it are dropped."""
        import queue

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching websocket message within {timeout} s:\n{self.comfy.log_tail()}")
            try:
                msg = self._queue.get(timeout=min(left, 5.0))
            except queue.Empty:
                assert self.comfy.alive(), f"ComfyUI died:\n{self.comfy.log_tail()}"
                continue
            if msg.get("type") == "_closed":
                raise RuntimeError(f"the websocket closed ({self._error!r}):\n{self.comfy.log_tail()}")
            if match(msg):
                return msg

    def wait_end(self, prompt_id: str, timeout: float = 300) -> dict:
        """The message that ends a prompt: execution_success, execution_error or execution_interrupted."""
        return self.wait_for(
            lambda m: m.get("type") in self.END and m.get("data", {}).get("prompt_id") == prompt_id, timeout
        )

    def close(self) -> None:
        if self._loop is not None and self._ws is not None and not self._ws.closed:
            import asyncio

            asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop).result(timeout=10)
        self._thread.join(timeout=10)


def process_rss(pid: int) -> int:
    """Resident memory (VmRSS) of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def p_crop(image_ref, width: int, height: int, x: int = 0, y: int = 0) -> dict:
    return {"class_type": "ImageCrop", "inputs": {"image": image_ref, "width": width, "height": height, "x": x, "y": y}}


def p_repeat(image_ref, amount: int) -> dict:
    return {"class_type": "RepeatImageBatch", "inputs": {"image": image_ref, "amount": amount}}


def start_server(
    base: Path, name: str, device: str = "cpu", frontend: Frontend = BUNDLED_FRONTEND, fresh: bool = False,
    env: dict[str, str] | None = None,
) -> ComfyServer:
    """A started server with the pack and the test models in a fresh `base` (for scripts and extra servers; the
    tests' session servers are conftest's `comfy` and `fresh_comfy`). device 'cuda' runs ComfyUI on the GPU (no
    --cpu); `frontend` picks the frontend it serves; `fresh` adds no model, only a fresh install's input/; `env`
    is added to the server's environment (this process's own is left as it was)."""
    for d in ("custom_nodes", "input", "output", "user", "temp", "models"):
        (base / d).mkdir(parents=True, exist_ok=True)
    os.symlink(PACK_DIR, base / "custom_nodes" / PACK_NAME, target_is_directory=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    server = ComfyServer(base, free_port(), LOG_DIR / f"{name}.log", frontend)
    server.device = device
    if fresh:
        fresh_input(base / "input")
    else:
        server.models = make_models(base / "models")
    server.env = dict(env or {})
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


# --------------------------------------------------------------------------------------------------
# Auto Restore: one random-weight checkpoint per official colour level, under its official name.

LEVEL_DENOISE = {s: f"005_colorDN_DFWB_s128w8_SwinIR-M_noise{s}.pth" for s in (15, 25, 50)}
LEVEL_JPEG = {q: f"006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg{q}.pth" for q in (10, 20, 30, 40)}


def write_level_models(swinir_dir: Path) -> tuple[dict[str, Path], list[Path]]:
    """Every official colour denoise and JPEG level in swinir_dir (name -> path), and the files this call created
    (those already there, such as make_models' noise15 and jpeg10, are kept as they are)."""
    made: list[Path] = []
    paths: dict[str, Path] = {}
    for i, name in enumerate([*LEVEL_DENOISE.values(), *LEVEL_JPEG.values()]):
        path = swinir_dir / name
        if not path.exists():
            jpeg = "CAR" in name
            net = _spandrel_swinir(upscale=1, in_chans=3, img_size=126 if jpeg else 128, window_size=7 if jpeg else 8,
                                   img_range=255.0 if jpeg else 1.0, upsampler="", seed=100 + i)
            made.append(write_official_pth(path, net))
        paths[name] = path
    return paths, made


def p_auto_restore(image_ref, scale=1.0, threshold=5.0, allow_download=False, **extra) -> dict:
    inputs = {"image": image_ref, "scale": scale, "denoise_threshold": threshold, "allow_download": allow_download,
              "tile_size": 0, "overlap": 32, "precision": "fp32"}
    inputs.update(extra)
    return {"class_type": "SwinIRAutoRestore", "inputs": inputs}


def p_preview_text(ref) -> dict:
    """ComfyUI's Preview Any: a STRING/FLOAT/INT output shows up in /history as outputs[node]['text']."""
    return {"class_type": "PreviewAny", "inputs": {"source": ref}}


def history_text(entry: dict, node_id: str) -> str:
    return "".join(entry["outputs"][str(node_id)]["text"])


def pack_module(name: str):
    """A module of the pack under test (e.g. 'nodes.work') imported the way ComfyUI imports it: as a package."""
    from testkit.pack import pack_module as imported

    return imported(name, PACK_DIR)
