"""The degradation estimators (noise sigma, JPEG grid and quality), the file-table reader, the model
recommendation and `python -m swinir analyse` (issue 12).

Synthetic pictures make most tests independent of the test sets; a few check real photos from
shared_data.DATA and skip with the reason when it is absent. The accuracy over whole sets is measured
by bench/bench_estimate.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import swinir
from testkit.pictures import noisy, picture
from shared_data import DATA, need
from swinir.training.degrade import jpeg_roundtrip
from swinir.estimate import Degradation, estimate_degradation, jpeg_file_quality, recommend
from swinir.estimate import noise as noise_module
from swinir.estimate.ijg import LUMA_BASE, LUMA_TABLES, ZIGZAG, quality_of_table, table

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("single_thread")


def tensor(img: np.ndarray, scale: float = 255.0) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / scale)
    return x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]


def measure(img: np.ndarray, scale: float = 255.0) -> Degradation:
    return estimate_degradation(tensor(img, scale))[0]


# --- noise ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [5, 25, 50])
def test_noise_sigma_of_float_noise(sigma):
    found = measure(noisy(picture(), sigma), scale=1.0).noise_sigma
    assert abs(found - sigma) < 0.6, found


@pytest.mark.parametrize("sigma", [10, 25])
def test_noise_sigma_of_gray_images(sigma):
    img = picture(gray=True, seed=3)
    assert abs(measure(noisy(img, sigma), scale=1.0).noise_sigma - sigma) < 0.8
    # The same gray picture as three equal channels is recognised as gray, with the same answer.
    rgb = np.repeat(noisy(img, sigma, eight_bit=True)[..., None], 3, axis=2)
    found = measure(rgb, scale=1.0)
    assert found.gray and abs(found.noise_sigma - sigma) < 1.0


def test_clipping_is_corrected_not_reported_as_less_noise():
    img = picture(dark=True, seed=2)
    sigma = 40
    eight_bit = noisy(img, sigma, eight_bit=True)
    assert np.mean((eight_bit == 0) | (eight_bit == 1)) > 0.05  # the test really clips
    found = measure(eight_bit, scale=1.0).noise_sigma
    assert abs(found - sigma) < 2.0, found
    # Without the correction the clipped spread is far smaller: the correction does the work.
    planes = (eight_bit * 255).transpose(2, 0, 1).astype(np.float32)
    plain = np.sqrt(noise_module._tail_variance(noise_module._patches(planes, 3)))
    assert sigma - plain > 4.0, plain


def test_clean_picture_reads_low_noise():
    assert measure(picture(seed=4)).noise_sigma < 2.0


# --- JPEG -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quality, crop", [(12, (0, 0)), (37, (3, 5)), (68, (7, 1)), (91, (0, 4))])
def test_jpeg_quality_and_grid(quality, crop):
    jpeg = jpeg_roundtrip(picture(seed=5), quality)[crop[0]:, crop[1]:]
    found = measure(jpeg)
    assert found.jpeg_quality is not None and abs(found.jpeg_quality - quality) <= 2, found
    assert found.grid_offset == ((8 - crop[0]) % 8, (8 - crop[1]) % 8)


def test_gray_jpeg():
    found = measure(jpeg_roundtrip(picture(gray=True, seed=6), 30))
    assert found.gray and found.jpeg_quality == 30


def test_never_compressed_is_no_jpeg():
    for seed in range(3):
        found = measure(picture(seed=10 + seed))
        assert found.jpeg_quality is None and found.grid_offset is None, found
    # Nor is noise taken for a JPEG.
    assert measure(noisy(picture(seed=7), 20, eight_bit=True), scale=1.0).jpeg_quality is None


def test_description_is_one_line():
    found = measure(jpeg_roundtrip(picture(seed=5), 40)[2:, 1:])
    text = found.description
    assert "\n" not in text and "sigma" in text and "JPEG quality 40" in text and "grid offset 6,7" in text
    assert "no JPEG grid" in measure(picture(seed=4)).description


# --- bad input ------------------------------------------------------------------------------------------------


def test_nan_and_inf_are_refused():
    x = tensor(picture())
    x[0, 1, 5, 7] = float("nan")
    with pytest.raises(swinir.InputError, match="NaN"):
        estimate_degradation(x)
    x[0, 1, 5, 7] = float("inf")
    with pytest.raises(swinir.InputError):
        estimate_degradation(x)


def test_tiny_and_flat_images_give_zero_with_a_note():
    tiny = measure(np.random.default_rng(0).integers(0, 255, (5, 6, 3)).astype(np.uint8))
    assert tiny.noise_sigma == 0 and tiny.jpeg_quality is None
    assert any("smaller than" in note for note in tiny.notes)
    flat = measure(np.full((64, 64, 3), 90, np.uint8))
    assert flat.noise_sigma == 0 and flat.jpeg_quality is None and "flat" in flat.description
    one_row = measure(np.random.default_rng(0).integers(0, 255, (1, 300)).astype(np.uint8))
    assert one_row.noise_sigma == 0 and one_row.jpeg_quality is None and one_row.notes


def test_channels_batches_and_numpy():
    img = jpeg_roundtrip(picture(seed=8), 50)
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    gray_alpha = np.stack([img[..., 0], np.full(img.shape[:2], 255, np.uint8)], axis=2)
    batch = torch.cat([tensor(img), tensor(rgba)[:, :3]])
    results = estimate_degradation(batch)
    assert [r.jpeg_quality for r in results] == [50, 50]
    assert estimate_degradation(tensor(rgba))[0].jpeg_quality == 50
    assert estimate_degradation(tensor(gray_alpha))[0].gray
    assert estimate_degradation(tensor(img).numpy())[0].jpeg_quality == 50
    assert swinir.estimate_degradation is estimate_degradation


# --- a JPEG file's own tables ---------------------------------------------------------------------------------


def test_file_tables(tmp_path):
    img = Image.fromarray(picture(seed=9))
    for quality in (7, 23, 50, 88, 100):
        path = tmp_path / f"q{quality}.jpg"
        img.save(path, quality=quality)
        found = jpeg_file_quality(path)
        assert found is not None and found.exact and found.quality == quality
    img.save(tmp_path / "plain.png")
    assert jpeg_file_quality(tmp_path / "plain.png") is None
    custom = [max(1, v // 3) for v in range(64, 128)]
    img.save(tmp_path / "custom.jpg", qtables=[custom, custom])
    found = jpeg_file_quality(tmp_path / "custom.jpg")
    assert found is not None and not found.exact and "non-IJG" in found.description
    with pytest.raises(swinir.SwinIRError, match="no such file"):
        jpeg_file_quality(tmp_path / "missing.jpg")


def test_table_quality_in_either_order():
    for quality in (10, 49, 50, 51, 97):
        steps = table(quality)
        assert quality_of_table(steps).quality == quality
        zigzag = steps[ZIGZAG]  # the file's order
        assert quality_of_table(zigzag).quality == quality and quality_of_table(zigzag).exact
    assert (LUMA_TABLES[50 - 1] == LUMA_BASE).all()  # quality 50 is the standard's table itself


# --- recommendation -------------------------------------------------------------------------------------------

COLOR_DN = {s: f"005_colorDN_DFWB_s128w8_SwinIR-M_noise{s}.pth" for s in (15, 25, 50)}
GRAY_DN = {s: f"004_grayDN_DFWB_s128w8_SwinIR-M_noise{s}.pth" for s in (15, 25, 50)}
COLOR_JPEG = {q: f"006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg{q}.pth" for q in (10, 20, 30, 40)}
GRAY_JPEG = {q: f"006_CAR_DFWB_s126w7_SwinIR-M_jpeg{q}.pth" for q in (10, 20, 30, 40)}
BLIND_DN = "(default) swinir-s-denoise-default.safetensors"
BLIND_JPEG = "(default) swinir-s-jpeg-default.safetensors"
DEFAULT_SR = "(default) swinir-s-x2-default.safetensors"
ALL = [*COLOR_DN.values(), *GRAY_DN.values(), *COLOR_JPEG.values(), *GRAY_JPEG.values(), BLIND_DN, BLIND_JPEG, DEFAULT_SR]


def steps(sigma=0.0, quality=None, gray=False, scale=1.0, available=ALL, threshold=5.0):
    found = Degradation(noise_sigma=sigma, jpeg_quality=quality, gray=gray)
    return recommend(found, scale, available, threshold)


@pytest.mark.parametrize("level, estimate", [(15, 14.2), (15, 16.9), (25, 24.1), (25, 27.5), (50, 48.3), (50, 53.0)])
def test_official_denoiser_of_the_level(level, estimate):
    p = steps(sigma=estimate)
    assert [s.model for s in p.steps] == [COLOR_DN[level]]
    assert "official" in p.steps[0].reason and f"sigma {level}" in p.steps[0].reason


@pytest.mark.parametrize("level, estimate", [(10, 9), (10, 12), (20, 18), (20, 22), (30, 31), (40, 38), (40, 44)])
def test_official_jpeg_model_of_the_level(level, estimate):
    p = steps(quality=estimate)
    assert [s.model for s in p.steps] == [COLOR_JPEG[level]]
    assert f"JPEG q{estimate} found" in p.steps[0].reason and f"q{level}" in p.steps[0].reason


def test_blind_defaults_between_and_beyond_levels():
    assert steps(sigma=35).steps[0].model == BLIND_DN
    assert steps(sigma=8).steps[0].model == BLIND_DN
    assert steps(quality=60).steps[0].model == BLIND_JPEG
    assert "blind default" in steps(quality=75).steps[0].reason
    # Without the blind defaults: the nearest official level, saying it is not the image's level.
    officials = [*COLOR_DN.values(), *COLOR_JPEG.values()]
    p = steps(sigma=35, available=officials)
    assert p.steps[0].model == COLOR_DN[25] and "not the image's level" in p.steps[0].reason
    assert steps(quality=70, available=officials).steps[0].model == COLOR_JPEG[40]
    # Beyond every model: the strongest denoiser, even with the blind default there.
    assert steps(sigma=80).steps[0].model == COLOR_DN[50]


def test_ties_take_the_stronger_model():
    assert steps(quality=15).steps[0].model == COLOR_JPEG[10]
    assert steps(sigma=20.0, available=[COLOR_DN[15], COLOR_DN[25]]).steps[0].model == COLOR_DN[25]


def test_nothing_to_clean_and_faint_jpeg():
    assert steps(sigma=3.0).steps == ()
    assert steps(sigma=3.0, threshold=2.0).steps[0].task == "denoise"
    p = steps(quality=94)
    assert p.steps == () and "q94" in p.notes[0]
    assert steps().summary == "nothing to run"


def test_gray_and_colour_models():
    assert steps(sigma=25, gray=True).steps[0].model == GRAY_DN[25]
    assert steps(quality=20, gray=True).steps[0].model == GRAY_JPEG[20]
    p = steps(sigma=25, available=[GRAY_DN[25]])
    assert p.steps[0].model == GRAY_DN[25] and "gray model" in p.steps[0].reason
    assert steps(sigma=25, gray=True, available=[COLOR_DN[25]]).steps[0].model == COLOR_DN[25]


def test_missing_models_say_what_to_download():
    p = steps(sigma=25, quality=20, scale=2, available=[])
    assert p.steps == ()
    text = " ".join(p.notes)
    assert "download color-jpeg-M-q20" in text and "download color-denoise-M-noise25" in text
    assert "classical-M-x2-DF2K" in text


def test_order_and_names_as_given():
    sub = "sub/folder/" + COLOR_JPEG[30]
    p = steps(sigma=15, quality=31, scale=2, available=[sub, COLOR_DN[15], DEFAULT_SR])
    assert [s.task for s in p.steps] == ["jpeg", "denoise", "upscale"]
    assert p.steps[0].model == sub and p.steps[2].model == DEFAULT_SR
    assert p.summary.startswith("JPEG cleanup 006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg30.pth -> denoise")


def test_upscale_choice():
    classical2 = "001_classicalSR_DF2K_s64w8_SwinIR-M_x2.pth"
    classical4 = "001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth"
    div2k4 = "001_classicalSR_DIV2K_s48w8_SwinIR-M_x4.pth"
    light2 = "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x2.pth"
    gan4 = "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth"
    assert steps(scale=2, available=[DEFAULT_SR, light2, classical2]).steps[0].model == classical2
    assert steps(scale=2, available=[DEFAULT_SR, light2]).steps[0].model == light2
    assert steps(scale=4, available=[gan4, div2k4, classical4]).steps[0].model == classical4
    assert steps(scale=4, available=[gan4, div2k4]).steps[0].model == div2k4
    p = steps(scale=4, available=[DEFAULT_SR])
    assert p.steps[0].passes == 2 and p.steps[0].model_scale == 2
    p = steps(scale=3, available=[DEFAULT_SR, classical4])
    assert p.steps[0].model == classical4 and "downscale" in p.steps[0].reason
    p = steps(scale=1.5, available=[DEFAULT_SR])
    assert p.steps[0].passes == 1 and "downscale" in p.steps[0].reason
    with pytest.raises(swinir.SwinIRError):
        steps(scale=0.5)


# --- real photos ----------------------------------------------------------------------------------------------


def _real(name: str, count: int) -> list[np.ndarray]:
    folder = need(DATA / name, f"the real-photo estimates need {name}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".bmp"))[:count]
    # A 256x256 corner of each keeps the test fast; the whole sets are measured by bench/bench_estimate.py.
    return [np.asarray(Image.open(f).convert("RGB"))[:256, :256] for f in files]


def test_real_photos_noise():
    for img in _real("Kodak24", 2):
        assert abs(measure(noisy(img, 25), scale=1.0).noise_sigma - 25) < 0.5
        assert abs(measure(noisy(img, 50, eight_bit=True), scale=1.0).noise_sigma - 50) < 3.0
        assert measure(img).noise_sigma < 3.0


def test_real_photos_jpeg():
    for i, img in enumerate(_real("LIVE1", 2)):
        assert measure(img).jpeg_quality is None
        for quality in (20, 55, 90):
            crop = (i * 3 + 1, quality % 8)
            found = measure(jpeg_roundtrip(img, quality)[crop[0]:, crop[1]:])
            assert found.jpeg_quality == quality and found.grid_offset == ((8 - crop[0]) % 8, (8 - crop[1]) % 8)


# --- command line ---------------------------------------------------------------------------------------------


def run_cli(*args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "swinir", "analyse", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def test_cli_analyse(tmp_path):
    img = picture(seed=12)
    Image.fromarray(jpeg_roundtrip(img, 33)[5:, 2:]).save(tmp_path / "cropped_jpeg.png")
    Image.fromarray(img).save(tmp_path / "photo.jpg", quality=64)
    Image.fromarray((noisy(img, 25, eight_bit=True) * 255).astype(np.uint8)).save(tmp_path / "noisy.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "notes.txt").write_text("not an image; folders list only images")
    result = run_cli(tmp_path, tmp_path / "missing.png", "--scale", "2", "--any-official")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = {Path(line.split(":")[0]).name: line for line in result.stdout.splitlines()}
    assert set(lines) == {"cropped_jpeg.png", "photo.jpg", "noisy.png"}, result.stdout
    assert "JPEG q33 (grid offset 3,6)" in lines["cropped_jpeg.png"]
    assert "jpeg30.pth" in lines["cropped_jpeg.png"] and "x2" in lines["cropped_jpeg.png"]
    assert "JPEG q64, file tables q64" in lines["photo.jpg"]
    assert "noise25.pth" in lines["noisy.png"] and "JPEG none" in lines["noisy.png"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and any("broken.png" in e for e in errors) and any("missing.png" in e for e in errors)


def test_cli_why_and_defaults(tmp_path):
    Image.fromarray(jpeg_roundtrip(picture(seed=13), 70)).save(tmp_path / "q70.png")
    result = run_cli(tmp_path / "q70.png", "--why", "--models-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    first, *reasons = result.stdout.splitlines()
    assert "JPEG q70" in first
    assert reasons and all(line.startswith("    ") for line in reasons)
