"""File helpers shared by every writer: atomic replacement and hashing."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


PART_SUFFIX = ".part"


def part_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) of the process that made a temporary file of `atomic_target`, from its name; None for others."""
    if not (name.startswith(".") and name.endswith(PART_SUFFIX)):
        return None
    fields = name[: -len(PART_SUFFIX)].rsplit(".", 2)
    if len(fields) != 3 or "@" not in fields[2]:
        return None
    host, _, pid = fields[2].rpartition("@")
    return (host, int(pid)) if pid.isdigit() else None


def _publish_new(tmp: Path, path: Path) -> None:
    """Moves `tmp` to `path` only if `path` does not exist (FileExistsError otherwise), atomically: a hard link
    fails when the name is taken, where a rename would replace it. Filesystems without hard links get a check
    and a rename, which a writer racing in between can still win."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def make_part(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path` (open descriptor, path), named so that `remove_stale_parts` can tell
    whether the process that made it still runs. Creates the folder first: outputs and downloads make their
    folder only once there is something to put in it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = f"{socket.gethostname().replace('.', '_')}@{os.getpid()}"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{owner}{PART_SUFFIX}", dir=path.parent)
    return fd, Path(tmp)


def write_problem(error: OSError, path: Path) -> str:
    """'PATH: cannot write (why); what to do' for an OSError met while writing `path` (the path the user gave,
    never the hidden temporary file beside it)."""
    why = error.strerror or str(error)
    if error.errno == errno.ENOSPC or error.errno == getattr(errno, "EDQUOT", -1):
        fix = "free some space on that disk, or choose an output on another disk"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose an output folder you can write to"
    elif error.errno == errno.EISDIR:
        fix = "a folder has that name; choose another output name"
    elif error.errno == errno.ENOTDIR:
        fix = "a file stands where a folder is needed; choose another output"
    elif error.errno == errno.ENAMETOOLONG:
        fix = "choose a shorter output name"
    else:
        fix = "check the output folder"
    return f"{path}: cannot write ({why}); {fix}"


@contextmanager
def atomic_target(path: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it becomes `path` (readable like any other file), on any
    failure it is removed, so readers never see a partial file. With replace=False an existing `path` is never
    overwritten: the finished file is dropped and FileExistsError raised instead. The temporary name carries
    the host and process id, so a later run can remove those of a process that was killed (`part_owner`)."""
    path = Path(path)
    fd, tmp_path = make_part(path)
    os.close(fd)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        if replace:
            os.replace(tmp_path, path)
        else:
            _publish_new(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


# A temporary file nobody has written to for this long belongs to a process that is gone, whatever host made it:
# writers add to theirs continuously, and a download gives up after a minute of silence.
ABANDONED_AFTER_S = 24 * 3600


def remove_stale_parts(folder: Path) -> int:
    """Removes the temporary files in `folder` left by processes of this host that no longer run (killed before
    they could clean up), and any untouched for a day; those of live processes, and recent ones of other hosts,
    are left alone. Returns how many."""
    host = socket.gethostname().replace(".", "_")
    removed = 0
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        owner = part_owner(entry.name)
        if owner is None:
            continue
        if owner[0] != host or _alive(owner[1]):
            try:
                if now - entry.stat().st_mtime < ABANDONED_AFTER_S:
                    continue
            except OSError:
                continue
        try:
            entry.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
