"""Fixtures for the ComfyUI integration tests (the harness itself is testkit/comfy_harness.py).

ComfyUI comes from scripts/get-comfyui.sh (into .comfyui/ComfyUI), the newest frontend from scripts/get-frontend.sh,
Chromium from scripts/get-chromium.sh. Without them these tests skip with the reason; in CI (CI set, or
SWINIR_REQUIRE_COMFY=1) they fail instead.

`comfy` (the bundled frontend, with small test models) serves the node tests; `fresh_comfy` is a fresh install
(the pack, no model added) served once per frontend in FRONTENDS, for the browser and template tests.

The quick tier (`scripts/test.sh --quick`, pytest -m "not full") starts one server: the fresh install on the
frontend scripts/get-frontend.sh pins (QUICK_FRONTEND), with its browser and template tests. Every test on
another server (`comfy`, the download tests' `server`, `gpu_comfy`, the bundled frontend's fresh install) is
marked `full` here, so it runs in the whole suite only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testkit.comfy_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    COMFY_DIR,
    FRONTENDS,
    NEWEST_FRONTEND,
    Frontend,
    missing,
    open_ui,
    start_server,
)

QUICK_FRONTEND = NEWEST_FRONTEND
# Fixtures that start a ComfyUI server other than the quick tier's one.
FULL_SUITE_SERVERS = frozenset({"comfy", "server", "gpu_comfy"})
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents and FULL_SUITE_SERVERS & set(item.fixturenames):
            item.add_marker(pytest.mark.full)


def _server(tmp_path_factory, name: str, frontend: Frontend, fresh: bool):
    """A ComfyUI 0.3.75 server with the pack linked in, from a fresh --base-directory; stopped afterwards."""
    if not (COMFY_DIR / "main.py").is_file():
        missing(f"ComfyUI not installed at {COMFY_DIR}; run scripts/get-comfyui.sh")
    if frontend.missing_reason():
        missing(frontend.missing_reason())
    try:
        import requests  # noqa: F401
    except ImportError:
        missing("requests is not installed (pip install -e '.[test]', or bash scripts/setup-env.sh --test)")
    base = tmp_path_factory.mktemp(name)
    try:
        server = start_server(base, name, frontend=frontend, fresh=fresh)
    except Exception as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """The server for the node tests: the bundled frontend, with the small test models of make_models."""
    yield from _server(tmp_path_factory, "server", FRONTENDS[0], fresh=False)


@pytest.fixture(
    scope="session",
    params=[
        pytest.param(f, id=f"frontend-{f.version}", marks=() if f is QUICK_FRONTEND else pytest.mark.full)
        for f in FRONTENDS
    ],
)
def frontend(request) -> Frontend:
    return request.param


@pytest.fixture(scope="session")
def fresh_comfy(tmp_path_factory, frontend):
    """A fresh install as a new user has it: ComfyUI 0.3.75 with the pack and no model added, served with
    the frontend of the `frontend` parameter (the bundled 1.32.9, and the newest from PyPI)."""
    yield from _server(tmp_path_factory, f"fresh-{frontend.version}", frontend, fresh=True)


# --------------------------------------------------------------------------------------------------
# The browser.


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        missing(f"Chromium not found at {CHROMIUM}; run scripts/get-chromium.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[test]', or bash scripts/setup-env.sh --test)")
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


@pytest.fixture(scope="module")
def fresh_ui(browser, fresh_comfy):
    """A tab on the fresh install, in the frontend under test."""
    with open_ui(browser, fresh_comfy) as page:
        yield page
