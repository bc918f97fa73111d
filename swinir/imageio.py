"""Reading and writing image files: 8- and 16-bit, atomically, with errors that name the file."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageFileError
from .fileutil import atomic_target

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


# Pillow's own guard against decompression bombs (a small file whose header claims a huge image) refuses above
# twice Image.MAX_IMAGE_PIXELS, about 179 megapixels. The same limit is held here, so that every reader gives the
# pack's own message and a run can raise it for its images (`--max-megapixels`); Pillow's is raised along only
# when ours goes above it.
DEFAULT_MAX_PIXELS = 2 * 89_478_485
_max_pixels = DEFAULT_MAX_PIXELS
MAX_PIXELS_OPTION = "--max-megapixels"


def set_max_pixels(pixels: int) -> None:
    """The largest image (width x height) the readers open; larger ones are refused as possible image bombs."""
    global _max_pixels
    if pixels < 1:
        raise ValueError(f"the pixel limit must be positive, got {pixels}")
    _max_pixels = int(pixels)
    # Image.open refuses above twice Pillow's limit before we see the size: raised with ours, never lowered.
    if Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS < _max_pixels:
        Image.MAX_IMAGE_PIXELS = -(-_max_pixels // 2)


def max_pixels() -> int:
    return _max_pixels


def megapixels(pixels: int) -> str:
    mp = pixels / 1e6
    return f"{mp:.0f}" if mp >= 100 else f"{mp:.3g}"


def _too_large(path: Path, pixels: int, size: tuple[int, int] | None = None) -> ImageFileError:
    needed = -(-pixels // 1_000_000)
    shape = f"is {size[0]}x{size[1]} ({megapixels(pixels)} megapixels)" if size else \
        f"claims {megapixels(pixels)} megapixels"
    return ImageFileError(
        f"{path}: {shape}, more than the {megapixels(_max_pixels)} megapixel limit that guards against image bombs "
        f"(a small file claiming a huge image); if the image is genuine, raise the limit with "
        f"{MAX_PIXELS_OPTION} {needed}")


def check_pixel_limit(path: Path, width: int, height: int) -> None:
    """An ImageFileError naming `path` and the option that raises the limit, for a picture (or a video's frames)
    larger than the pixel limit; checked before anything of that size is decoded."""
    if width * height > _max_pixels:
        raise _too_large(path, width * height, (width, height))


def open_image(path: Path, *, load: bool = True) -> Image.Image:
    """The image at `path` checked against the pixel limit before a pixel is decoded, then loaded (unless `load`
    is False: the header only). Every way a file can fail to open is an ImageFileError naming it."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns from half its limit; the size is judged against ours below, so the warning says nothing.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            try:
                check_pixel_limit(path, *img.size)
                if load:
                    img.load()
            except BaseException:
                img.close()
                raise
        return img
    except ImageFileError:
        raise
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageFileError(f"{path}: is a folder, not an image") from None
    except Image.DecompressionBombError as e:
        # Pillow refuses inside Image.open, before the size can be read: its message holds the pixel count.
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(path, int(found.group(1)) if found else _max_pixels + 1) from None
    except MemoryError:
        raise ImageFileError(f"{path}: too large to decode in the memory available; use a smaller image or a "
                             "machine with more memory") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageFileError(f"{path}: not a readable image ({e}); check that the file is complete") from None


def read_image(path: Path) -> tuple[np.ndarray, int]:
    """HWC float32 in [0, 1] (C = 1, 3 or 4) and the source bit depth (8 or 16)."""
    img = open_image(path)
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
    img = open_image(path)
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
        with open_image(path, load=False) as img:
            value = img.getexif().get(_NOTE_TAG)
    except (ImageFileError, OSError, SyntaxError, ValueError, EOFError):
        return None
    return value if isinstance(value, str) else None
