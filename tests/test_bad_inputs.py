"""What a user feeds the command line never stops a run or leaves litter: image bombs and unreadable images are
per-file errors (restore, analyse, frame folders), impossible outputs are one message naming the path given,
no output folder appears before there is something to put in it, and a run says what it wrote.

Real subprocesses on real files; a full disk is a real 256 KiB tmpfs (mounted where the tests run as root).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import swinir
from swinir.errors import ImageFileError
from swinir.imageio import DEFAULT_MAX_PIXELS, max_pixels, open_image, read_image, read_note, set_max_pixels
from testkit.reference import randomize_
from test_cli import assert_clean_failure, leftovers, noise_image, run_cli

SCALE = 2


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A 200-byte PNG whose header claims width x height RGB pixels (400 megapixels by default)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    cfg = swinir.SwinIRConfig(task="lightweight_sr", scale=SCALE, in_chans=3, window_size=8, embed_dim=12,
                              depths=(2,), num_heads=(2,), upsampler="pixelshuffledirect")
    model = swinir.SwinIR(cfg).eval()
    randomize_(model, 0, cfg.img_range, cfg.upsampler)
    path = tmp_path_factory.mktemp("model") / "tiny-x2.safetensors"
    swinir.save_safetensors(model, path)
    return path


@pytest.fixture()
def pixel_limit():
    yield
    set_max_pixels(DEFAULT_MAX_PIXELS)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# ------------------------------------------------------------------------------------------------ the reader


def test_a_bomb_is_an_image_error_that_says_how_to_raise_the_limit(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 300
    with pytest.raises(ImageFileError) as caught:
        read_image(bomb)
    text = str(caught.value)
    assert str(bomb) in text and "400 megapixels" in text and "--max-megapixels 400" in text, text
    assert read_note(bomb) is None  # the note reader (outputs already there) is refused the same way, quietly


def test_the_limit_is_ours_to_raise_and_lower(tmp_path: Path, pixel_limit) -> None:
    image = tmp_path / "real.png"
    noise_image(300, 200, "RGB").save(image)
    set_max_pixels(50_000)  # 0.05 megapixels: this genuine 60,000-pixel image is now "too large"
    with pytest.raises(ImageFileError, match=r"is 300x200 \(0\.06 megapixels\).*--max-megapixels 1"):
        read_image(image)
    set_max_pixels(60_000)
    assert read_image(image)[0].shape == (200, 300, 3)
    # Raised above Pillow's own limit, a big image opens (its header only here: 400 MP would take 1.2 GB).
    set_max_pixels(500_000_000)
    with open_image(png_bomb(tmp_path / "big.png"), load=False) as img:
        assert img.size == (20000, 20000)
    assert max_pixels() == 500_000_000


@pytest.mark.parametrize("content,phrase", [
    (b"", "not a readable image"),
    (b"GIF89a" + b"\0" * 40, "not a readable image"),
    (None, "is a folder"),
])
def test_unreadable_images_are_image_errors(tmp_path: Path, content: bytes | None, phrase: str) -> None:
    path = tmp_path / "x.png"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ImageFileError, match=phrase):
        read_image(path)


# --------------------------------------------------------------------------------------------- the commands


def _folder_with_a_bomb(root: Path) -> Path:
    src = root / "in"
    src.mkdir()
    for i, name in enumerate(("a", "b", "d", "e")):
        noise_image(12 + i, 10, "RGB", i).save(src / f"{name}.png")
    png_bomb(src / "c.png")  # the third image
    return src


def test_restore_goes_on_past_a_bomb(tmp_path: Path, tiny_model: Path) -> None:
    src = _folder_with_a_bomb(tmp_path)
    out = tmp_path / "out"
    result = run_cli("restore", src, "-o", out, "--model", tiny_model)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "c.png" in errors[0] and "--max-megapixels" in errors[0], result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "d.png", "e.png"]
    assert leftovers(tmp_path) == []
    assert f"wrote 4 files to {out}" in result.stdout
    assert "1 of 5 inputs failed; the others are complete" in result.stderr


def test_analyse_goes_on_past_a_bomb(tmp_path: Path) -> None:
    src = _folder_with_a_bomb(tmp_path)
    result = run_cli("analyse", src)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [str(src / n) for n in
                                                                         ("a.png", "b.png", "d.png", "e.png")]
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "c.png" in errors[0] and "megapixel" in errors[0], result.stderr


def test_max_megapixels_option(tmp_path: Path, tiny_model: Path) -> None:
    image = tmp_path / "photo.png"
    noise_image(40, 30, "RGB").save(image)
    out = tmp_path / "out.png"
    refused = run_cli("restore", image, "-o", out, "--model", tiny_model, "--max-megapixels", "0.001")
    assert_clean_failure(refused, "photo.png", "40x30", "--max-megapixels 1")
    assert not out.exists()
    assert run_cli("analyse", image, "--max-megapixels", "0.001").returncode == 1
    assert run_cli("analyse", image, "--max-megapixels", "0.0012").returncode == 0
    bad = run_cli("restore", image, "-o", out, "--max-megapixels", "lots")
    assert bad.returncode == 2 and "--max-megapixels" in bad.stderr and "Traceback" not in bad.stderr


def test_a_single_failed_input_speaks_of_no_others(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("restore", png_bomb(tmp_path / "only.png"), "-o", out, "--model", tiny_model)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "1 of 1 input failed" in result.stderr and "others" not in result.stderr, result.stderr
    assert not out.exists(), "nothing to write: no output folder"


def test_frame_folder_with_a_bomb_fails_that_video_only(tmp_path: Path, tiny_model: Path) -> None:
    pytest.importorskip("av")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in (1, 2, 4):
        noise_image(16, 16, "RGB", i).save(frames / f"{i:03d}.png")
    png_bomb(frames / "003.png", 16000, 16000)
    out = tmp_path / "clip.mp4"
    result = run_cli("restore", frames, "-o", out, "--model", tiny_model)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert any("003.png" in line and "megapixel" in line for line in error_lines(result.stderr)), result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------ outputs


@pytest.mark.parametrize("output", ["notes.txt/x.png", "notes.txt/sub/folder", "notes.txt"])
def test_output_under_a_file(tmp_path: Path, tiny_model: Path, output: str) -> None:
    image = tmp_path / "a.png"
    noise_image(12, 10, "RGB").save(image)
    (tmp_path / "notes.txt").write_text("my notes\n")
    second = tmp_path / "b.png"
    noise_image(12, 10, "RGB", 1).save(second)
    inputs = [image] if output.endswith(".png") else [image, second]
    result = run_cli("restore", *inputs, "-o", tmp_path / output, "--model", tiny_model)
    line = assert_clean_failure(result, f"-o {tmp_path / output}", str(tmp_path / "notes.txt"), "is a file")
    assert "choose" in line
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "notes.txt"]


def test_no_output_folder_before_there_is_something_to_write(tmp_path: Path, tiny_model: Path) -> None:
    image = tmp_path / "a.png"
    noise_image(12, 10, "RGB").save(image)
    out = tmp_path / "new" / "deeper"
    not_a_model = tmp_path / "notes.safetensors"
    not_a_model.write_text("not a model")
    assert_clean_failure(run_cli("restore", image, "-o", out, "--model", not_a_model), "notes.safetensors")
    assert_clean_failure(run_cli("restore", tmp_path / "missing.png", "-o", out, "--model", tiny_model),
                         "missing.png")
    assert not (tmp_path / "new").exists()
    ok = run_cli("restore", image, "-o", out / "x.png", "--model", tiny_model)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"wrote {out / 'x.png'}"


def test_tile_adjustment_is_said_once(tmp_path: Path, tiny_model: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        noise_image(40, 36, "RGB", i).save(src / f"{i}.png")
    result = run_cli("restore", src, "-o", tmp_path / "out", "--model", tiny_model, "--tile", "3")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "--tile 3" in line]
    assert notes == ["note: --tile 3 is used as 32: tiles are whole multiples of this model's 8-pixel window, "
                     "at least 4 windows"], result.stderr
    exact = run_cli("restore", src / "0.png", "-o", tmp_path / "x.png", "--model", tiny_model, "--tile", "32")
    assert exact.returncode == 0 and "note:" not in exact.stderr, exact.stderr


@contextmanager
def mounted_tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A real small filesystem at `folder` (a tmpfs with `options`), unmounted on the way out; skips without root."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root")
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.fixture()
def small_disk(tmp_path: Path):
    with mounted_tmpfs(tmp_path / "disk", "size=256k") as folder:
        yield folder


@pytest.fixture()
def read_only_disk(tmp_path: Path):
    with mounted_tmpfs(tmp_path / "ro", "size=64k,ro") as folder:
        yield folder


def test_full_disk_names_the_output_and_says_so(tmp_path: Path, tiny_model: Path, small_disk: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    noise_image(96, 96, "RGB", 1).save(src / "big.png")  # 192x192 of noise: ~110 KB of PNG
    noise_image(12, 10, "RGB", 2).save(src / "small.png")
    (small_disk / "filler").write_bytes(os.urandom(200 << 10))
    out = small_disk / "out"
    result = run_cli("restore", src, "-o", out, "--model", tiny_model)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    (line,) = error_lines(result.stderr)
    assert f"{out / 'big.png'}: cannot write (No space left on device)" in line and "free some space" in line, line
    assert ".part" not in line
    assert sorted(p.name for p in out.iterdir()) == ["small.png"]  # the run went on; nothing partial
    assert "the other is complete" in result.stderr


def test_read_only_output(tmp_path: Path, tiny_model: Path, read_only_disk: Path) -> None:
    image = tmp_path / "a.png"
    noise_image(12, 10, "RGB").save(image)
    result = run_cli("restore", image, "-o", read_only_disk / "out" / "x.png", "--model", tiny_model)
    line = assert_clean_failure(result, str(read_only_disk / "out" / "x.png"))
    assert "read-only" in line.lower() and "choose an output folder you can write to" in line, line
    assert ".part" not in line
