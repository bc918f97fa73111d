"""Fixtures for the ComfyUI integration tests (the harness itself is in comfy_harness.py).

ComfyUI comes from scripts/get-comfyui.sh (into .comfyui/ComfyUI), Chromium from scripts/get-chromium.sh.
Without them these tests skip with the reason; with SWINIR_REQUIRE_COMFY=1 (CI) they fail instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from comfy_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    COMFY_DIR,
    LOG_DIR,
    PACK_DIR,
    PACK_NAME,
    ComfyServer,
    free_port,
    make_models,
    missing,
    open_ui,
)


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    if not (COMFY_DIR / "main.py").is_file():
        missing(f"ComfyUI not installed at {COMFY_DIR}; run scripts/get-comfyui.sh")
    try:
        import requests  # noqa: F401
    except ImportError:
        missing("requests is not installed (pip install -r requirements-test.txt)")
    base = tmp_path_factory.mktemp("comfy")
    for d in ("custom_nodes", "input", "output", "user", "temp", "models"):
        (base / d).mkdir()
    os.symlink(PACK_DIR, base / "custom_nodes" / PACK_NAME, target_is_directory=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    server = ComfyServer(base, free_port(), LOG_DIR / "server.log")
    server.models = make_models(base / "models")
    try:
        server.start()
    except Exception as e:
        server.stop()
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# The browser.


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        missing(f"Chromium not found at {CHROMIUM}; run scripts/get-chromium.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -r requirements-test.txt)")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    except Exception as e:
        pw.stop()
        missing(f"Chromium at {CHROMIUM} did not start: {e}")
    try:
        yield b
    finally:
        b.close()
        pw.stop()


@pytest.fixture(scope="module")
def ui(browser, comfy):
    with open_ui(browser, comfy) as page:
        yield page
