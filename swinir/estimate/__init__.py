"""Measuring what degraded an image (noise level, JPEG quality) and choosing the models that undo it.

- `estimate_degradation(images)`: per image of an NCHW batch in [0, 1], the noise sigma (0-255 scale, patch PCA
  with 8-bit rounding and clipping corrections; noise.py) and the JPEG block grid and IJG quality (DCT lattice
  likelihood; jpeg.py).
- `jpeg_file_quality(path)`: the quality a JPEG file's own quantisation tables say.
- `recommend(degradation, scale, available)`: the pipeline (JPEG cleanup, denoise, upscale) with the best
  available model for each step and the reason (recommend.py).
"""

from .degradation import Degradation, estimate_degradation
from .jpeg_file import FileQuality, jpeg_file_quality
from .recommend import DENOISE_THRESHOLD, Pipeline, Step, recommend, step_label, upscale_passes

__all__ = [
    "DENOISE_THRESHOLD", "Degradation", "FileQuality", "Pipeline", "Step", "estimate_degradation",
    "jpeg_file_quality", "recommend", "step_label", "upscale_passes",
]
