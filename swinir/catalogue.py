"""The official SwinIR checkpoints (release v0.0) and how to build a network for each.

The data lives in ``swinir/models/catalogue.json``, beside the default models, so that it can be
read and reviewed without Python; this module only parses and looks it up.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import CatalogueError, UnknownModelError
from .tasks import TASKS

__all__ = ["CATALOGUE_PATH", "CatalogueEntry", "find_entry", "load_catalogue"]

CATALOGUE_PATH = Path(__file__).resolve().parent / "models" / "catalogue.json"



@dataclass(frozen=True)
class CatalogueEntry:
    """One release asset: where to get it, how to check it, how to build its network."""

    name: str
    file: str
    url: str
    task: str
    scale: int
    in_chans: int
    window_size: int
    img_range: float
    noise_level: int | None
    jpeg_quality: int | None
    variant: str
    training_data: str
    gan: bool
    size_bytes: int | None
    sha256: str | None
    img_size: int
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    mlp_ratio: float
    upsampler: str | None
    resi_connection: str
    param_key: str

    @property
    def level(self) -> str:
        """Human-readable strength: scale, noise sigma or JPEG quality."""
        if self.noise_level is not None:
            return f"sigma {self.noise_level}"
        if self.jpeg_quality is not None:
            return f"q{self.jpeg_quality}"
        return f"x{self.scale}"


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "file": (str,),
    "url": (str,),
    "task": (str,),
    "scale": (int,),
    "in_chans": (int,),
    "window_size": (int,),
    "img_range": (int, float),
    "noise_level": (int, type(None)),
    "jpeg_quality": (int, type(None)),
    "variant": (str,),
    "training_data": (str,),
    "gan": (bool,),
    "size_bytes": (int, type(None)),
    "sha256": (str, type(None)),
    "img_size": (int,),
    "embed_dim": (int,),
    "depths": (list,),
    "num_heads": (list,),
    "mlp_ratio": (int, float),
    "upsampler": (str, type(None)),
    "resi_connection": (str,),
    "param_key": (str,),
}


def _entry_from_json(raw: Any, index: int, path: Path) -> CatalogueEntry:
    where = f"{path}, models[{index}]"
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where} is not an object; restore swinir/models/catalogue.json from the pack")
    missing = sorted(set(_FIELD_TYPES) - set(raw))
    extra = sorted(set(raw) - set(_FIELD_TYPES))
    if missing or extra:
        raise CatalogueError(
            f"{where}: missing fields {missing}, unknown fields {extra}; "
            "restore swinir/models/catalogue.json from the pack"
        )
    for key, types in _FIELD_TYPES.items():
        value = raw[key]
        # bool is an int subclass; only "gan" may be a bool.
        if not isinstance(value, types) or (isinstance(value, bool) and key != "gan"):
            raise CatalogueError(f"{where}: field {key!r} has the wrong type ({value!r})")
    if raw["task"] not in TASKS:
        raise CatalogueError(f"{where}: unknown task {raw['task']!r}")
    digest = raw["sha256"]
    if digest is not None and (len(digest) != 64 or digest.strip("0123456789abcdef")):
        raise CatalogueError(f"{where}: sha256 must be 64 lowercase hex digits")
    values = dict(raw)
    values["img_range"] = float(raw["img_range"])
    values["mlp_ratio"] = float(raw["mlp_ratio"])
    values["depths"] = tuple(raw["depths"])
    values["num_heads"] = tuple(raw["num_heads"])
    return CatalogueEntry(**values)


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[CatalogueEntry, ...]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(
            f"model catalogue {path} is missing; reinstall the pack or restore swinir/models/catalogue.json"
        ) from None
    except (OSError, ValueError) as exc:
        raise CatalogueError(f"cannot read model catalogue {path}: {exc}") from None
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, list):
        raise CatalogueError(f"model catalogue {path} has no 'models' list")
    entries = tuple(_entry_from_json(raw, i, path) for i, raw in enumerate(models))
    for attr in ("name", "file"):
        seen: set[str] = set()
        for entry in entries:
            key = getattr(entry, attr).lower()
            if key in seen:
                raise CatalogueError(f"model catalogue {path}: duplicate {attr} {getattr(entry, attr)!r}")
            seen.add(key)
    return entries


def load_catalogue(path: Path | None = None) -> list[CatalogueEntry]:
    """Every catalogue entry, in catalogue order (a fresh list; the entries are immutable)."""
    return list(_load(path or CATALOGUE_PATH))


def find_entry(name_or_file: str, path: Path | None = None) -> CatalogueEntry:
    """The entry whose short name or file name is ``name_or_file`` (case-insensitive)."""
    entries = _load(path or CATALOGUE_PATH)
    wanted = name_or_file.strip().lower()
    for entry in entries:
        if wanted in (entry.name.lower(), entry.file.lower()):
            return entry
    names = [entry.name for entry in entries]
    by_lower = {n.lower(): n for n in names} | {e.file.lower(): e.file for e in entries}
    close = difflib.get_close_matches(wanted, list(by_lower), n=5, cutoff=0.5)
    hint = f"close names: {', '.join(by_lower[c] for c in close)}; " if close else ""
    raise UnknownModelError(
        f"unknown SwinIR model {name_or_file!r}; {hint}"
        "run 'swinir download --list' to see all names"
    )
