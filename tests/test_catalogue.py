"""The checkpoint catalogue: complete, self-consistent, and faithful to shared/weights."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from swinir.catalogue import CATALOGUE_PATH, CatalogueEntry, find_entry, load_catalogue
from shared_data import WEIGHTS, need
from swinir.errors import SwinIRError, UnknownModelError

RELEASE = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"


def _published_digests() -> dict[str, str]:
    digests = {}
    for line in need(WEIGHTS / "SHA256SUMS", "the catalogue's digests are checked against it").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            digest, name = line.split()
            digests[name.lstrip("*")] = digest
    return digests


def _published_sizes() -> dict[str, int]:
    sizes = {}
    for line in need(WEIGHTS / "README.md", "the catalogue's sizes are checked against it").read_text().splitlines():
        match = re.match(r"\|\s*(\S+\.pth)\s*\|\s*([\d,]+)\s*\|", line)
        if match:
            sizes[match.group(1)] = int(match.group(2).replace(",", ""))
    return sizes


@pytest.fixture(scope="module")
def entries() -> list[CatalogueEntry]:
    return load_catalogue()


def test_catalogue_file_sits_in_models(entries) -> None:
    assert CATALOGUE_PATH == Path(__file__).resolve().parents[1] / "swinir" / "models" / "catalogue.json"


def test_thirty_unique_entries(entries) -> None:
    assert len(entries) == 30
    assert len({e.name for e in entries}) == 30
    assert len({e.file for e in entries}) == 30
    assert all(e.url == RELEASE + e.file for e in entries)


def _sourced_elsewhere() -> str:
    """The catalogue's notes, where a digest or size from outside shared/weights names its source."""
    return " ".join(json.loads(CATALOGUE_PATH.read_text())["notes"])


def test_digests_match_shared_sha256sums(entries) -> None:
    published = _published_digests()
    notes = _sourced_elsewhere()
    for entry in entries:
        if entry.file in published or entry.sha256 is None:
            assert entry.sha256 == published.get(entry.file), entry.file
        else:
            assert entry.file in notes, f"{entry.file}: a digest not in SHA256SUMS must name its source"
    # and every published digest made it into the catalogue
    assert set(published) <= {e.file for e in entries}


def test_sizes_match_shared_readme(entries) -> None:
    published = _published_sizes()
    assert len(published) == len(_published_digests())
    notes = _sourced_elsewhere()
    for entry in entries:
        if entry.file in published or entry.size_bytes is None:
            assert entry.size_bytes == published.get(entry.file), entry.file
        else:
            assert entry.file in notes, f"{entry.file}: a size not in shared/weights must name its source"


def test_fields_agree_with_file_names(entries) -> None:
    task_by_prefix = {
        "001_classicalSR": "classical_sr",
        "002_lightweightSR": "lightweight_sr",
        "003_realSR": "real_sr",
        "004_grayDN": "gray_denoise",
        "005_colorDN": "color_denoise",
        "006_CAR": "gray_jpeg",
        "006_colorCAR": "color_jpeg",
    }
    for e in entries:
        prefix = re.match(r"\d{3}_[A-Za-z]+", e.file).group(0)
        assert e.task == task_by_prefix[prefix], e.file
        is_car = "CAR_" in e.file
        assert (e.window_size == 7) == is_car, e.file
        assert (e.img_range == 255.0) == is_car, e.file
        assert e.img_range in (1.0, 255.0)
        assert f"s{e.img_size}w{e.window_size}" in e.file
        assert f"SwinIR-{e.variant}_" in e.file
        assert e.in_chans == (1 if e.task in ("gray_denoise", "gray_jpeg") else 3)
        assert len(e.depths) == len(e.num_heads)
        assert e.gan == e.file.endswith("_GAN.pth")
        if e.task.endswith("_sr"):
            assert f"_x{e.scale}" in e.file and e.noise_level is None and e.jpeg_quality is None
            assert e.upsampler == {"classical_sr": "pixelshuffle", "lightweight_sr": "pixelshuffledirect",
                                   "real_sr": "nearest+conv"}[e.task]
        else:
            assert e.scale == 1 and e.upsampler is None
        if e.task.endswith("_denoise"):
            assert e.file.endswith(f"_noise{e.noise_level}.pth") and e.jpeg_quality is None
        if e.task.endswith("_jpeg"):
            assert e.file.endswith(f"_jpeg{e.jpeg_quality}.pth") and e.noise_level is None
        # real-world SR models ship EMA weights; the others the plain ones
        assert e.param_key == ("params_ema" if e.task == "real_sr" else "params")


def test_architectures(entries) -> None:
    by_variant = {
        "S": (60, (6,) * 4, (6,) * 4, "1conv"),
        "M": (180, (6,) * 6, (6,) * 6, "1conv"),
        "L": (240, (6,) * 9, (8,) * 9, "3conv"),
    }
    for e in entries:
        assert (e.embed_dim, e.depths, e.num_heads, e.resi_connection) == by_variant[e.variant], e.file


def test_find_entry_by_name_or_file() -> None:
    entry = find_entry("real-L-x4-GAN")
    assert entry.file == "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth"
    assert find_entry(entry.file) is entry
    assert find_entry("REAL-l-x4-gan") is entry


def test_find_entry_unknown_suggests_close_names() -> None:
    with pytest.raises(UnknownModelError) as caught:
        find_entry("real-L-x4-GNA")
    assert isinstance(caught.value, SwinIRError)
    assert "real-L-x4-GAN" in str(caught.value) and "--list" in str(caught.value)
