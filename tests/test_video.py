"""Videos through `python -m swinir restore`, as a user runs it: synthetic clips made with PyAV (with audio, an odd
size, a rotation tag), the tiny random-weight model of test_cli, and the outputs decoded again.

Exact equality with restoring each decoded frame on its own is checked through FFV1 (lossless, RGB), so any
difference is ours and not the codec's; the default x264 output is checked within a codec tolerance (PSNR).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import swinir
from cli_runs import background_cli, wait_for
from test_cli import ROOT, assert_clean_failure, leftovers, run_cli, tiny_model_file  # noqa: F401 (fixture)
from testkit.video_clips import (
    audio_packets, decoded_frames, frame_rgb, frame_times, make_clip, psnr, restore_frame, video_facts,
)


# Encoding and decoding real clips through PyAV: the full suite's.
pytestmark = pytest.mark.full


@pytest.fixture(scope="module")
def tiny_model(tiny_model_file: Path, single_thread) -> swinir.SwinIR:
    return swinir.load_model(tiny_model_file)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """30 frames at 25 fps, 40x24, with an AAC tone."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", width=40, height=24, frames=30)


def expected_frames(model, source: Path) -> list[np.ndarray]:
    return [restore_frame(model, rgb) for rgb in decoded_frames(source)]


def test_video_x2_keeps_frames_rate_audio_and_equals_frame_by_frame(tmp_path, tiny_model_file, tiny_model):
    # Matroska in and out: FFV1 needs it, and from MP4 Matroska would shift every stream by the AAC priming
    # (23 ms; its timestamps cannot be negative), as FFmpeg's own remux does.
    clip = make_clip(tmp_path / "clip.mkv", width=40, height=24, frames=30)
    out = tmp_path / "clip_x2.mkv"
    result = run_cli("restore", clip, "-o", out, "--model", tiny_model_file, "--codec", "ffv1")
    assert result.returncode == 0, result.stderr
    assert "30/30 frames" in result.stderr and " fps" in result.stderr, result.stderr
    before, after = video_facts(clip), video_facts(out)
    assert after["frames"] == before["frames"] == 30
    assert after["rate"] == before["rate"] == 25
    assert (after["width"], after["height"]) == (80, 48)
    assert after["audio_codec"] == "aac" and after["audio_samples"] == before["audio_samples"] > 0
    assert audio_packets(out) == audio_packets(clip), "the audio is copied, not re-encoded"
    assert frame_times(out) == pytest.approx(frame_times(clip), abs=1e-3)
    got, want = decoded_frames(out), expected_frames(tiny_model, clip)
    for i, (g, w) in enumerate(zip(got, want)):
        assert np.array_equal(g, w), f"frame {i}: {np.abs(g.astype(int) - w).max()} levels off"
    assert leftovers(tmp_path) == []


def test_default_encoding_is_near_lossless_and_rerun_skips(tmp_path, clip, tiny_model_file, tiny_model):
    out = tmp_path / "clip_x2.mp4"
    result = run_cli("restore", clip, "-o", out, "--model", tiny_model_file)
    assert result.returncode == 0, result.stderr
    facts = video_facts(out)
    assert facts["frames"] == 30 and facts["rate"] == 25 and facts["audio_samples"] == video_facts(clip)["audio_samples"]
    assert audio_packets(out) == audio_packets(clip)
    assert frame_times(out) == pytest.approx(frame_times(clip), abs=1e-4)
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"  # plays everywhere
    # On luma: 4:2:0 halves the chroma resolution, and the random-weight model's output is full of fine colour
    # noise that no real restoration has.
    luma = lambda rgb: rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    worst = min(psnr(luma(g), luma(w)) for g, w in zip(decoded_frames(out), expected_frames(tiny_model, clip)))
    assert worst > 32, f"x264 at the default CRF: worst frame {worst:.1f} dB (luma) from the exact restoration"
    stamp = out.stat().st_mtime_ns
    again = run_cli("restore", clip, "-o", out, "--model", tiny_model_file)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stderr and "frames" not in again.stderr, again.stderr
    assert out.stat().st_mtime_ns == stamp
    # Other settings into the same name: refused, the finished video left alone; --overwrite replaces it.
    other = run_cli("restore", clip, "-o", out, "--model", tiny_model_file, "--crf", "30")
    assert_clean_failure(other, "clip_x2.mp4", "--overwrite")
    assert out.stat().st_mtime_ns == stamp
    replaced = run_cli("restore", clip, "-o", out, "--model", tiny_model_file, "--crf", "30", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert out.stat().st_mtime_ns != stamp and video_facts(out)["frames"] == 30


def test_odd_size_and_rotation_tag(tmp_path, tiny_model_file, tiny_model):
    """37x21 (4:4:4, since 4:2:0 needs even sides) with a 90-degree display rotation: the rotation tag is kept on
    the video, and frames written as images are turned upright."""
    source = make_clip(tmp_path / "phone.mp4", width=37, height=21, frames=8, rotation=90, pix_fmt="yuv444p")
    assert video_facts(source)["rotation"] == 90
    out = tmp_path / "phone_x2.mkv"
    result = run_cli("restore", source, "-o", out, "--model", tiny_model_file, "--codec", "ffv1")
    assert result.returncode == 0, result.stderr
    facts = video_facts(out)
    assert (facts["width"], facts["height"], facts["rotation"], facts["frames"]) == (74, 42, 90, 8)
    want = expected_frames(tiny_model, source)
    assert all(np.array_equal(g, w) for g, w in zip(decoded_frames(out), want))

    frames = tmp_path / "frames"
    result = run_cli("restore", source, "-o", frames / "%04d.png", "--model", tiny_model_file)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in frames.iterdir()) == [f"{n:04d}.png" for n in range(1, 9)]
    for n, w in enumerate(want, 1):
        got = np.asarray(Image.open(frames / f"{n:04d}.png"))
        assert got.shape == (74, 42, 3), "upright: the rotation applied"
        assert np.array_equal(got, np.rot90(w)), f"frame {n}"
    # An odd output size in the default x264: 4:4:4 is chosen instead of failing.
    odd = tmp_path / "odd_x1.mp4"
    scale1 = make_clip(tmp_path / "odd_in.mp4", width=37, height=21, frames=3, audio=None, pix_fmt="yuv444p")
    assert video_facts(scale1)["width"] == 37
    result = run_cli("restore", scale1, "-o", odd, "--model", tiny_model_file)
    assert result.returncode == 0, result.stderr
    assert video_facts(odd)["frames"] == 3
    assert leftovers(tmp_path) == []


def test_frame_folder_to_video_in_natural_order(tmp_path, tiny_model_file, tiny_model):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i in range(1, 12):  # frame1 ... frame11: natural order puts frame2 before frame10
        Image.fromarray(frame_rgb(i, 20, 14)).save(folder / f"frame{i}.png")
    out = tmp_path / "shots.mkv"
    result = run_cli("restore", folder, "-o", out, "--model", tiny_model_file, "--codec", "ffv1", "--fps", "30000/1001")
    assert result.returncode == 0, result.stderr
    facts = video_facts(out)
    assert facts["frames"] == 11 and facts["rate"] == Fraction(30000, 1001) and facts["audio_codec"] is None
    for i, got in enumerate(decoded_frames(out), 1):
        assert np.array_equal(got, restore_frame(tiny_model, frame_rgb(i, 20, 14))), f"frame{i}"


def test_audio_the_container_cannot_hold_is_reencoded(tmp_path, tiny_model_file):
    """FLAC audio into WebM (which takes Opus or Vorbis only): re-encoded to Opus, as long as before."""
    source = make_clip(tmp_path / "flac.mkv", width=24, height=16, frames=10, audio="flac")
    out = tmp_path / "out.webm"
    result = run_cli("restore", source, "-o", out, "--model", tiny_model_file)
    assert result.returncode == 0, result.stderr
    before, after = video_facts(source), video_facts(out)
    assert after["audio_codec"] == "opus" and after["frames"] == 10
    seconds = lambda f: f["audio_samples"] / f["audio_rate"]  # noqa: E731
    assert seconds(after) == pytest.approx(seconds(before), abs=0.03), "within one Opus frame"


def test_interrupted_video_leaves_no_output(tmp_path, tiny_model_file):
    source = make_clip(tmp_path / "long.mp4", width=64, height=48, frames=400, audio=None)
    out, err = tmp_path / "out", tmp_path / "stderr.txt"
    with background_cli("restore", source, "-o", out / "long_x2.mp4", "--model", tiny_model_file, "--tile", "32",
                        "--overlap", "8", err=err) as proc:
        wait_for(lambda: " frames " in err.read_text(), "progress line", proc=proc)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    stderr = err.read_text()
    assert rc == 130 and "Traceback" not in stderr, stderr
    assert sorted(out.iterdir()) == [], "no output, and no temporary file, after an interrupt"


def test_errors_are_one_clear_line(tmp_path, clip, tiny_model_file):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:300])
    assert_clean_failure(run_cli("restore", broken, "-o", tmp_path / "b.mp4", "--model", tiny_model_file), "broken.mp4")
    assert_clean_failure(run_cli("restore", clip, "-o", tmp_path / "x.mp4", "--model", tiny_model_file, "--codec",
                                 "nosuchcodec"), "nosuchcodec")
    assert_clean_failure(run_cli("restore", clip, clip, "-o", tmp_path / "two.mp4", "--model", tiny_model_file),
                         "exactly one input")
    assert_clean_failure(run_cli("restore", clip, "-o", tmp_path / "still.png", "--model", tiny_model_file),
                         "is a video")
    assert leftovers(tmp_path) == []


def test_without_pyav_videos_say_what_to_install_and_images_still_work(tmp_path, clip, tiny_model_file):
    blocked = "import sys; sys.modules['av'] = None; from swinir.cli import main; sys.exit(main(sys.argv[1:]))"

    def run(*args):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        return subprocess.run([sys.executable, "-c", blocked, *map(str, args)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=180)

    assert_clean_failure(run("restore", clip, "-o", tmp_path / "v.mp4", "--model", tiny_model_file), "pip install av")
    image = tmp_path / "a.png"
    Image.fromarray(frame_rgb(0, 12, 10)).save(image)
    result = run("restore", image, "-o", tmp_path / "a_x2.png", "--model", tiny_model_file)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "a_x2.png").size == (24, 20)


def test_a_video_over_the_pixel_limit_is_named_and_the_rest_is_written(tmp_path, clip, tiny_model_file):
    """A video's frames are held to the images' pixel limit (read from the header, before a frame is decoded):
    one error naming it and the option, while an image in the same folder is still restored."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clip.read_bytes())
    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(folder / "small.png")
    out = tmp_path / "out"
    # 40x24 = 960 pixels: over a 0.0008-megapixel (800-pixel) limit; the 600-pixel image is under it.
    result = run_cli("restore", folder, "-o", out, "--model", tiny_model_file, "--max-megapixels", "0.0008")
    assert_clean_failure(result, "clip.mp4", "40x24", "--max-megapixels 1")
    assert (out / "small.png").is_file()
    assert not any(p.name.startswith("clip") for p in out.iterdir()), sorted(p.name for p in out.iterdir())
    assert leftovers(tmp_path) == []
