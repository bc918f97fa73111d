"""The command line, `python -m swinir restore`, run as a user runs it: a subprocess with real image files.

A tiny random-weight model saved with `save_safetensors` keeps the runs fast; one test uses the pack's default
model on a tiny image.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

import swinir
from cli_runs import background_cli, wait_for
from swinir.cli import restore as cli_restore
from testkit.reference import randomize_

ROOT = Path(__file__).resolve().parents[1]
SCALE = 2
RESTORE_OPTIONS = ("inputs", "-o", "--output", "--model", "--models-dir", "--tile", "--overlap", "--precision",
                   "--device", "--gray-mode", "--ext", "--codec", "--crf", "--fps", "--overwrite", "--compile", "--ray",
                   "--actors", "--max-megapixels")


def run_cli(*args: object, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "swinir", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def assert_clean_failure(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, no traceback, and one line of stderr that gives the reason (containing every needle)."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    reasons = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(reasons) == 1, f"expected one error line, got:\n{result.stderr}"
    for needle in needles:
        assert needle.lower() in reasons[0].lower(), f"{needle!r} not in {reasons[0]!r}"
    return reasons[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files anywhere under `folder`."""
    return sorted(str(p) for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith("."))


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory) -> Path:
    cfg = swinir.SwinIRConfig(
        task="lightweight_sr", scale=SCALE, in_chans=3, window_size=8, embed_dim=12, depths=(2,), num_heads=(2,),
        upsampler="pixelshuffledirect",
    )
    model = swinir.SwinIR(cfg).eval()
    randomize_(model, 0, cfg.img_range, cfg.upsampler)
    with torch.no_grad():  # keep outputs mostly inside [0, 1], so 16-bit outputs have real 16-bit values
        model.upsample[0].weight.mul_(0.25)
    path = tmp_path_factory.mktemp("model") / "tiny-x2.safetensors"
    swinir.save_safetensors(model, path)
    assert swinir.load_model(path).config == cfg
    return path


def noise_image(width: int, height: int, mode: str, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        ramp = np.linspace(0, 65535, width * height).reshape(height, width)
        arr = np.clip(ramp * 0.8 + rng.integers(0, 8000, (height, width)), 0, 65535).astype(np.uint16)
        return Image.fromarray(arr)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


# ---------------------------------------------------------------------------------------------------- help


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("restore", "convert", "download", "train"):
        assert command in result.stdout


def test_restore_help_explains_every_option() -> None:
    result = run_cli("restore", "--help")
    assert result.returncode == 0, result.stderr
    for option in RESTORE_OPTIONS:
        assert option in result.stdout, f"{option} missing from restore --help"
    # Every option the parser knows has a help text (so --help explains it, not just names it).
    sub = argparse.ArgumentParser().add_subparsers()
    cli_restore.register(sub)
    restore = sub.choices["restore"]
    for action in restore._actions:
        if action.dest == "help":
            continue
        names = action.option_strings or [action.dest]
        assert any(n in RESTORE_OPTIONS for n in names), f"untested new option {names}; add it to RESTORE_OPTIONS"
        assert action.help and len(action.help) > 15, f"{names} has no real help text"


# ------------------------------------------------------------------------------------------------ restore


def test_single_file_to_file_and_to_folder(tmp_path: Path, tiny_model_file: Path) -> None:
    src = tmp_path / "in" / "photo.png"
    src.parent.mkdir()
    noise_image(21, 13, "RGB").save(src)
    target = tmp_path / "out" / "result.png"
    result = run_cli("restore", src, "-o", target, "--model", tiny_model_file)
    assert result.returncode == 0, result.stderr
    with Image.open(target) as img:
        assert img.size == (21 * SCALE, 13 * SCALE) and img.mode == "RGB"
    folder = tmp_path / "folder-out"
    result = run_cli("restore", src, "-o", folder, "--model", tiny_model_file)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["photo.png"]
    with Image.open(folder / "photo.png") as img:
        img.load()
        assert img.size == (21 * SCALE, 13 * SCALE)
    assert leftovers(tmp_path) == []


def _truncated_png(seed: int) -> bytes:
    buf = io.BytesIO()
    noise_image(64, 64, "RGB", seed).save(buf, format="PNG")
    data = buf.getvalue()
    return data[: len(data) // 2]


def test_mixed_folder_with_corrupt_files(tmp_path: Path, tiny_model_file: Path) -> None:
    src = tmp_path / "mixed"
    src.mkdir()
    good: dict[str, tuple[tuple[int, int], str]] = {}  # output name -> (input size, expected output mode)
    noise_image(20, 15, "RGB", 1).save(src / "rgb8.png")
    good["rgb8.png"] = ((20, 15), "RGB")
    noise_image(17, 13, "L", 2).save(src / "gray8.png")
    good["gray8.png"] = ((17, 13), "L")
    gray16 = noise_image(16, 12, "I;16", 3)
    assert gray16.mode == "I;16"
    gray16.save(src / "gray16.png")
    good["gray16.png"] = ((16, 12), "I;16")
    noise_image(18, 14, "RGB", 4).save(src / "photo.jpg", quality=90)
    good["photo.png"] = ((18, 14), "RGB")
    if features.check("webp"):
        noise_image(15, 15, "RGB", 5).save(src / "web.webp")
        good["web.png"] = ((15, 15), "RGB")
    noise_image(14, 19, "RGB", 6).save(src / "scan.tif")
    good["scan.png"] = ((14, 19), "RGB")
    (src / "corrupt.png").write_bytes(np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (src / "truncated.png").write_bytes(_truncated_png(8))
    out = tmp_path / "out"

    result = run_cli("restore", src, "-o", out, "--model", tiny_model_file)

    assert result.returncode != 0, "a run with unreadable images must fail"
    assert "Traceback" not in result.stderr, result.stderr
    for bad in ("corrupt.png", "truncated.png"):
        assert bad in result.stderr, f"{bad} not named in stderr:\n{result.stderr}"
    for name in good:
        assert not any(name in line for line in result.stderr.splitlines() if "error" in line), result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(good), "exactly the good images are written"
    assert leftovers(out) == []
    for name, ((w, h), mode) in good.items():
        with Image.open(out / name) as img:
            img.load()
            assert img.size == (w * SCALE, h * SCALE), name
            assert img.mode == mode, f"{name}: {img.mode}"
            if mode == "I;16":
                values = np.asarray(img).astype(np.int64)
                assert (values % 257 != 0).any(), "16-bit input must give real 16-bit output, not 8-bit scaled"


def test_tile_and_overlap_options(tmp_path: Path, tiny_model_file: Path) -> None:
    src = tmp_path / "big.png"
    noise_image(70, 50, "RGB", 9).save(src)
    out = tmp_path / "out.png"
    result = run_cli("restore", src, "-o", out, "--model", tiny_model_file, "--tile", "16", "--overlap", "8")
    assert result.returncode == 0, result.stderr
    totals = {int(tok.split("/")[1]) for tok in result.stderr.split() if tok.count("/") == 1 and tok.split("/")[0].isdigit()
              and tok.split("/")[1].isdigit()}
    assert totals and max(totals) > 1, f"the image should be split into tiles:\n{result.stderr}"
    with Image.open(out) as img:
        assert img.size == (140, 100)


def test_default_model_on_a_tiny_image(tmp_path: Path) -> None:
    src = tmp_path / "tiny.png"
    noise_image(12, 10, "RGB", 10).save(src)
    out = tmp_path / "out"
    result = run_cli("restore", src, "-o", out)
    assert result.returncode == 0, result.stderr
    with Image.open(out / "tiny.png") as img:
        assert img.size == (24, 20)


@pytest.mark.parametrize("ref,what", [("default-denoise", "color denoising, blind for sigma 0-50"),
                                      ("default-jpeg", "color JPEG-artifact removal, blind for quality 10-90")])
def test_blind_defaults_by_name(tmp_path: Path, ref: str, what: str) -> None:
    src = tmp_path / "tiny.png"
    noise_image(12, 10, "RGB", 11).save(src)
    result = run_cli("restore", src, "-o", tmp_path / "out.png", "--model", ref)
    assert result.returncode == 0, result.stderr
    assert f"model: {what}" in result.stderr
    with Image.open(tmp_path / "out.png") as img:
        assert img.size == (12, 10)


# ------------------------------------------------------------------------------------------------- errors


def test_missing_input(tmp_path: Path, tiny_model_file: Path) -> None:
    result = run_cli("restore", tmp_path / "missing.png", "-o", tmp_path / "out", "--model", tiny_model_file)
    assert_clean_failure(result, "missing.png", "no such file")


def test_model_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    noise_image(8, 8, "RGB").save(src)
    fake = tmp_path / "notes.safetensors"
    fake.write_text("these are my notes, not a model\n")
    result = run_cli("restore", src, "-o", tmp_path / "out", "--model", fake)
    assert_clean_failure(result, "notes.safetensors", "not a checkpoint")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_catalogue_name(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    noise_image(8, 8, "RGB").save(src)
    result = run_cli("restore", src, "-o", tmp_path / "out", "--model", "no-such-model-x9")
    assert_clean_failure(result, "no-such-model-x9", "catalogue")


def test_bad_tile_value(tmp_path: Path, tiny_model_file: Path) -> None:
    src = tmp_path / "a.png"
    noise_image(8, 8, "RGB").save(src)
    result = run_cli("restore", src, "-o", tmp_path / "out", "--model", tiny_model_file, "--tile", "abc")
    assert_clean_failure(result, "--tile", "abc")


@pytest.mark.parametrize("device", [
    "foo",
    pytest.param("cuda", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")),
])
def test_unusable_device(tmp_path: Path, tiny_model_file: Path, device: str) -> None:
    """A device name that does not exist (or CUDA on a machine without it) is a user error, not a crash."""
    src = tmp_path / "a.png"
    noise_image(8, 8, "RGB").save(src)
    result = run_cli("restore", src, "-o", tmp_path / "out", "--model", tiny_model_file, "--device", device)
    assert_clean_failure(result, device)


def test_inputs_with_the_same_name_do_not_overwrite_each_other(tmp_path: Path, tiny_model_file: Path) -> None:
    """photo.png and photo.jpg both map to out/photo.png: writing one over the other and reporting success loses
    a result silently. Either both are written (distinct names) or the run fails and says why."""
    src = tmp_path / "in"
    src.mkdir()
    noise_image(10, 8, "RGB", 12).save(src / "photo.png")
    noise_image(12, 6, "RGB", 13).save(src / "photo.jpg")
    out = tmp_path / "out"
    result = run_cli("restore", src, "-o", out, "--model", tiny_model_file)
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode != 0 or len(written) == 2, f"exit 0 but only {written} written for 2 inputs"


def test_unwritable_output_is_a_clean_error(tmp_path: Path, tiny_model_file: Path) -> None:
    """An output that cannot be written (here its name is taken by a folder) fails that image only: a one-line
    reason naming it, the other images still written, no temporary file left, no traceback."""
    src = tmp_path / "in"
    src.mkdir()
    noise_image(10, 8, "RGB", 14).save(src / "a.png")
    noise_image(9, 7, "RGB", 15).save(src / "b.png")
    out = tmp_path / "out"
    (out / "a.png").mkdir(parents=True)
    result = run_cli("restore", src, "-o", out, "--model", tiny_model_file)
    assert result.returncode != 0
    assert leftovers(out) == []
    assert "Traceback" not in result.stderr, result.stderr
    assert any("a.png" in line for line in result.stderr.splitlines() if "error" in line), result.stderr
    with Image.open(out / "b.png") as img:
        assert img.size == (18, 14)


# ---------------------------------------------------------------------------------------------- interrupt


def test_interrupt_leaves_no_output(tmp_path: Path, tiny_model_file: Path) -> None:
    src = tmp_path / "large.png"
    noise_image(1024, 1024, "RGB", 11).save(src)
    out = tmp_path / "out"
    err_path = tmp_path / "stderr.txt"
    with background_cli("restore", src, "-o", out, "--model", tiny_model_file, "--tile", "32", "--overlap", "8",
                        err=err_path) as proc:
        wait_for(lambda: " tiles " in err_path.read_text(), "progress line", proc=proc, timeout=120)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    stderr = err_path.read_text()
    assert rc == 130, f"exit code {rc}:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert not out.exists() or not any(out.iterdir()), f"output left behind: {list(out.iterdir())}"
    assert leftovers(tmp_path) == []
