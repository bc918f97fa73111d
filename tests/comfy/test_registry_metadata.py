"""pyproject.toml as the Comfy Registry and comfy-cli read it: ComfyUI's own parser (comfy_config), a ComfyUI
floor that the tested ComfyUI meets, and an icon that is a small square picture committed in this repository."""

from __future__ import annotations

import sys
from urllib.parse import urlparse

import pytest
from PIL import Image

from testkit.comfy_harness import COMFY_DIR, REPO, missing


@pytest.fixture(scope="module")
def config():
    if not (COMFY_DIR / "comfy_config" / "config_parser.py").is_file():
        missing(f"ComfyUI not installed at {COMFY_DIR}; run scripts/get-comfyui.sh")
    sys.path.insert(0, str(COMFY_DIR))
    try:
        from comfy_config import config_parser

        return config_parser.extract_node_configuration(str(REPO))
    finally:
        sys.path.remove(str(COMFY_DIR))


def test_requires_comfyui_is_met_by_the_tested_comfyui(config):
    from packaging.specifiers import SpecifierSet

    spec = config.project.supported_comfyui_version
    assert spec == ">=0.3.75", spec
    version = (COMFY_DIR / "comfyui_version.py").read_text().split("__version__ = ", 1)[1].strip().strip('"')
    assert version in SpecifierSet(spec), (version, spec)


def test_icon_is_a_small_square_image_of_this_repository(config):
    url = config.tool_comfy.icon
    repository = config.project.urls.repository  # https://github.com/OWNER/NAME
    owner_name = urlparse(repository).path.strip("/")
    prefix = f"https://raw.githubusercontent.com/{owner_name}/main/"
    assert url.startswith(prefix), (url, prefix)
    path = REPO / url[len(prefix):]
    assert path.is_file(), f"{path} (the registry icon) is missing: run scripts/make_icon.py"
    assert path.stat().st_size < 100_000
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width == im.height and 128 <= im.width <= 512, (im.format, im.size)
