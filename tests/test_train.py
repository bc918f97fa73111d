"""`swinir.training.trainer`: a tiny run that saves, resumes where it stopped, and exports a model the pack loads."""

from __future__ import annotations

import re
import struct
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import swinir
from swinir.errors import CheckpointError, InputError
from swinir.training.trainer import TrainSettings, degrade_patch, draw_quality, export, train
from test_cli import assert_clean_failure, run_cli

TINY = swinir.SwinIRConfig(
    task="lightweight_sr", scale=2, in_chans=3, window_size=8, embed_dim=12, depths=(2,), num_heads=(2,),
    upsampler="pixelshuffledirect",
)
TINY_JPEG = swinir.SwinIRConfig(
    task="color_jpeg", scale=1, in_chans=3, window_size=8, embed_dim=12, depths=(2,), num_heads=(2,), upsampler="",
    level_range=(10, 90),
)


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory) -> list[Path]:
    rng = np.random.default_rng(0)
    folders = []
    for name in ("setA", "setB"):
        folder = tmp_path_factory.mktemp(name)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        folders.append(folder)
    return folders


def settings(data: list[Path], out: Path, iterations: int) -> TrainSettings:
    return TrainSettings(data=data, out=out, iterations=iterations, batch=2, patch=8, save_every=2, warmup=2)


def test_train_resume_export(image_folders: list[Path], tmp_path: Path, single_thread) -> None:
    torch.manual_seed(0)
    state_path = train(settings(image_folders[:1], tmp_path, 2), TINY)
    first = torch.load(state_path, weights_only=True)
    assert first["step"] == 2 and [r["step"] for r in first["history"]] == [2]

    # Resuming continues from the saved step with the saved weights, and records the new folder too, and the
    # learning rate a resume may change.
    train(replace(settings(image_folders, tmp_path, 4), lr=1e-4), TINY)
    second = torch.load(state_path, weights_only=True)
    assert second["step"] == 4 and [r["step"] for r in second["history"]] == [2, 4]
    assert [r["lr"] for r in second["history"]] == [2e-4, 1e-4]
    assert second["data"] == [image_folders[0].name, image_folders[1].name]
    assert not all(torch.equal(first["model"][k], second["model"][k]) for k in first["model"])

    target = export(state_path, tmp_path / "exported.safetensors")
    model = swinir.load_model(target)
    assert model.config == TINY
    for k, v in model.state_dict().items():
        assert torch.equal(v, second["ema"][k]), k
    meta = safe_open(str(target), "pt").metadata()
    assert meta["training_steps"] == "4"
    assert meta["training_data"] == f"{image_folders[0].name}, {image_folders[1].name}, MATLAB bicubic x2"
    out = swinir.restore(model, torch.rand(1, 3, 9, 11))
    assert out.shape == (1, 3, 18, 22)


def test_init_starts_from_a_model_and_the_export_says_so(image_folders, tmp_path: Path, single_thread) -> None:
    torch.manual_seed(0)
    first = export(train(settings(image_folders[:1], tmp_path / "a", 2), TINY), tmp_path / "a.safetensors")
    start = swinir.load_model(first).state_dict()
    run = settings(image_folders[:1], tmp_path / "b", 2)
    run.init = first
    state = torch.load(train(run, TINY), weights_only=True)
    # Two steps at the warm-up's small learning rates move the weights away from the start, but not far.
    moved = max(float((state["model"][k] - start[k]).abs().max()) for k in start)
    assert 0 < moved < 0.05
    meta = safe_open(str(export(tmp_path / "b" / "state.pt", tmp_path / "b.safetensors")), "pt").metadata()
    assert meta["training_steps"] == "2"
    assert meta["initialised_from"].startswith("a.safetensors at step 2 (")
    # Resuming keeps the record; a state file works as --init as well.
    run.iterations, run.init = 4, tmp_path / "a" / "state.pt"
    assert torch.load(train(run, TINY), weights_only=True)["init"] == state["init"]
    run = settings(image_folders[:1], tmp_path / "c", 2)
    run.init = tmp_path / "a" / "state.pt"
    assert torch.load(train(run, TINY), weights_only=True)["init"].startswith("state.pt at step 2 (")


@pytest.mark.parametrize("native", [False, True])
def test_bf16_training_on_a_cpu_without_bf16_units_says_so(image_folders, tmp_path: Path, single_thread, caplog,
                                                           monkeypatch, native: bool) -> None:
    # The engine's own notice, said once per process: start from a process that has not said it yet.
    monkeypatch.setattr(swinir.precision, "cpu_has_native", lambda dtype: native)
    monkeypatch.setattr(swinir.precision, "_EMULATED_SAID", set())
    run = settings(image_folders[:1], tmp_path, 1)
    run.precision = "bf16"
    with caplog.at_level("WARNING", logger="swinir.precision"):
        state = torch.load(train(run, TINY), weights_only=True)
    assert state["step"] == 1
    said = [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
    if native:
        assert said == []
    else:
        assert len(said) == 1 and "bf16 on this CPU is emulated" in said[0] and "choose fp32" in said[0], said


def jpeg_settings(data: list[Path], out: Path, iterations: int, sampling: str) -> TrainSettings:
    run = settings(data, out, iterations)
    run.task, run.quality_sampling = "jpeg", sampling
    return run


def test_log_quality_sampling_spreads_patches_over_the_strength_of_the_artifacts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shares = {}
    for sampling in ("log", "uniform"):
        q = np.array([draw_quality(jpeg_settings([], tmp_path, 1, sampling), rng) for _ in range(20_000)])
        assert q.min() == 10 and q.max() == 90
        shares[sampling] = [np.mean((q >= a) & (q < 2 * a)) for a in (10, 20, 40)]
    # log: each doubling of the quality (each halving of the quantiser step below q 50) draws about a third.
    assert all(0.30 < share < 0.36 for share in shares["log"]), shares
    # uniform: q 10-19 gets 10 of the 81 qualities, q 40-79 gets 40.
    assert shares["uniform"][0] == pytest.approx(10 / 81, abs=0.01)
    assert shares["uniform"][2] == pytest.approx(40 / 81, abs=0.01)
    with pytest.raises(InputError, match="quality sampling 'cubic'"):
        draw_quality(jpeg_settings([], tmp_path, 1, "cubic"), rng)


@pytest.mark.parametrize("task", ["denoise", "jpeg"])
def test_blind_degradations_of_a_patch(task: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    clean = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    run = jpeg_settings([], tmp_path, 1, "log")
    run.task = task
    out = degrade_patch(clean, run, rng)
    assert out.shape == clean.shape and out.dtype == np.float32
    assert np.abs(out - clean / 255.0).mean() > 1e-3
    if task == "jpeg":  # decoded pixels: the uint8 grid, in range
        assert np.allclose(out * 255.0, np.round(out * 255.0), atol=1e-3) and 0 <= out.min() and out.max() <= 1


def test_jpeg_run_resumed_with_another_sampling_keeps_its_history(image_folders, tmp_path: Path,
                                                                   single_thread) -> None:
    torch.manual_seed(0)
    monitored = replace(jpeg_settings(image_folders, tmp_path, 2, "uniform"), eval_dir=image_folders[0], eval_every=2)
    state = torch.load(train(monitored, TINY_JPEG), weights_only=True)
    assert state["degradation"] == "Pillow JPEG quality 10-90, 4:2:0 (per patch)"
    state = torch.load(train(jpeg_settings(image_folders, tmp_path, 4, "log"), TINY_JPEG), weights_only=True)
    switched = ("Pillow JPEG quality 10-90, 4:2:0 (per patch) to step 2, "
                "then Pillow JPEG quality 10-90 log-uniform, 4:2:0 (per patch)")
    assert state["step"] == 4 and state["degradation"] == switched
    # Resuming with the same sampling adds nothing.
    state = torch.load(train(jpeg_settings(image_folders, tmp_path, 6, "log"), TINY_JPEG), weights_only=True)
    assert state["step"] == 6 and state["degradation"] == switched
    target = export(tmp_path / "state.pt", tmp_path / "jpeg.safetensors")
    metadata = safe_open(str(target), "pt").metadata()
    assert metadata["training_data"].endswith(switched)
    # Only the first run evaluated: the export names the monitor and the step of its last score.
    monitor = rf"{re.escape(image_folders[0].name)} RGB PSNR at JPEG quality 20: [0-9.]+ at step 2"
    assert re.fullmatch(monitor, metadata["monitor"]), metadata["monitor"]
    model = swinir.load_model(target)
    assert swinir.restore(model, torch.rand(1, 3, 9, 11)).shape == (1, 3, 9, 11)


def test_train_rejects_missing_or_empty_data(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        train(settings([tmp_path / "missing"], tmp_path / "run", 1), TINY)
    (tmp_path / "small").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "small" / "a.png")
    with pytest.raises(InputError, match="at least 16 px"):
        train(settings([tmp_path / "small"], tmp_path / "run", 1), TINY)


def test_export_rejects_missing_or_corrupt_state(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no training state"):
        export(tmp_path / "state.pt", tmp_path / "x.safetensors")
    (tmp_path / "state.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="not a readable training state"):
        export(tmp_path / "state.pt", tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(CheckpointError, match="not a readable training state"):
        train(settings([tmp_path], tmp_path, 1), TINY)  # resuming from it fails the same way


def test_resume_state_is_read_within_the_checkpoint_limits(tmp_path: Path) -> None:
    weights = swinir.SwinIR(TINY).state_dict()
    state = {"model": weights, "ema": weights, "optimizer": {}, "step": 1, "elapsed": 0.0, "history": [],
             "config": TINY.to_metadata()}
    torch.save(state, tmp_path / "plain.pt")
    # The same state with its entries deflated: PyTorch's reader would allocate whatever size an entry claims.
    (tmp_path / "deflated").mkdir()
    with zipfile.ZipFile(tmp_path / "plain.pt") as src, \
            zipfile.ZipFile(tmp_path / "deflated" / "state.pt", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    with pytest.raises(CheckpointError, match=r"not a readable training state: .* is compressed .*delete it to start"):
        export(tmp_path / "deflated" / "state.pt", tmp_path / "x.safetensors")
    # An entry claiming more bytes than the file holds.
    (tmp_path / "long").mkdir()
    data = bytearray((tmp_path / "plain.pt").read_bytes())
    with zipfile.ZipFile(tmp_path / "plain.pt") as z:
        big = max(z.infolist(), key=lambda info: info.file_size)
    name_at = data.index(big.filename.encode(), big.header_offset)
    data[name_at - 30 + 18 : name_at - 30 + 26] = struct.pack("<II", 1 << 30, 1 << 30)  # local header sizes
    central = data.rindex(big.filename.encode())
    data[central - 46 + 20 : central - 46 + 28] = struct.pack("<II", 1 << 30, 1 << 30)  # central directory sizes
    (tmp_path / "long" / "state.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"not a readable training state: .*(ends past|truncated|corrupt)"):
        export(tmp_path / "long" / "state.pt", tmp_path / "x.safetensors")
    # A readable file that is no state.
    (tmp_path / "other").mkdir()
    torch.save({"step": 1}, tmp_path / "other" / "state.pt")
    with pytest.raises(CheckpointError, match=r"not a readable training state \(no model, ema, optimizer"):
        export(tmp_path / "other" / "state.pt", tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    export(tmp_path / "plain.pt", tmp_path / "x.safetensors")  # the untouched state passes the same reader


def test_cli_train_errors_are_one_line(tmp_path: Path) -> None:
    assert_clean_failure(run_cli("train", tmp_path / "missing", "--out", tmp_path / "run"), "does not exist")
    # Checked by the trainer, not the parser (which must not import it): refused before --out is made.
    assert_clean_failure(run_cli("train", tmp_path, "--out", tmp_path / "q", "--quality-sampling", "cubic"),
                         "unknown quality sampling 'cubic'; use one of log, uniform")
    assert not (tmp_path / "q").exists()
    assert_clean_failure(
        run_cli("train", tmp_path, "--out", tmp_path / "nothing", "--export", tmp_path / "m.safetensors"),
        "no training state",
    )
