"""Reading and writing image files: 8- and 16-bit, atomically, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageFileError
from .fileutil import atomic_target

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageFileError(f"{path}: not a readable image ({e}); check that the file is complete") from None


def read_image(path: Path) -> tuple[np.ndarray, int]:
    """HWC float32 in [0, 1] (C = 1, 3 or 4) and the source bit depth (8 or 16)."""
    img = _open(Path(path))
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32) / 65535.0
        return np.clip(arr, 0, 1)[..., None], 16
    if img.mode not in ("L", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr, 8


def read_image_uint8(path: Path, channels: int = 3) -> np.ndarray:
    """HWC uint8 with exactly `channels` channels (3: gray is replicated, alpha dropped)."""
    img = _open(Path(path))
    return np.asarray(img.convert("RGB" if channels == 3 else "L")).reshape(img.height, img.width, channels)


# EXIF ImageDescription: the one place for a short text that PNG, JPEG, WebP and TIFF all keep (BMP has none).
_NOTE_TAG = 0x010E
NOTE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"}


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Float in [0, 1] to uint8, rounding half up: the one conversion every 8-bit output uses."""
    return (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_image(path: Path, arr: np.ndarray, bits: int = 8, *, note: str | None = None, replace: bool = True) -> None:
    """Writes HWC float in [0, 1] (or uint8) to a temporary file beside `path`, then renames it: never a partial
    file. `note` is kept in the file (see `read_note`) where the format has room for it; replace=False never
    overwrites an existing `path` (FileExistsError, see `fileutil.atomic_target`)."""
    path = Path(path)
    if bits == 16 and arr.shape[2] == 1 and path.suffix.lower() == ".png":
        img = Image.fromarray((np.clip(arr[..., 0], 0, 1) * 65535 + 0.5).astype(np.uint16))
    else:
        data = arr if arr.dtype == np.uint8 else to_uint8(arr)
        img = Image.fromarray(data[..., 0] if data.shape[2] == 1 else data)
    if img.mode == "RGBA" and path.suffix.lower() in (".jpg", ".jpeg"):
        img = img.convert("RGB")
    options = {}
    if note is not None and path.suffix.lower() in NOTE_SUFFIXES:
        exif = Image.Exif()
        exif[_NOTE_TAG] = note
        options["exif"] = exif.tobytes()
    with atomic_target(path, replace=replace) as tmp:
        img.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"), **options)


def read_note(path: Path) -> str | None:
    """The note `write_image` kept in a file, or None (no note, not an image, unreadable)."""
    try:
        with Image.open(path) as img:
            value = img.getexif().get(_NOTE_TAG)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError):
        return None
    return value if isinstance(value, str) else None
