"""Fetch a checkpoint over HTTP(S) so that a file at its final path is always complete.

The bytes go to a hidden temporary file next to the destination and are hashed
while they stream; only a download of the expected size and digest is moved
into place with ``os.replace``. Any failure deletes the temporary file, so a
cut connection can never leave a truncated ``.pth`` that would later fail to
load with a confusing unpickling error.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import ipaddress
import logging
import os
import time
from contextlib import contextmanager
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .catalogue import CatalogueEntry
from .errors import Cancelled, DownloadError
from .fileutil import atomic_target, make_part, remove_stale_parts, sha256_of

__all__ = [
    "MIRROR_ENV", "DownloadResult", "ProgressCallback", "catalogue_url", "check_url", "default_models_dir",
    "digest_record", "download", "download_file", "sweep_partial_downloads", "verify_local",
]

MIRROR_ENV = "SWINIR_MODEL_MIRROR"

ProgressCallback = Callable[[int, "int | None"], None]
"""Called with (bytes received so far, total bytes or None when unknown)."""

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT = 60.0
_USER_AGENT = "ComfyUI-SwinIR-downloader/1"
# The most a file without a published size may be: the largest official file is 142,473,939 bytes (SwinIR-L).
UNPUBLISHED_SIZE_CAP = 192 << 20
DIGEST_RECORD_SUFFIX = ".sha256"

log = logging.getLogger("swinir")


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download_file` did; ``verified`` is False when no digest was known."""

    path: Path
    sha256: str
    size_bytes: int
    verified: bool
    skipped: bool
    recorded: bool = False  # no published digest: checked against the one recorded at the first download

def default_models_dir(package_file: Path | None = None) -> Path | None:
    """``ComfyUI/models/swinir`` when this pack sits in ``ComfyUI/custom_nodes/<pack>/``, else None."""
    here = (package_file or Path(__file__)).resolve()
    parents = here.parents
    if len(parents) > 3 and parents[2].name == "custom_nodes":
        return parents[3] / "models" / "swinir"
    return None


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> None:
    """https, or plain http to this machine only (a local mirror, the tests' server): a checkpoint is code-adjacent
    data, and plain http to another host lets anyone on the way swap it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname)):
        return
    if parts.scheme == "http":
        raise DownloadError(f"{what}: refusing plain http:// to {parts.hostname}; use an https:// URL (plain http "
                            "is accepted only for this machine: localhost, 127.0.0.1, ::1)")
    raise DownloadError(f"{what}: only https:// URLs (or http:// to this machine) are supported, not {url}")


class _SecureRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only where the first URL could have gone itself: a redirect never leaves https."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if old.scheme == "https" and new.scheme != "https":
            raise DownloadError(f"{req.full_url} redirects to {newurl}, which leaves https; refusing it")
        check_url(newurl, f"{req.full_url} redirects to {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SecureRedirects)


def digest_record(target: Path) -> Path:
    """Where the sha256 of a file without a published digest is kept after its first complete download."""
    return target.with_name(f".{target.name}{DIGEST_RECORD_SUFFIX}")


def _read_record(target: Path) -> str | None:
    try:
        text = digest_record(target).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    digest = text[0].lower() if text else ""
    return digest if len(digest) == 64 and not digest.strip("0123456789abcdef") else None


def _write_record(target: Path, digest: str) -> None:
    try:
        with atomic_target(digest_record(target)) as tmp:
            tmp.write_text(f"{digest}  {target.name}\n", encoding="ascii")
    except OSError as exc:
        log.warning("could not record the sha256 of %s (%s); it is checked against nothing later", target,
                    exc.strerror or exc)


def _unpublished_notice(target: Path, digest: str) -> None:
    log.warning("%s: no sha256 is published for this official file, so it could not be verified; its sha256 %s "
                "is recorded in %s and every later use is checked against it", target, digest,
                digest_record(target).name)


# Temporary files named `.NAME.part-XXXXXXXX` carry no owner; one nobody wrote to for this long is abandoned
# (a download gives up after DEFAULT_TIMEOUT of silence).
_UNOWNED_PART_AGE_S = 3600


def _remove_unheld_locks(folder: Path) -> int:
    """Lock files of `_exclusive` that no process holds (their process was killed): a held one is left alone."""
    try:
        import fcntl
        locks = [p for p in Path(folder).glob(".*.lock") if p.is_file()]
    except (ImportError, OSError):
        return 0
    removed = 0
    for lock in locks:
        try:
            with open(lock, "a+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                lock.unlink(missing_ok=True)
                fcntl.flock(handle, fcntl.LOCK_UN)
                removed += 1
        except OSError:
            continue  # held by a download under way (or not ours to remove)
    return removed


def sweep_partial_downloads(folder: Path) -> int:
    """Removes what killed downloads left in `folder`: temporary files of dead processes (`remove_stale_parts`),
    ownerless `.NAME.part-XXXX` files untouched for an hour, and lock files nobody holds. Returns how many."""
    removed = remove_stale_parts(folder) + _remove_unheld_locks(folder)
    try:
        unowned = [p for p in Path(folder).glob(".*.part-*") if p.is_file()]
    except OSError:
        return removed
    for part in unowned:
        try:
            if time.time() - part.stat().st_mtime > _UNOWNED_PART_AGE_S:
                part.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def verify_local(entry: CatalogueEntry, path: Path) -> Path:
    """A catalogue file already on disk, checked before use. One with a published digest was checked against it
    when it was downloaded; one without is checked against the digest recorded at its first download (recorded
    now, with a notice, for a file put there by hand). Also sweeps what killed downloads left in its folder."""
    path = Path(path)
    sweep_partial_downloads(path.parent)
    if entry.sha256 is not None:
        return path
    try:
        size = path.stat().st_size
        if size > UNPUBLISHED_SIZE_CAP:
            raise DownloadError(f"{path}: is {size} bytes, more than any official SwinIR file "
                                f"({UNPUBLISHED_SIZE_CAP} at most); delete it and download {entry.file} again")
        actual = sha256_of(path)
    except FileNotFoundError:
        raise DownloadError(f"{path}: the model file disappeared; put it back, or download {entry.name} "
                            "again") from None
    except OSError as exc:
        raise DownloadError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
    recorded = _read_record(path)
    if recorded is None:
        _write_record(path, actual)
        _unpublished_notice(path, actual)
    elif recorded != actual:
        raise DownloadError(f"{path}: its sha256 {actual} differs from {recorded}, recorded when it was first "
                            "downloaded; the file changed or is damaged: delete it and it is downloaded again "
                            "on its next use")
    return path


def catalogue_url(entry: CatalogueEntry) -> str:
    """Where a catalogue file is fetched from: `$SWINIR_MODEL_MIRROR/<official file name>` when that variable is
    set (a mirror, or the tests' local server), else the catalogue's own URL."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return entry.url
    return mirror.rstrip("/") + "/" + urllib.parse.quote(entry.file)


@contextmanager
def _exclusive(dest_dir: Path, file_name: str) -> Iterator[None]:
    """One download of a file at a time across threads and processes (two prompts, a prompt and the command line):
    the second waits, then finds the file in place. Best effort where fcntl is missing (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_path = dest_dir / f".{file_name}.lock"
    handle = _locked(lock_path, fcntl)
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _locked(lock_path: Path, fcntl) -> BinaryIO:
    """The lock file at `lock_path`, opened and held. The holder unlinks it when done, and a sweep unlinks one that
    nobody holds yet, so a waiter may wake holding a file that is no longer at the path while another process locks
    a fresh one there: the lock counts only while the path still names the file locked, else it is taken anew."""
    while True:
        handle = open(lock_path, "a+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            held = os.fstat(handle.fileno())
            try:
                current = os.stat(lock_path)
            except FileNotFoundError:
                current = None
        except BaseException:
            handle.close()
            raise
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            return handle
        handle.close()


def _normalise_digest(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    digest = value.strip().lower()
    if len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise DownloadError(f"{what} {value!r} is not a sha256 digest (64 hex digits)")
    return digest


def _file_name_from_url(url: str) -> str:
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    # The name becomes a path under dest_dir; refuse anything that could escape it.
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise DownloadError(f"cannot derive a safe file name from URL {url}; pass a catalogue entry instead")
    return name


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; directories cannot be opened this way on Windows.
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # the file is already complete and in place; durability is best effort here
    finally:
        os.close(fd)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def _disk_problem(exc: OSError, file_name: str, dest_dir: Path, need: int | None) -> DownloadError:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        room = f"about {need / (1 << 20):.0f} MiB" if need else "room for the model"
        return DownloadError(f"could not save {file_name} into {dest_dir}: the disk is full; free {room} there "
                             "and run it again; nothing was kept")
    return DownloadError(f"could not save {file_name} into {dest_dir}: {exc.strerror or exc}; check that the "
                         "folder can be written; nothing was kept")


def _stream_to_temp(
    url: str,
    dest_dir: Path,
    file_name: str,
    expected_size: int | None,
    progress: ProgressCallback | None,
    timeout: float,
    cancel: Callable[[], bool] | None = None,
) -> tuple[Path, str, int]:
    """Download into a temporary file in dest_dir; return (temp path, sha256, size).

    The caller owns the temporary file on success; on failure it is already gone.
    """
    fail = f"could not download {file_name} from {url}"
    by_hand = f"; check the connection, or fetch the file yourself and put it in {dest_dir} as {file_name}"
    limit = expected_size if expected_size is not None else UNPUBLISHED_SIZE_CAP
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    fd, temp_path = make_part(dest_dir / file_name)
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with _OPENER.open(request, timeout=timeout) as response:
                    total = _content_length(response)
                    if total is not None and expected_size is not None and total != expected_size:
                        raise DownloadError(
                            f"{fail}: the server announces {total} bytes but the catalogue expects "
                            f"{expected_size}; the URL serves a different file"
                        )
                    if total is not None and total > limit:
                        raise DownloadError(f"{fail}: the server announces {total} bytes, more than any official "
                                            f"SwinIR file ({limit} at most); the URL serves a different file")
                    total = total if total is not None else expected_size
                    if progress is not None:
                        progress(0, total)
                    while True:
                        if cancel is not None and cancel():
                            raise Cancelled(f"download of {file_name} cancelled; nothing was kept")
                        chunk = response.read(CHUNK_BYTES)
                        if not chunk:
                            break
                        received += len(chunk)
                        if received > limit:
                            raise DownloadError(f"{fail}: the server sent more than {limit} bytes, more than any "
                                                "official SwinIR file; nothing was kept")
                        try:
                            out.write(chunk)
                        except OSError as exc:
                            raise _disk_problem(exc, file_name, dest_dir, total) from None
                        digest.update(chunk)
                        if progress is not None:
                            progress(received, total)
            except urllib.error.HTTPError as exc:
                raise DownloadError(f"{fail}: HTTP {exc.code} {exc.reason}{by_hand}") from None
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, DownloadError):
                    raise exc.reason from None
                raise DownloadError(f"{fail}: {exc.reason}{by_hand}") from None
            except http.client.IncompleteRead as exc:
                raise DownloadError(
                    f"{fail}: the connection was cut after {received + len(exc.partial)} bytes; "
                    f"nothing was kept, run the download again{by_hand}"
                ) from None
            except (http.client.HTTPException, OSError) as exc:
                # TimeoutError and ConnectionResetError are OSErrors.
                raise DownloadError(
                    f"{fail}: {type(exc).__name__}: {str(exc) or 'connection failed'} after {received} bytes; "
                    f"nothing was kept, run the download again{by_hand}"
                ) from None
            # http.client returns b"" rather than raising when the peer closes early,
            # so the announced length must be checked here.
            if total is not None and received != total:
                what = "the connection was cut" if received < total else "the server sent too much"
                raise DownloadError(
                    f"{fail}: {what}: received {received} of {total} bytes; "
                    "nothing was kept, run the download again"
                )
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise _disk_problem(exc, file_name, dest_dir, total) from None
        return temp_path, digest.hexdigest(), received
    except OSError as exc:
        # Closing the file can be where a full disk shows first.
        temp_path.unlink(missing_ok=True)
        raise _disk_problem(exc, file_name, dest_dir, expected_size) from None
    except BaseException:
        # Also on KeyboardInterrupt: never leave a partial file behind.
        temp_path.unlink(missing_ok=True)
        raise


def download_file(
    entry_or_url: CatalogueEntry | str,
    dest_dir: Path,
    *,
    expected_sha256: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    url: str | None = None,
    force: bool = False,
    cancel: Callable[[], bool] | None = None,
) -> DownloadResult:
    """Download a checkpoint into ``dest_dir`` and report its digest.

    ``entry_or_url`` is a catalogue entry (file name, size and digest come from it)
    or a bare http(s) URL (file name from the URL, digest from ``expected_sha256``).
    ``url`` replaces the entry's URL (by default `catalogue_url`: the catalogue's, or
    the mirror of ``$SWINIR_MODEL_MIRROR``); the entry's size and digest still apply.
    A file already at the destination is kept when its digest matches, or when no
    digest is known and its size is plausible, unless ``force``. ``cancel()`` is
    checked between chunks and stops with `Cancelled`, keeping nothing. Concurrent
    calls for one file (threads or processes) download it once.
    """
    if isinstance(entry_or_url, CatalogueEntry):
        entry: CatalogueEntry | None = entry_or_url
        file_name = entry_or_url.file
        source = url or catalogue_url(entry_or_url)
    else:
        entry = None
        source = url or entry_or_url
        file_name = _file_name_from_url(source)
    check_url(source, f"cannot download {file_name} from {source}")

    expected = _normalise_digest(expected_sha256, "expected sha256")
    known = _normalise_digest(entry.sha256, "catalogue sha256") if entry else None
    if expected and known and expected != known:
        raise DownloadError(
            f"cannot download {file_name}: the given sha256 {expected} differs from the catalogue's {known}"
        )
    expected = expected or known
    expected_size = entry.size_bytes if entry else None

    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create folder {dest_dir} for {file_name}: {exc.strerror or exc}") from None
    sweep_partial_downloads(dest_dir)

    try:
        with _exclusive(dest_dir, file_name):
            return _download_locked(
                source, dest_dir, file_name, expected, expected_size, progress, timeout, force, cancel
            )
    except OSError as exc:
        # The lock or the temporary file failing: read-only folder, disk full, ...
        raise _disk_problem(exc, file_name, dest_dir, expected_size) from None


def _download_locked(
    source: str,
    dest_dir: Path,
    file_name: str,
    expected: str | None,
    expected_size: int | None,
    progress: ProgressCallback | None,
    timeout: float,
    force: bool,
    cancel: Callable[[], bool] | None,
) -> DownloadResult:
    target = dest_dir / file_name
    recorded = _read_record(target) if expected is None else None
    if target.is_file() and not force:
        existing = sha256_of(target)
        size = target.stat().st_size
        if expected is not None and existing == expected:
            return DownloadResult(target, existing, size, verified=True, skipped=True)
        if expected is None and recorded == existing:
            return DownloadResult(target, existing, size, verified=False, skipped=True, recorded=True)
        if expected is None and recorded is None and size <= (expected_size or UNPUBLISHED_SIZE_CAP) and \
                (expected_size is None or size == expected_size):
            # Put there by hand: nothing to check it against; recorded from now on.
            _write_record(target, existing)
            _unpublished_notice(target, existing)
            return DownloadResult(target, existing, size, verified=False, skipped=True, recorded=True)
        # A wrong, changed or damaged file is replaced below; the atomic rename keeps it until then.

    temp_path, actual, size = _stream_to_temp(source, dest_dir, file_name, expected_size, progress, timeout, cancel)
    try:
        if expected_size is not None and size != expected_size:
            raise DownloadError(
                f"could not download {file_name} from {source}: got {size} bytes, "
                f"the catalogue expects {expected_size}; nothing was kept"
            )
        if expected is not None and actual != expected:
            raise DownloadError(
                f"sha256 mismatch for {file_name} from {source}: expected {expected}, got {actual}; "
                "the file was deleted (a corrupted transfer or a different file at that URL)"
            )
        # mkstemp creates 0600; a model file should be readable like any other download.
        os.chmod(temp_path, 0o644)
        os.replace(temp_path, target)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(dest_dir)
    if expected is None:
        _write_record(target, actual)
        _unpublished_notice(target, actual)
    return DownloadResult(target, actual, size, verified=expected is not None, skipped=False,
                          recorded=expected is None)


def download(
    entry_or_url: CatalogueEntry | str,
    dest_dir: Path,
    *,
    expected_sha256: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download and verify a checkpoint; return its final path (see :func:`download_file`)."""
    return download_file(
        entry_or_url, dest_dir, expected_sha256=expected_sha256, progress=progress, timeout=timeout
    ).path
