"""What users install: the wheel (`pip install .`) and the ComfyUI registry archive (`comfy node pack`).

The wheel is built from the checkout as pip builds it, holds the `swinir` package with its three default models and
the catalogue and nothing else of the repository, and, installed into a folder of its own, gives a `swinir` command
that restores an image from another folder with the default model. The registry archive is the git-tracked files
minus .comfyignore: the node pack without the tests, the benchmarks and the training states. The pack's
requirements are written twice, for pip (pyproject.toml) and for a ComfyUI install (requirements*.txt), and agree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swinir.model_ref import DEFAULT_MODELS

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DATA = sorted([f"swinir/models/{name}" for name in DEFAULT_MODELS.values()] + ["swinir/models/catalogue.json"])


def _requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return sorted(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def test_pyproject_and_the_requirements_files_agree() -> None:
    project = PYPROJECT["project"]
    assert sorted(project["dependencies"]) == _requirements("requirements.txt")
    assert sorted(project["optional-dependencies"]["ray"]) == _requirements("requirements-ray.txt")
    named = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    assert not [d for d in named if d.split("[")[0].split("=")[0].split(">")[0].strip() in ("torch", "torchvision")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from the checkout (a copy of what the build reads, so no build/ folder is left here)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE", "NOTICE"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run(["cp", "-r", str(ROOT / "swinir"), str(src / "swinir")], check=True)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        check=True, capture_output=True, text=True,
    )
    (built,) = out.glob("*.whl")
    return built


def test_wheel_holds_the_package_and_its_default_models_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"swinir"}
    data = sorted(n for n in names if n.startswith("swinir/") and not n.endswith(".py"))
    assert data == PACKAGE_DATA
    assert not [n for n in names if "__pycache__" in n or n.endswith(".state.pt")]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "swinir = swinir.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_restores_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    target, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True,
    )
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(work / "in.png")
    # Only the installed copy on the path, and a folder that is not the checkout as the working directory.
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import swinir; print(swinir.default_model_path())"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(target) and Path(where).is_file()
    done = subprocess.run(
        [str(target / "bin" / "swinir"), "restore", "in.png", "-o", "out.png"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with Image.open(work / "out.png") as out:
        assert out.size == (64, 48)
    module = subprocess.run(
        [sys.executable, "-m", "swinir", "--help"], cwd=work, env=env, capture_output=True, text=True
    )
    assert module.returncode == 0 and "restore" in module.stdout


def _comfyignore() -> list[str]:
    lines = (ROOT / ".comfyignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_registry_archive_leaves_out_tests_benchmarks_and_training_states() -> None:
    patterns = _comfyignore()
    # comfy-cli matches gitwildmatch patterns; folder patterns ('name/') are all this file uses, so a prefix test is
    # their exact meaning here.
    assert all(p.endswith("/") and not any(c in p for c in "*?[!") for p in patterns), patterns
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    packed = [f for f in tracked if not any(f.startswith(p) for p in patterns)]
    assert not [f for f in packed if f.endswith(".state.pt") or f.split("/")[0] in ("tests", "bench", "testkit")]
    for needed in ["__init__.py", "pyproject.toml", "requirements.txt", *PACKAGE_DATA]:
        assert needed in packed, needed
    assert any(f.startswith("nodes/") for f in packed) and any(f.startswith("workflows/") for f in packed)
