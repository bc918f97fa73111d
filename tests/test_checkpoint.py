"""Checkpoint files: every kind of bad input is a CheckpointError naming the file; wrappers and prefixes are
unwrapped; conversion to safetensors is lossless and recorded; metadata, file name and window heuristic decide the
task in that order."""

from __future__ import annotations

import hashlib
import random
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import swinir
from swinir import SwinIRConfig
from testkit.reference import TOL, max_diff, our_output, reference_output, save_official, small_reference

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parent.parent
SIZE = (19, 23)


def _x(in_chans: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, in_chans, *SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def ref():
    """A small lightweight x2 reference network (window 8)."""
    return small_reference(window=8, upscale=2, upsampler="pixelshuffledirect", seed=1)


@pytest.fixture
def official(ref, tmp_path) -> Path:
    return save_official(ref, tmp_path / "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x2.pth")


def _error(path: Path) -> str:
    with pytest.raises(swinir.CheckpointError) as info:
        swinir.load_model(path)
    assert isinstance(info.value, swinir.SwinIRError)
    message = str(info.value)
    assert path.name in message, message
    # What the message says beyond the file name (so a phrase cannot be matched by the name itself).
    return message.replace(str(path), "").replace(path.name, "")


# --- bad inputs --------------------------------------------------------------------------------------------------


def test_checkpoint_error_is_a_swinir_error():
    assert issubclass(swinir.CheckpointError, swinir.SwinIRError)


def test_truncated_safetensors(ref, official, tmp_path):
    good = swinir.save_safetensors(swinir.load_model(official), tmp_path / "model.safetensors")
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    assert "truncated" in _error(cut)


def test_safetensors_cut_inside_its_header(official, tmp_path):
    good = swinir.save_safetensors(swinir.load_model(official), tmp_path / "model.safetensors")
    data = good.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    cut = tmp_path / "cut_header.safetensors"
    cut.write_bytes(data[: 8 + n // 2])
    message = _error(cut)
    assert "header" in message or "truncated" in message


def test_random_bytes(tmp_path):
    data = random.Random(0).randbytes(4096)
    assert data[:1] != b"\x80" and data[:2] != b"PK"  # not mistakable for a pickle or a zip
    path = tmp_path / "noise.pth"
    path.write_bytes(data)
    assert "not a checkpoint" in _error(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    assert "empty" in _error(path)


def test_missing_file(tmp_path):
    assert "no such" in _error(tmp_path / "does_not_exist.pth")


def test_directory_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "folder.pth"
    path.mkdir()
    _error(path)


class _Payload:
    """Unpickling this object creates a file: the stand-in for arbitrary code in a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"params": {"conv_first.weight": torch.zeros(1), "x": _Payload(marker)}}, path)
    message = _error(path)
    assert not marker.exists()
    assert "refused" in message
    # Control: the payload is live, so the check above means the loader really did not run it.
    torch.load(path, weights_only=False)["params"]["x"].close()
    assert marker.exists()


def test_esrgan_weights_point_to_load_upscale_model(tmp_path):
    sd = {
        "model.0.weight": torch.zeros(64, 3, 3, 3),
        "model.0.bias": torch.zeros(64),
        "model.1.sub.0.RDB1.conv1.0.weight": torch.zeros(32, 64, 3, 3),
        "model.1.sub.0.RDB1.conv1.0.bias": torch.zeros(32),
    }
    path = tmp_path / "4x-UltraSharp.pth"
    torch.save(sd, path)
    message = _error(path)
    assert "ESRGAN" in message
    assert "Load Upscale Model" in message
    assert "not a SwinIR" in message


def test_pth_holding_a_list(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], path)
    assert "list" in _error(path)


def test_pth_dict_with_non_tensor_values(ref, tmp_path):
    sd = dict(ref.state_dict())
    sd["epoch"] = 7
    path = tmp_path / "with_epoch.pth"
    torch.save({"params": sd}, path)
    message = _error(path)
    assert "epoch" in message and "int" in message


def test_truncated_pth(official, tmp_path):
    data = official.read_bytes()
    assert data[:4] == b"PK\x03\x04"
    cut = tmp_path / "half.pth"
    cut.write_bytes(data[: len(data) // 2])
    message = _error(cut)
    assert "truncated" in message or "corrupt" in message


def test_safetensors_name_holding_a_plain_zip(tmp_path):
    path = tmp_path / "archive.safetensors"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "not a model")
    message = _error(path)
    assert "PyTorch" in message or "zip" in message.lower()


def test_format_is_sniffed_not_taken_from_the_extension(ref, official, tmp_path):
    """A real torch file under a .safetensors name (a renamed download) still loads: the bytes decide."""
    renamed = tmp_path / "renamed.safetensors"
    renamed.write_bytes(official.read_bytes())
    x = _x()
    assert max_diff(our_output(swinir.load_model(renamed), x), reference_output(ref, x)) <= TOL


def test_legacy_non_zip_torch_file_loads(ref, tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"params": ref.state_dict()}, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:1] == b"\x80"
    x = _x()
    assert max_diff(our_output(swinir.load_model(path), x), reference_output(ref, x)) <= TOL


def _rewrite_metadata(src: Path, dst: Path, **changes: str) -> Path:
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(changes)
    save_file(tensors, str(dst), metadata=meta)
    return dst


@pytest.fixture
def classical(tmp_path) -> Path:
    """A small classical x2 model (pixelshuffle: it has num_feat convolutions) as our safetensors."""
    ref = small_reference(window=8, upscale=2, upsampler="pixelshuffle", seed=2)
    official = save_official(ref, tmp_path / "001_classicalSR_DF2K_s64w8_SwinIR-M_x2.pth")
    return swinir.save_safetensors(swinir.load_model(official), tmp_path / "good.safetensors")


# field -> (edited value, what the message must mention: the field, or the weights that disagree with it)
METADATA_EDITS = {
    "window_size": ("7", ("window_size",)),
    "embed_dim": ("32", ("embed_dim",)),
    "depths": ("2,3", ("depths",)),
    "num_heads": ("4,4", ("num_heads",)),
    "scale": ("4", ("scale",)),
    "upsampler": ("pixelshuffledirect", ("upsampler",)),
    "in_chans": ("1", ("in_chans",)),
    "resi_connection": ("3conv", ("resi_connection",)),
    "mlp_ratio": ("4.0", ("mlp_ratio", "mlp.fc1")),
    "num_feat": ("32", ("num_feat", "conv_before_upsample")),
    "patch_norm": ("False", ("patch_norm", "patch_embed.norm")),
}


@pytest.mark.parametrize("field", list(METADATA_EDITS))
def test_metadata_that_disagrees_with_the_weights(classical, tmp_path, field):
    value, mentions = METADATA_EDITS[field]
    with safe_open(str(classical), framework="pt") as f:
        assert f.metadata()[field] != value
    message = _error(_rewrite_metadata(classical, tmp_path / "edited.safetensors", **{field: value}))
    assert any(m in message for m in mentions), message


@pytest.mark.parametrize("field,value", [("scale", "two"), ("task", "colour_sr"), ("depths", "6,x")],
                         ids=["scale-not-a-number", "unknown-task", "depths-not-numbers"])
def test_malformed_metadata(classical, tmp_path, field, value):
    message = _error(_rewrite_metadata(classical, tmp_path / "edited.safetensors", **{field: value}))
    assert field in message, message


# --- unwrapping ---------------------------------------------------------------------------------------------------


def _loads_as(path: Path, expected_ref: torch.nn.Module) -> None:
    x = _x(expected_ref.conv_first.weight.shape[1])
    assert max_diff(our_output(swinir.load_model(path), x), reference_output(expected_ref, x)) <= TOL


def test_params_ema_only(ref, tmp_path):
    _loads_as(save_official(ref, tmp_path / "ema_only.pth", "params_ema"), ref)


def test_bare_state_dict(ref, tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(ref.state_dict(), path)
    _loads_as(path, ref)


@pytest.mark.parametrize("upsampler,scale,expected_key", [
    ("nearest+conv", 4, "params_ema"),  # real-world SR: the official test script takes params_ema
    ("pixelshuffledirect", 2, "params"),  # every other task: params
    ("", 1, "params"),
], ids=["real-sr-takes-params_ema", "lightweight-takes-params", "denoise-takes-params"])
def test_file_with_both_params_and_params_ema(tmp_path, upsampler, scale, expected_key):
    refs = {
        key: small_reference(window=8, upscale=scale, upsampler=upsampler, seed=seed)
        for key, seed in (("params", 11), ("params_ema", 12))
    }
    path = tmp_path / "both.pth"
    torch.save({key: r.state_dict() for key, r in refs.items()}, path)
    _loads_as(path, refs[expected_key])
    other = "params" if expected_key == "params_ema" else "params_ema"
    x = _x()
    assert max_diff(our_output(swinir.load_model(path), x), reference_output(refs[other], x)) > 100 * TOL


def test_module_prefix_is_stripped(ref, tmp_path):
    path = tmp_path / "ddp.pth"
    torch.save({"params": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    _loads_as(path, ref)


def test_stored_buffers_are_ignored(ref, tmp_path):
    sd = ref.state_dict()
    assert any(k.endswith("attn_mask") for k in sd) and any(k.endswith("relative_position_index") for k in sd)
    gen = torch.Generator().manual_seed(0)
    garbage = {
        k: (torch.randn(v.shape, generator=gen) * 1e3 if k.endswith("attn_mask")
            else torch.randint(0, 5, v.shape, generator=gen) if k.endswith("relative_position_index") else v)
        for k, v in sd.items()
    }
    path = tmp_path / "garbage_buffers.pth"
    torch.save({"params": garbage}, path)
    _loads_as(path, ref)
    without = tmp_path / "no_buffers.pth"
    torch.save({"params": {k: v for k, v in sd.items() if not k.endswith(("attn_mask", "relative_position_index"))}},
               without)
    _loads_as(without, ref)


# --- conversion ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def denoise_official(tmp_path_factory):
    """A small color denoise model in the official form with the official 128px training size (big masks)."""
    ref = small_reference(window=8, upscale=1, upsampler="", img_size=128, seed=3)
    path = save_official(ref, tmp_path_factory.mktemp("dn") / "005_colorDN_DFWB_s128w8_SwinIR-M_noise25.pth")
    return ref, path


def test_convert_is_lossless_smaller_and_recorded(denoise_official, tmp_path):
    ref, src = denoise_official
    out = swinir.convert(src, tmp_path / "converted.safetensors")
    original, converted = swinir.load_model(src), swinir.load_model(out)
    x = _x()
    assert torch.equal(our_output(converted, x), our_output(original, x))
    assert max_diff(our_output(converted, x), reference_output(ref, x)) <= TOL
    assert converted.config == original.config
    assert converted.config.noise_level == 25 and converted.config.task == "color_denoise"

    assert out.stat().st_size * 10 < src.stat().st_size  # the 128px attn_mask buffers are not stored
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        keys = list(f.keys())
    assert not any(k.endswith(("attn_mask", "relative_position_index")) for k in keys)
    assert SwinIRConfig.from_metadata(meta) == original.config
    assert meta["source_file"] == src.name
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()


def test_convert_keeps_the_level_under_a_new_name(denoise_official, tmp_path):
    _, src = denoise_official
    out = swinir.convert(src, tmp_path / "my_denoiser.safetensors")
    assert swinir.load_model(out).config.noise_level == 25


INTEROP = {
    "lightweight-x2-w8": dict(window=8, upscale=2, upsampler="pixelshuffledirect", in_chans=3, img_range=1.0),
    "color-jpeg-w7": dict(window=7, upscale=1, upsampler="", in_chans=3, img_range=255.0),
    "real-x4-3conv": dict(window=8, upscale=4, upsampler="nearest+conv", in_chans=3, img_range=1.0,
                          resi_connection="3conv"),
    "classical-x3-gray": dict(window=8, upscale=3, upsampler="pixelshuffle", in_chans=1, img_range=1.0),
}


@pytest.mark.parametrize("name", list(INTEROP))
def test_interop_file_is_read_by_spandrel(tmp_path, name):
    import spandrel

    ref = small_reference(**INTEROP[name], seed=4)
    src = save_official(ref, tmp_path / "source.pth")
    out = swinir.convert(src, tmp_path / "interop.safetensors", interop=True)
    ours = swinir.load_model(out)
    descriptor = spandrel.ModelLoader().load_from_file(str(out))
    assert descriptor.scale == ours.config.scale
    x = _x(ours.config.in_chans)
    theirs = reference_output(descriptor.model.eval(), x)
    assert max_diff(our_output(ours, x), theirs) <= TOL
    assert max_diff(theirs, reference_output(ref, x)) <= TOL


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "swinir", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def test_cli_convert(ref, official, tmp_path):
    out = tmp_path / "cli.safetensors"
    done = _cli("convert", str(official), str(out))
    assert done.returncode == 0, done.stderr
    x = _x()
    assert torch.equal(our_output(swinir.load_model(out), x), our_output(swinir.load_model(official), x))
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["source_sha256"] == hashlib.sha256(official.read_bytes()).hexdigest()

    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"")
    failed = _cli("convert", str(bad), str(tmp_path / "never.safetensors"))
    assert failed.returncode == 1
    assert "broken.pth" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "never.safetensors").exists()


# --- metadata, file name, window heuristic --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def denoise_w8():
    return small_reference(window=8, upscale=1, upsampler="", seed=5)


@pytest.fixture(scope="module")
def scale1_w7():
    return small_reference(window=7, upscale=1, upsampler="", img_range=255.0, seed=6)


def test_metadata_beats_the_file_name(denoise_w8, tmp_path):
    model = swinir.model_from_state_dict(denoise_w8.state_dict(), "005_colorDN_DFWB_s128w8_SwinIR-M_noise50.pth")
    assert model.config.noise_level == 50
    path = swinir.save_safetensors(model, tmp_path / "005_colorDN_DFWB_s128w8_SwinIR-M_noise15.safetensors")
    config = swinir.load_model(path).config
    assert (config.task, config.noise_level) == ("color_denoise", 50)


def test_metadata_beats_the_window_heuristic(tmp_path):
    config = SwinIRConfig(task="color_denoise", scale=1, window_size=7, img_range=1.0, embed_dim=16, depths=(2,),
                          num_heads=(2,), upsampler="", noise_level=25)
    path = swinir.save_safetensors(swinir.SwinIR(config), tmp_path / "plain_name.safetensors")
    assert swinir.load_model(path).config == config


@pytest.mark.parametrize("name,task,noise,quality", [
    ("005_colorDN_DFWB_s128w8_SwinIR-M_noise15.pth", "color_denoise", 15, None),
    ("005_colorDN_DFWB_s128w8_SwinIR-M_noise15.safetensors", "color_denoise", 15, None),
    ("my_model_jpeg20.pth", "color_jpeg", None, 20),  # the name beats the window-8 heuristic
], ids=["official-pth", "plain-safetensors", "name-beats-window"])
def test_without_metadata_the_file_name_decides(denoise_w8, tmp_path, name, task, noise, quality):
    path = tmp_path / name
    if name.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in denoise_w8.state_dict().items()}, str(path))
    else:
        save_official(denoise_w8, path)
    config = swinir.load_model(path).config
    assert (config.task, config.noise_level, config.jpeg_quality, config.img_range) == (task, noise, quality, 1.0)


def test_window7_named_as_denoise_is_denoise(scale1_w7, tmp_path):
    config = swinir.load_model(save_official(scale1_w7, tmp_path / "dn_sigma25.pth")).config
    assert (config.task, config.noise_level, config.img_range) == ("color_denoise", 25, 1.0)


def test_with_neither_the_window_decides(denoise_w8, scale1_w7, tmp_path):
    w8 = swinir.load_model(save_official(denoise_w8, tmp_path / "model_a.pth"))
    assert (w8.config.task, w8.config.img_range, w8.config.noise_level) == ("color_denoise", 1.0, None)
    w7 = swinir.load_model(save_official(scale1_w7, tmp_path / "model_b.pth"))
    assert (w7.config.task, w7.config.img_range, w7.config.jpeg_quality) == ("color_jpeg", 255.0, None)
    x = _x()
    assert max_diff(our_output(w7, x), reference_output(scale1_w7, x)) <= TOL
    assert max_diff(our_output(w8, x), reference_output(denoise_w8, x)) <= TOL
