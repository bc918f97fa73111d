"""`restore --ray` on a real local Ray cluster (127.0.0.1, 2 CPUs, started once for this module), driven through
the command line as a user runs it: same pixels as the local run, a corrupt input named, reruns that redo
nothing, an actor killed mid-run, an interrupted run resumed, and a video cut into segments at keyframes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported: listen on 127.0.0.1 only

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402
from PIL import Image  # noqa: E402

import swinir  # noqa: E402
from cli_runs import background_cli, wait_for  # noqa: E402
from test_bad_inputs import png_bomb  # noqa: E402
from test_bulk import error_lines, expected_png, stamps  # noqa: E402
from test_cli import ROOT, assert_clean_failure, leftovers, noise_image, run_cli, tiny_model_file  # noqa: E402,F401
from testkit.video_clips import (  # noqa: E402
    audio_packets, decoded_frames, frame_times, make_clip, psnr, restore_frame, video_facts,
)

# A real local Ray cluster per test module: the full suite's.
pytestmark = pytest.mark.full
ACTOR_CLASS = "MapWorker(MapBatches(RestoreActor))"


@pytest.fixture(scope="module")
def cluster() -> str:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:"), address
    yield address
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_model(tiny_model_file: Path, single_thread) -> swinir.SwinIR:
    return swinir.load_model(tiny_model_file)


def restore_actors(state: str | None = None) -> list[dict]:
    """The restore actors the cluster's control store knows, of every run so far."""
    return [a for a in ray._private.state.actors().values()
            if a["ActorClassName"] == ACTOR_CLASS and (state is None or a["State"] == state)]


def finished(folder: Path) -> int:
    """Outputs published in `folder` (temporary files are hidden)."""
    return sum(1 for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else 0


def image_folder(folder: Path, count: int, size: int, seed: int) -> list[str]:
    folder.mkdir()
    for i in range(count):
        noise_image(size, size - 8, "RGB", seed + i).save(folder / f"img{i:02d}.png")
    return sorted(p.name for p in folder.iterdir())


def test_folder_over_ray_equals_local_names_the_corrupt_file_and_reruns_nothing(tmp_path, cluster, tiny_model_file):
    src = tmp_path / "in"
    src.mkdir()
    for i, (w, h) in enumerate([(20, 15), (33, 17), (16, 16), (41, 9), (24, 30)]):
        noise_image(w, h, "RGB", 60 + i).save(src / f"rgb{i}.png")
    noise_image(18, 12, "I;16", 70).save(src / "gray16.png")
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    png_bomb(src / "bomb.png")  # 400 megapixels claimed: refused in the actor, the run goes on
    local, remote = tmp_path / "local", tmp_path / "ray"

    here = run_cli("restore", src, "-o", local, "--model", tiny_model_file)
    over = run_cli("restore", src, "-o", remote, "--model", tiny_model_file, "--ray", cluster, "--actors", "2")
    for result in (here, over):
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        bomb, corrupt = error_lines(result.stderr)  # in input order
        assert "bomb.png" in bomb and "--max-megapixels" in bomb and "corrupt.png" in corrupt, result.stderr
    assert "2 actors" in over.stderr, over.stderr
    names = sorted(p.name for p in local.iterdir())
    assert len(names) == 6 and sorted(p.name for p in remote.iterdir()) == names
    for name in names:
        a, b = Image.open(local / name), Image.open(remote / name)
        assert a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b)), f"{name}: Ray and local differ"

    before = stamps(remote)
    again = run_cli("restore", src, "-o", remote, "--model", tiny_model_file, "--ray", cluster, "--actors", "2")
    assert again.returncode == 1, again.stderr
    assert "8 inputs: 0 written, 6 already complete (kept), 2 failed" in again.stderr, again.stderr
    assert stamps(remote) == before
    # What Ray wrote is complete for a local rerun too: the same key, whichever runner made it.
    mixed = run_cli("restore", src, "-o", remote, "--model", tiny_model_file)
    assert "0 written, 6 already complete" in mixed.stderr, mixed.stderr
    assert leftovers(tmp_path) == []


def test_an_actor_killed_mid_run_is_replaced_and_every_output_appears_once(tmp_path, cluster, tiny_model_file,
                                                                         tiny_model):
    names = image_folder(tmp_path / "in", 24, 120, 300)
    out, err = tmp_path / "out", tmp_path / "err.txt"
    with background_cli("restore", tmp_path / "in", "-o", out, "--model", tiny_model_file, "--ray", cluster,
                        "--actors", "2", err=err) as proc:
        wait_for(lambda: finished(out) >= 1, "first output", proc=proc)
        victim = restore_actors("ALIVE")[0]
        os.kill(victim["Pid"], signal.SIGKILL)
        finished_at_kill = finished(out)
        rc = proc.wait(timeout=300)
    stderr = err.read_text()
    assert finished_at_kill < len(names), "the run was over before the kill: nothing was tested"
    assert rc == 0 and "Traceback" not in stderr, stderr
    restarted = [a for a in restore_actors() if a["ActorID"] == victim["ActorID"]]
    assert restarted and restarted[0]["NumRestarts"] >= 1, "Ray replaced the killed actor"
    assert sorted(p.name for p in out.iterdir()) == names, "every output once, no temporary file left"
    for name in names:
        assert np.array_equal(np.asarray(Image.open(out / name)), expected_png(tiny_model, tmp_path / "in" / name)), name


def test_an_interrupted_run_resumes_with_only_what_is_left(tmp_path, cluster, tiny_model_file):
    names = image_folder(tmp_path / "in", 16, 120, 500)
    out, err = tmp_path / "out", tmp_path / "err.txt"
    with background_cli("restore", tmp_path / "in", "-o", out, "--model", tiny_model_file, "--ray", cluster,
                        "--actors", "2", err=err) as proc:
        wait_for(lambda: finished(out) >= 2, "two outputs", proc=proc)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
    assert rc == 130, err.read_text()
    # The driver gone, Ray ends its actors; what they had finished is complete, anything half-written is a
    # temporary file that the next run removes.
    wait_for(lambda: not restore_actors("ALIVE"), "end of the interrupted run's actors", timeout=120)
    done = {name: stamp for name, stamp in stamps(out).items() if not name.startswith(".")}
    assert 2 <= len(done) < len(names), f"{len(done)} of {len(names)} done: the interrupt came too late"
    again = run_cli("restore", tmp_path / "in", "-o", out, "--model", tiny_model_file, "--ray", cluster,
                    "--actors", "2")
    assert again.returncode == 0, again.stderr
    expected = f"{len(names)} inputs: {len(names) - len(done)} written, {len(done)} already complete (kept)"
    assert expected in again.stderr, again.stderr
    assert {name: stamps(out)[name] for name in done} == done, "finished outputs were not redone"
    assert sorted(p.name for p in out.iterdir()) == names


def test_a_video_over_ray_is_cut_at_keyframes_and_joined_with_its_audio(tmp_path, cluster, tiny_model_file,
                                                                       tiny_model):
    """48 frames with a keyframe every 8: three segments (at least 16 frames each) over two actors, joined in
    order with the audio copied; exact through FFV1, within x264's tolerance through the default MP4."""
    clip = make_clip(tmp_path / "clip.mkv", width=32, height=24, frames=48, gop=8, rotation=90)
    want = [restore_frame(tiny_model, rgb) for rgb in decoded_frames(clip)]

    out = tmp_path / "clip_x2.mkv"
    result = run_cli("restore", clip, "-o", out, "--model", tiny_model_file, "--codec", "ffv1", "--ray", cluster,
                     "--actors", "2")
    assert result.returncode == 0, result.stderr
    assert "clip.mkv: restored in 3 segments" in result.stderr, result.stderr
    before, after = video_facts(clip), video_facts(out)
    for fact in ("frames", "rate", "rotation", "audio_samples"):
        assert after[fact] == before[fact], fact
    assert audio_packets(out) == audio_packets(clip)
    assert frame_times(out) == pytest.approx(frame_times(clip), abs=1e-3)
    for i, (got, w) in enumerate(zip(decoded_frames(out), want)):
        assert np.array_equal(got, w), f"frame {i}"

    mp4 = make_clip(tmp_path / "clip.mp4", width=32, height=24, frames=48, gop=8)
    out = tmp_path / "clip_x2.mp4"
    result = run_cli("restore", mp4, "-o", out, "--model", tiny_model_file, "--ray", cluster, "--actors", "2")
    assert result.returncode == 0, result.stderr
    after = video_facts(out)
    assert after["frames"] == 48 and after["rate"] == 25 and audio_packets(out) == audio_packets(mp4)
    assert frame_times(out) == pytest.approx(frame_times(mp4), abs=1e-4), "B-frame timing survives the join"
    luma = lambda rgb: rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    worst = min(psnr(luma(g), luma(restore_frame(tiny_model, s)))
                for g, s in zip(decoded_frames(out), decoded_frames(mp4)))
    assert worst > 32, f"joined x264 segments: worst frame {worst:.1f} dB (luma)"

    frames = tmp_path / "frames"
    result = run_cli("restore", clip, "-o", frames / "%03d.png", "--model", tiny_model_file, "--ray", cluster,
                     "--actors", "2")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in frames.iterdir()) == [f"{n:03d}.png" for n in range(1, 49)]
    for n, w in enumerate(want, 1):
        assert np.array_equal(np.asarray(Image.open(frames / f"{n:03d}.png")), np.rot90(w)), f"frame {n}"
    assert leftovers(tmp_path) == []


def test_bench_bulk_rehearsal(tmp_path, cluster):
    """bench/bench_bulk.py on its tiny configuration (the full run is for a quiet machine): every runner restores
    every image and each video length is measured in its own process."""
    figures = tmp_path / "bench.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "bench.bench_bulk", "--tiny", "--address", cluster,
                             "--json", str(figures)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(figures.read_text())
    assert [r["mode"] for r in data["images"]["rows"]] == ["local", "ray, 1 actor", "ray, 2 actors"]
    assert all(r["images_per_s"] > 0 for r in data["images"]["rows"])
    assert [r["frames"] for r in data["video"]["rows"]] == [3, 6]
    assert all(r["peak"] > r["base"] > 0 and r["fps"] > 0 for r in data["video"]["rows"])
    assert "| ray, 2 actors |" in result.stdout and "peak RSS growth" in result.stdout


def test_cluster_problems_are_one_clear_line(tmp_path, cluster, tiny_model_file):
    src = tmp_path / "a.png"
    noise_image(8, 8, "RGB").save(src)
    # Port 1 on this machine: nothing listens there; refused at once rather than after Ray's minutes of retries.
    assert_clean_failure(run_cli("restore", src, "-o", tmp_path / "o1", "--model", tiny_model_file, "--ray",
                                 "127.0.0.1:1"), "cannot reach the Ray cluster", "127.0.0.1:1")
    assert_clean_failure(run_cli("restore", src, "-o", tmp_path / "o2", "--model", tiny_model_file, "--ray",
                                 "not-an-address"), "HOST:PORT")
    assert_clean_failure(run_cli("restore", src, "-o", tmp_path / "o3", "--model", tiny_model_file, "--ray", cluster,
                                 "--device", "cuda"), "no GPU")
