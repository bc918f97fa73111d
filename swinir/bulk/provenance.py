"""How an output says what made it, so that a rerun skips what is finished and never overwrites another job's work.

Every output is published whole (a temporary file, then a rename), so an output that exists is complete. What it
cannot say by existing is whether it is *this* job's: the same name may come from another input (two runs into
one folder), another model or other settings. So each output carries a note (in the image's EXIF description, in
the video's container metadata) with a key: a digest of the input's content and of everything that decides the
output's pixels and encoding. A rerun skips an output whose key matches, and refuses (unless told to overwrite)
one whose key differs or that has no key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from ..fileutil import CHUNK

NOTE_FIELD = "swinir-restore"
# A file up to this size is digested whole; a larger one (a video) by its size, head and tail, so that checking
# what is done does not read a whole film.
WHOLE_LIMIT = 16 << 20
EDGE = 1 << 20


def fingerprint(path: Path) -> str:
    """A digest of a file's content (exact for files up to 16 MiB; size, first and last MiB beyond)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= WHOLE_LIMIT:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                digest.update(chunk)
        else:
            digest.update(f.read(EDGE))
            f.seek(size - EDGE)
            digest.update(f.read(EDGE))
    return digest.hexdigest()


def folder_fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\0{fingerprint(f)}\0".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Recipe:
    """Everything besides the input that decides an output (the device does not, beyond rounding)."""

    model_sha256: str
    tile: str
    overlap: int | None
    precision: str
    gray_mode: str
    codec: str | None = None  # video outputs only
    crf: int | None = None
    fps: str | None = None  # frame folders made into a video only

    def key(self, source_fingerprint: str) -> str:
        """The input's part, then the recipe's: a mismatch can say which of the two differs."""
        recipe = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return f"{source_fingerprint[:16]}.{recipe[:16]}"


def make_note(key: str, source: Path, model: str, frame: int | None = None) -> str:
    fields = {NOTE_FIELD: key, "from": Path(source).name, "model": model}
    if frame is not None:
        fields["frame"] = frame
    return json.dumps(fields, separators=(",", ":"))


def parse_note(note: str | None) -> dict:
    """The note's fields; {} for no note or a note that is not ours."""
    if not note:
        return {}
    try:
        fields = json.loads(note)
    except ValueError:
        return {}
    return fields if isinstance(fields, dict) and isinstance(fields.get(NOTE_FIELD), str) else {}


class State(Enum):
    ABSENT = "absent"
    COMPLETE = "complete"  # made by this job: nothing to do
    FOREIGN = "foreign"  # something else has the name: never overwritten unless asked


@dataclass(frozen=True)
class Existing:
    state: State
    why: str = ""  # for FOREIGN, what the file is, for the message


def check_output(target: Path, key: str, read_note) -> Existing:
    """What is at `target` already, given this job's key; `read_note(path)` reads the note of that kind of file."""
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return Existing(State.ABSENT)
    if target.is_dir():
        return Existing(State.FOREIGN, "a folder has that name")
    fields = parse_note(read_note(target))
    if not fields:
        return Existing(State.FOREIGN, "it was not made by swinir restore (or its format keeps no note)")
    theirs = fields[NOTE_FIELD]
    if theirs == key:
        return Existing(State.COMPLETE)
    if theirs.split(".")[0] != key.split(".")[0]:
        return Existing(State.FOREIGN, f"it was made from another input ({fields.get('from', '?')} of other content)")
    return Existing(State.FOREIGN, f"it was made from this input with model {fields.get('model', '?')} and "
                                   "settings other than this run's")
