"""Bulk runs without Ray: resuming, never clobbering another job's output, two command-line runs writing one
folder at once (real processes), stale temporary files of killed processes, and what names the jobs get."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import swinir
from swinir.bulk.plan import FRAMES_TO_VIDEO, IMAGE, VIDEO, VIDEO_TO_FRAMES, frame_path, plan_jobs
from swinir.errors import SwinIRError
from swinir.fileutil import atomic_target, part_owner, remove_stale_parts
from test_cli import ROOT, assert_clean_failure, leftovers, noise_image, run_cli, tiny_model_file  # noqa: F401

CLI = [sys.executable, "-m", "swinir"]


def expected_png(model: swinir.SwinIR, source: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(source).convert("RGB"), dtype=np.float32) / 255
    y = swinir.restore(model, torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    return np.floor(np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        noise_image(18 + i, 12, "RGB", 40 + i).save(src / f"p{i}.png")
    return src


# ------------------------------------------------------------------------------------------------- resume


def test_rerun_redoes_only_missing_outputs(tmp_path: Path, folder: Path, tiny_model_file: Path) -> None:
    out = tmp_path / "out"
    first = run_cli("restore", folder, "-o", out, "--model", tiny_model_file)
    assert first.returncode == 0, first.stderr
    original = (out / "p1.png").read_bytes()
    (out / "p1.png").unlink()
    kept = stamps(out)
    again = run_cli("restore", folder, "-o", out, "--model", tiny_model_file)
    assert again.returncode == 0, again.stderr
    assert "3 inputs: 1 written, 2 already complete (kept)" in again.stderr, again.stderr
    assert "p0.png [" not in again.stderr and "p1.png [" in again.stderr, "progress only for the one redone"
    assert {k: v for k, v in stamps(out).items() if k in kept} == kept, "complete outputs are not rewritten"
    assert (out / "p1.png").read_bytes() == original


def test_other_settings_or_foreign_files_are_never_overwritten(tmp_path: Path, folder: Path,
                                                               tiny_model_file: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (5, 5), "red").save(out / "p2.png")  # the user's own file, not made by restore
    first = run_cli("restore", folder, "-o", out, "--model", tiny_model_file)
    assert first.returncode == 1
    assert [line for line in error_lines(first.stderr)] == [line for line in error_lines(first.stderr)
                                                            if "p2.png" in line and "not made by" in line]
    assert len(error_lines(first.stderr)) == 1 and "--overwrite" in first.stderr
    assert Image.open(out / "p2.png").size == (5, 5)
    before = stamps(out)
    other = run_cli("restore", folder, "-o", out, "--model", tiny_model_file, "--tile", "16")
    assert other.returncode == 1
    reasons = {line.split(":")[1].strip().rsplit("/", 1)[-1]: line for line in error_lines(other.stderr)}
    assert sorted(reasons) == ["p0.png", "p1.png", "p2.png"], other.stderr
    assert "settings other than this run's" in reasons["p0.png"] and "not made by" in reasons["p2.png"]
    assert stamps(out) == before, "nothing was overwritten"
    forced = run_cli("restore", folder, "-o", out, "--model", tiny_model_file, "--tile", "16", "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert Image.open(out / "p2.png").size == (40, 24)
    assert all(stamps(out)[name] != before[name] for name in before)
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------ concurrency


def _start(*args: object) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([*CLI, *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def test_two_runs_into_one_folder_never_clobber(tmp_path: Path, tiny_model_file: Path, single_thread) -> None:
    """Issue 14: two command-line runs write one folder at once. Run A and run B restore different images under
    the same eight names: each name ends up as exactly one of them, whole (the pixels of A's or of B's input, never
    a mix), the other run names it as left alone and exits 1, and no temporary file remains. Two runs of one
    same job into one folder both succeed, with every output written once."""
    model = swinir.load_model(tiny_model_file)
    names = [f"f{i}.png" for i in range(8)]
    inputs = {}
    for run in ("a", "b"):
        inputs[run] = tmp_path / run
        inputs[run].mkdir()
        for i, name in enumerate(names):
            noise_image(160, 120, "RGB", (100 if run == "a" else 200) + i).save(inputs[run] / name)
    out = tmp_path / "out"
    procs = {run: _start("restore", inputs[run], "-o", out, "--model", tiny_model_file) for run in inputs}
    results = {run: (p.wait(timeout=300), p.stderr.read()) for run, p in procs.items()}
    lost = {run: {line.split(":")[1].strip().rsplit("/", 1)[-1] for line in error_lines(err)}
            for run, (_, err) in results.items()}
    for run, (rc, err) in results.items():
        assert "Traceback" not in err, err
        assert rc == (1 if lost[run] else 0), err
        assert all("made from another input" in line and "left as it is" in line for line in error_lines(err)), err
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        losers = [run for run in inputs if name in lost[run]]
        assert len(losers) == 1, f"{name}: exactly one run must have given way, got {losers}"
        winner = "b" if losers == ["a"] else "a"
        got = np.asarray(Image.open(out / name))
        assert np.array_equal(got, expected_png(model, inputs[winner] / name)), f"{name} is not {winner}'s, whole"
    assert leftovers(tmp_path) == []

    same = tmp_path / "same"
    twins = [_start("restore", inputs["a"], "-o", same, "--model", tiny_model_file) for _ in range(2)]
    for proc in twins:
        rc, err = proc.wait(timeout=300), proc.stderr.read()
        assert rc == 0 and not error_lines(err), err
    assert sorted(p.name for p in same.iterdir()) == names
    for name in names:
        assert np.array_equal(np.asarray(Image.open(same / name)), expected_png(model, inputs["a"] / name))
    assert leftovers(tmp_path) == []


def _publish_many(who: str, folder: str, count: int, barrier, results) -> None:
    won = []
    for i in range(count):
        barrier.wait()  # both processes publish name i at the same moment
        try:
            with atomic_target(Path(folder) / f"{i}.txt", replace=False) as tmp:
                tmp.write_text(who * 1000)
            won.append(i)
        except FileExistsError:
            pass
    results[who] = won


def test_no_replace_publishing_has_one_winner_per_name(tmp_path: Path) -> None:
    """The primitive under the CLI's guarantee, raced hard: two processes publish each of 150 names at the same
    moment; each name is won by exactly one of them and holds that one's whole content."""
    context = multiprocessing.get_context("fork")  # plain file operations in the children: no re-import needed
    barrier, manager = context.Barrier(2), context.Manager()
    results = manager.dict()
    procs = [context.Process(target=_publish_many, args=(who, str(tmp_path), 150, barrier, results)) for who in "xy"]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    x, y = set(results["x"]), set(results["y"])
    assert x | y == set(range(150)) and not x & y
    assert x and y, "both processes won some names: the race really happened"
    for i in range(150):
        assert (tmp_path / f"{i}.txt").read_text() == ("x" if i in x else "y") * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}.txt" for i in range(150))


def test_temporary_files_of_killed_processes_are_removed(tmp_path: Path) -> None:
    script = ("import sys; from pathlib import Path; from swinir.fileutil import atomic_target\n"
              "with atomic_target(Path(sys.argv[1])) as tmp:\n"
              "    tmp.write_text('half'); print(tmp.name, flush=True); sys.stdin.read()\n")
    victim = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out.png")], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    name = victim.stdout.readline().strip()  # the temporary file exists once it has printed its name
    assert part_owner(name)[1] == victim.pid
    with atomic_target(tmp_path / "mine.png") as live:
        live.write_text("in progress")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert (tmp_path / name).exists(), "SIGKILL leaves the temporary file behind"
        assert remove_stale_parts(tmp_path) == 1
        assert not (tmp_path / name).exists() and live.exists(), "only the dead process's file is removed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.png"]


# ------------------------------------------------------------------------------------------------- plans


def test_job_plans(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.png", "a.jpg", "clip.mp4", "film.avi", "notes.txt"):
        (src / name).write_bytes(b"x")
    jobs = plan_jobs([src], tmp_path / "out")
    assert {(j.source.name, j.target.name, j.kind) for j in jobs} == {
        ("a.png", "a_png.png", IMAGE), ("a.jpg", "a_jpg.png", IMAGE), ("clip.mp4", "clip.mp4", VIDEO),
        ("film.avi", "film.mp4", VIDEO)}
    [job] = plan_jobs([src / "clip.mp4"], tmp_path / "o" / "%05d.png")
    assert job.kind == VIDEO_TO_FRAMES and frame_path(job.target, 7).name == "00007.png"
    [job] = plan_jobs([src], tmp_path / "v.mkv")
    assert job.kind == FRAMES_TO_VIDEO
    for inputs, output, needle in (([src / "a.png"], tmp_path / "v.mp4", "not a video"),
                                   ([src / "clip.mp4", src / "film.avi"], tmp_path / "v.mp4", "exactly one input"),
                                   ([src / "a.png"], tmp_path / "f" / "%d.png", "not a video"),
                                   ([src / "clip.mp4"], tmp_path / "v.avi", "cannot write .avi")):
        with pytest.raises(SwinIRError, match=needle):
            plan_jobs(inputs, output)


def test_core_and_cli_never_import_ray() -> None:
    """Ray is an optional extra: importing the library, its bulk machinery and the command line must not load it,
    and the ComfyUI nodes never name it."""
    code = ("import sys, swinir, swinir.bulk.local, swinir.bulk.worker, swinir.bulk.video, swinir.cli; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
    for path in (ROOT / "nodes").rglob("*.py"):
        text = path.read_text()
        assert "import ray" not in text and "ray_runner" not in text, path
    for path in (ROOT / "swinir").rglob("*.py"):
        if path.name != "ray_runner.py":
            assert "import ray" not in path.read_text(), f"{path} imports Ray"


def test_without_ray_the_ray_option_says_what_to_install(tmp_path: Path, tiny_model_file: Path) -> None:
    src = tmp_path / "a.png"
    noise_image(8, 8, "RGB").save(src)
    blocked = "import sys; sys.modules['ray'] = None; from swinir.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", blocked, "restore", str(src), "-o", str(tmp_path / "out"),
                             "--model", str(tiny_model_file), "--ray"], cwd=ROOT, capture_output=True, text=True,
                            timeout=180)
    assert_clean_failure(result, "requirements-ray.txt")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # `--ray` takes an optional address, so before the inputs it would swallow the first one: said, not guessed.
    assert_clean_failure(run_cli("restore", "--ray", src, src, "-o", tmp_path / "out", "--model", tiny_model_file),
                         "put --ray after the inputs")


def test_actor_pool_follows_the_cluster() -> None:
    """How `--ray` sizes its pool from the cluster's resources (the GPU cases cannot run here: planning only)."""
    from swinir.bulk.ray_runner import Pool, plan_pool
    from swinir.bulk.settings import Settings
    from swinir.errors import ClusterError

    auto = Settings()
    assert plan_pool({"CPU": 64, "GPU": 8}, auto, None) == Pool(8, 1, 2)
    assert plan_pool({"CPU": 8, "GPU": 8}, auto, 3) == Pool(3, 1, 2)
    assert plan_pool({"CPU": 4, "GPU": 2}, auto, 5) == Pool(2, 1, 2), "never more actors than GPUs"
    assert plan_pool({"CPU": 16, "GPU": 2}, Settings(device="cpu"), None) == Pool(4, 0, 4)
    assert plan_pool({"CPU": 16}, auto, None) == Pool(4, 0, 4)
    assert plan_pool({"CPU": 2}, auto, None) == Pool(1, 0, 2)
    assert plan_pool({"CPU": 2}, auto, 2) == Pool(2, 0, 1)
    assert plan_pool({"CPU": 2}, auto, 9) == Pool(2, 0, 1), "never more actors than CPUs"
    with pytest.raises(ClusterError, match="no GPU"):
        plan_pool({"CPU": 8}, Settings(device="cuda"), None)
