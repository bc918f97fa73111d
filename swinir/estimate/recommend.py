"""Which models to run on an image, in which order, and why: a pure function of its measured degradation.

The pipeline is JPEG cleanup (when a block grid was found), then denoising (when sigma is above a threshold),
then the upscale (when the target scale is above 1). Artifacts come first because the denoisers were trained on
white Gaussian noise, not on JPEG blocks; the upscale comes last so that it enlarges a clean image.

Choosing between an official single-level model and the pack's blind defaults:
- an official model is trained for one level and is best there, and it is a SwinIR-M (about 12 M parameters),
  stronger than the blind SwinIR-S defaults; but away from its level it under-cleans (level below the image's)
  or smooths detail away (level above). So it is used when the estimate is close to its level: JPEG within
  JPEG_TOLERANCE qualities (q5-45 is then always close to one of 10/20/30/40), noise within
  max(3, 20 %) of sigma 15/25/50 (12-18, 20-30, 40-60). Between two levels equally close, the stronger one
  (lower quality, higher sigma): a little over-smoothing costs less than leftover blocks or noise.
- otherwise the blind default, which is trained on the whole range (sigma 0-50, quality 10-90), when the level is
  inside that range;
- otherwise (level beyond every model, or the blind default missing) the nearest official level available,
  with a note that it is not the image's level; a sigma above 60 takes the strongest denoiser, 50.
- JPEG above JPEG_SKIP_ABOVE and noise at or below the threshold are left alone: their artifacts are below what
  a model restores without also softening the image.
Gray images prefer the gray official models (trained on gray), colour ones the colour models; either kind works
on the other (the engine restores luma, or replicates the channel).
For the upscale: the official classical SwinIR-M (DF2K, then DIV2K training), then the lightweight SwinIR-S, then
the real-world PSNR model, then the pack's default x2, and the GAN models last (they invent texture); a model of
exactly the target scale first, else the smallest larger scale followed by a downscale, else the largest
scale repeated until it reaches the target.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Iterable

from ..catalogue import CatalogueEntry, load_catalogue
from ..errors import InputError
from ..model_ref import DEFAULT_MODELS, DEFAULT_PREFIX
from .degradation import Degradation

DENOISE_THRESHOLD = 5.0
JPEG_TOLERANCE = 5
JPEG_SKIP_ABOVE = 90
NOISE_TOLERANCE_SHARE = 0.2
NOISE_TOLERANCE_MIN = 3.0
# Trained ranges of the pack's blind defaults.
BLIND_SIGMA = (0, 50)
BLIND_QUALITY = (10, 90)

SR_PREFERENCE = ("classical_sr", "lightweight_sr", "real_sr")


STEP_TITLES = {"jpeg": "JPEG cleanup", "denoise": "denoise", "upscale": "upscale"}


def step_label(task: str, model_scale: int = 1, passes: int = 1) -> str:
    """'JPEG cleanup', 'denoise', 'upscale x2', 'upscale x2 2 times'."""
    if task != "upscale":
        return STEP_TITLES[task]
    return f"upscale x{model_scale}" + (f" {passes} times" if passes > 1 else "")


@dataclass(frozen=True)
class Step:
    """One model run: task is 'jpeg', 'denoise' or 'upscale'; model is the name as given in `available`."""

    task: str
    model: str
    reason: str
    passes: int = 1  # upscale only: times the model runs (a x2 model twice for x4)
    model_scale: int = 1

    @property
    def label(self) -> str:
        return step_label(self.task, self.model_scale, self.passes)

    @property
    def description(self) -> str:
        return f"{self.label} with {self.model}: {self.reason}"


@dataclass(frozen=True)
class Pipeline:
    """The steps to run, in order. `wanted` names every task the image needs, also those no available model could
    do; `unavailable` holds (task, note) for those, so a caller with a model of its own for a task can run it."""

    steps: tuple[Step, ...]
    scale: float
    notes: tuple[str, ...] = ()
    wanted: tuple[str, ...] = ()
    unavailable: tuple[tuple[str, str], ...] = ()

    @property
    def summary(self) -> str:
        """One line: the models in order, e.g. 'JPEG cleanup 006_...jpeg20.pth -> upscale x2 swinir-s-x2-...'."""
        if not self.steps:
            return "nothing to run"
        return " -> ".join(f"{s.label} {os.path.basename(s.model.removeprefix(DEFAULT_PREFIX))}" for s in self.steps)


def _index(available: Iterable[str]) -> dict[str, str]:
    """lower-case file name -> the name as given (first one wins: lists come in preference order)."""
    index: dict[str, str] = {}
    for name in available:
        key = os.path.basename(name.removeprefix(DEFAULT_PREFIX)).lower()
        index.setdefault(key, name)
    return index


def _official(index: dict[str, str], family: str, gray: bool) -> list[tuple[CatalogueEntry, str]]:
    """Available official models of a family ('denoise' or 'jpeg'), the image's own kind (gray/colour) first."""
    kinds = ("gray", "color") if gray else ("color", "gray")
    found = []
    for kind in kinds:
        for entry in load_catalogue():
            if entry.task == f"{kind}_{family}" and entry.file.lower() in index:
                found.append((entry, index[entry.file.lower()]))
    return found


def _level(entry: CatalogueEntry) -> int:
    return int(entry.noise_level if entry.noise_level is not None else entry.jpeg_quality)


def _nearest(models: list[tuple[CatalogueEntry, str]], value: float, stronger_higher: bool):
    """The model whose level is nearest `value` (ties: the stronger), the image's kind before the other."""
    def key(item):
        level = _level(item[0])
        return (abs(level - value), -level if stronger_higher else level)
    kind = models[0][0].in_chans if models else None
    same_kind = [m for m in models if m[0].in_chans == kind]
    return min(same_kind, key=key) if same_kind else None


def _choose_level_model(
    family: str,
    value: float,
    is_close: Callable[[int, float], bool],
    blind_range: tuple[int, int],
    index: dict[str, str],
    gray: bool,
    found: str,
    stronger_higher: bool,
) -> tuple[Step | None, str | None]:
    unit = "sigma " if family == "denoise" else "q"
    officials = _official(index, family, gray)
    blind = index.get(DEFAULT_MODELS[family].lower())
    close = [m for m in officials if is_close(_level(m[0]), value)]
    if close:
        entry, name = _nearest(close, value, stronger_higher)
        kind = "" if (entry.in_chans == 1) == gray else f" ({'gray' if entry.in_chans == 1 else 'colour'} model)"
        return Step(family, name, f"{found}; official model {unit}{_level(entry)}{kind} is close to it and available"), None
    low, high = blind_range
    if blind is not None and low <= value <= high:
        why = "no official model of a close level on disk" if not officials else (
            f"it is between the official levels ({', '.join(unit + str(_level(e)) for e, _ in officials)})")
        return Step(family, blind, f"{found}; blind default (trained {unit}{low}-{high}): {why}"), None
    if officials:
        entry, name = _nearest(officials, value, stronger_higher)
        if blind is not None:
            why = f"beyond the blind default's {unit}{low}-{high}"
        else:
            why = f"the blind default {DEFAULT_MODELS[family]} is not available"
        return Step(family, name, f"{found}; nearest official level {unit}{_level(entry)} ({why}; not the image's level)"), None
    wanted = "gray" if gray else "color"
    if family == "denoise":
        level = min((15, 25, 50), key=lambda v: (abs(v - value), -v))
        hint = f"{wanted}-denoise-M-noise{level}"
    else:
        level = min((10, 20, 30, 40), key=lambda v: (abs(v - value), v))
        hint = f"{wanted}-jpeg-M-q{level}"
    return None, f"{found} but no {family} model is available; get one with `swinir download {hint}`"


def _jpeg_close(level: int, quality: float) -> bool:
    return abs(level - quality) <= JPEG_TOLERANCE


def _noise_close(level: int, sigma: float) -> bool:
    # Beyond sigma 60 no model is trained; the strongest (50) is the closest there is.
    return abs(level - sigma) <= max(NOISE_TOLERANCE_MIN, NOISE_TOLERANCE_SHARE * level) or (level == 50 and sigma > 60)


def _sr_models(index: dict[str, str]) -> list[tuple[int, str, int]]:
    """(preference rank, name, scale) of the available super-resolution models, best first."""
    models = []
    for entry in load_catalogue():
        if entry.file.lower() not in index or entry.task not in SR_PREFERENCE:
            continue
        rank = SR_PREFERENCE.index(entry.task) * 2 + (entry.training_data != "DF2K") + (10 if entry.gan else 0)
        models.append((rank, index[entry.file.lower()], entry.scale))
    default = index.get(DEFAULT_MODELS["sr"].lower())
    if default is not None:
        models.append((8, default, 2))
    return sorted(models)


def upscale_passes(scale: float, model_scale: int) -> int:
    """How many runs of a x`model_scale` model reach x`scale` (at least one; a downscale follows if it overshoots)."""
    if model_scale <= 1 or scale <= 1:
        return 1
    return max(1, math.ceil(math.log(scale) / math.log(model_scale) - 1e-9))


def _choose_upscale(scale: float, index: dict[str, str]) -> tuple[Step | None, str | None]:
    models = _sr_models(index)
    if not models:
        return None, f"upscale x{scale:g} asked but no super-resolution model is available; " \
                     "get one with `swinir download classical-M-x2-DF2K`"
    exact = [m for m in models if m[2] == scale]
    larger = sorted((m for m in models if m[2] > scale), key=lambda m: (m[2], m[0]))
    if exact:
        _, name, s = exact[0]
        return Step("upscale", name, f"x{s} model for the x{scale:g} target", model_scale=s), None
    if larger:
        _, name, s = larger[0]
        return Step("upscale", name, f"smallest model scale above x{scale:g}, then an antialiased downscale",
                    model_scale=s), None
    top = max(m[2] for m in models)
    _, name, s = min(m for m in models if m[2] == top)
    passes = upscale_passes(scale, s)
    return Step("upscale", name, f"no model reaches x{scale:g} in one pass: x{s} run {passes} times"
                + ("" if s ** passes == scale else ", then an antialiased downscale"), passes=passes, model_scale=s), None


def recommend(
    degradation: Degradation,
    scale: float = 1.0,
    available: Iterable[str] = (),
    denoise_threshold: float = DENOISE_THRESHOLD,
) -> Pipeline:
    """The pipeline for one image: the models (names as given in `available`: file names, with or without a
    folder or the '(default) ' prefix) to run in order, each with the reason it was chosen."""
    if scale < 1:
        raise InputError(f"the target scale must be 1 or more, got {scale:g}")
    index = _index(available)
    steps: list[Step] = []
    notes: list[str] = []
    wanted: list[str] = []
    unavailable: list[tuple[str, str]] = []

    def add(task: str, chosen: tuple[Step | None, str | None]) -> None:
        step, note = chosen
        wanted.append(task)
        steps.extend([step] if step else [])
        notes.extend([note] if note else [])
        unavailable.extend([(task, note)] if note and not step else [])

    q, sigma = degradation.jpeg_quality, degradation.noise_sigma
    if q is not None and q > JPEG_SKIP_ABOVE:
        notes.append(f"JPEG q{q} found; above q{JPEG_SKIP_ABOVE} its artifacts are too faint to clean")
    elif q is not None:
        add("jpeg", _choose_level_model("jpeg", q, _jpeg_close, BLIND_QUALITY, index, degradation.gray,
                                        f"JPEG q{q} found", stronger_higher=False))
    if sigma > denoise_threshold:
        add("denoise", _choose_level_model("denoise", sigma, _noise_close, BLIND_SIGMA, index, degradation.gray,
                                           f"noise sigma {sigma:.1f} found", stronger_higher=True))
    if scale > 1:
        add("upscale", _choose_upscale(scale, index))
    return Pipeline(tuple(steps), float(scale), tuple(notes), tuple(wanted), tuple(unavailable))
