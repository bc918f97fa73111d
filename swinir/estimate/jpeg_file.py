"""The quality a JPEG file says it was saved at: its own quantisation tables, read by Pillow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..imageio import open_image
from .ijg import quality_of_table


@dataclass(frozen=True)
class FileQuality:
    quality: int  # IJG quality of the luma table (the nearest one when the encoder is not libjpeg-like)
    exact: bool  # the luma table is exactly libjpeg's at that quality
    tables: int  # how many quantisation tables the file has

    @property
    def description(self) -> str:
        return f"q{self.quality}" if self.exact else f"~q{self.quality} (non-IJG tables)"


def jpeg_file_quality(path: Path) -> FileQuality | None:
    """The IJG quality of a JPEG file's luma quantisation table; None when the file is not a JPEG."""
    with open_image(path, load=False) as img:
        if img.format != "JPEG":
            return None
        tables = dict(getattr(img, "quantization", None) or {})
    if 0 not in tables:
        return None
    found = quality_of_table(tables[0])
    return FileQuality(found.quality, found.exact, len(tables))
