"""What a bulk run is told (Settings) and what it reports per job (Outcome)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from fractions import Fraction

from ..imageio import DEFAULT_MAX_PIXELS

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass(frozen=True)
class Settings:
    tile: int | str = "auto"
    overlap: int | None = None
    precision: str = "fp32"
    device: str | None = None
    gray_mode: str = "luma"
    codec: str | None = None  # video outputs: encoder (None: the container's default)
    crf: int | None = None  # video outputs: constant quality (None: the encoder's default here)
    fps: str = "25"  # frame folders made into a video: frames per second, e.g. 25 or 30000/1001
    overwrite: bool = False  # replace outputs that exist and are not this job's
    compile: bool = False  # torch.compile the model (speed only: not part of an output's recipe)
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger inputs are refused as possible image bombs (imageio)

    @property
    def frame_rate(self) -> Fraction:
        return Fraction(self.fps)


@dataclass
class Outcome:
    source: str
    target: str
    status: str  # DONE, SKIPPED (already complete) or FAILED
    message: str = ""
    frames: int = 0  # video frames restored (0 for images)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Outcome":
        return cls(**json.loads(text))


def summary(outcomes: list[Outcome]) -> str:
    """One line: how many outputs were written, kept because complete, and failed."""
    counts = {status: sum(o.status == status for o in outcomes) for status in (DONE, SKIPPED, FAILED)}
    parts = [f"{counts[DONE]} written"]
    if counts[SKIPPED]:
        parts.append(f"{counts[SKIPPED]} already complete (kept)")
    if counts[FAILED]:
        parts.append(f"{counts[FAILED]} failed")
    return f"{len(outcomes)} input{'s' if len(outcomes) != 1 else ''}: " + ", ".join(parts)
