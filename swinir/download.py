"""Fetch a checkpoint over HTTP(S) so that a file at its final path is always complete.

The bytes go to a hidden temporary file next to the destination and are hashed
while they stream; only a download of the expected size and digest is moved
into place with ``os.replace``. Any failure deletes the temporary file, so a
cut connection can never leave a truncated ``.pth`` that would later fail to
load with a confusing unpickling error.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
from contextlib import contextmanager
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .catalogue import CatalogueEntry
from .errors import Cancelled, DownloadError
from .fileutil import sha256_of

__all__ = [
    "MIRROR_ENV", "DownloadResult", "ProgressCallback", "catalogue_url", "default_models_dir", "download",
    "download_file",
]

MIRROR_ENV = "SWINIR_MODEL_MIRROR"

ProgressCallback = Callable[[int, "int | None"], None]
"""Called with (bytes received so far, total bytes or None when unknown)."""

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT = 60.0
_USER_AGENT = "ComfyUI-SwinIR-downloader/1"


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download_file` did; ``verified`` is False when no digest was known."""

    path: Path
    sha256: str
    size_bytes: int
    verified: bool
    skipped: bool


def default_models_dir(package_file: Path | None = None) -> Path | None:
    """``ComfyUI/models/swinir`` when this pack sits in ``ComfyUI/custom_nodes/<pack>/``, else None."""
    here = (package_file or Path(__file__)).resolve()
    parents = here.parents
    if len(parents) > 3 and parents[2].name == "custom_nodes":
        return parents[3] / "models" / "swinir"
    return None


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
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            # Unlinking while locked can let a third waiter lock a fresh file alongside a second one; both then
            # see the finished file and skip, so the folder stays clean at no risk to the result.
            lock_path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    fd, temp_name = tempfile.mkstemp(prefix=f".{file_name}.part-", dir=dest_dir)
    temp_path = Path(temp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    total = _content_length(response)
                    if total is not None and expected_size is not None and total != expected_size:
                        raise DownloadError(
                            f"{fail}: the server announces {total} bytes but the catalogue expects "
                            f"{expected_size}; the URL serves a different file"
                        )
                    total = total if total is not None else expected_size
                    if progress is not None:
                        progress(0, total)
                    while True:
                        if cancel is not None and cancel():
                            raise Cancelled(f"download of {file_name} cancelled; nothing was kept")
                        chunk = response.read(CHUNK_BYTES)
                        if not chunk:
                            break
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        if progress is not None:
                            progress(received, total)
            except urllib.error.HTTPError as exc:
                raise DownloadError(f"{fail}: HTTP {exc.code} {exc.reason}{by_hand}") from None
            except urllib.error.URLError as exc:
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
            out.flush()
            os.fsync(out.fileno())
        return temp_path, digest.hexdigest(), received
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
    if urllib.parse.urlsplit(source).scheme not in ("http", "https"):
        raise DownloadError(f"cannot download {file_name} from {source}: only http:// and https:// URLs are supported")

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

    try:
        with _exclusive(dest_dir, file_name):
            return _download_locked(
                source, dest_dir, file_name, expected, expected_size, progress, timeout, force, cancel
            )
    except OSError as exc:
        # The lock or mkstemp failing: read-only folder, disk full, ...
        raise DownloadError(f"could not download {file_name} into {dest_dir}: {exc.strerror or exc}") from None


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
    if target.is_file() and not force:
        existing = sha256_of(target)
        size = target.stat().st_size
        if expected is not None and existing == expected:
            return DownloadResult(target, existing, size, verified=True, skipped=True)
        if expected is None and (expected_size is None or size == expected_size):
            return DownloadResult(target, existing, size, verified=False, skipped=True)
        # A wrong or damaged file is replaced below; the atomic rename keeps it until then.

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
    return DownloadResult(target, actual, size, verified=expected is not None, skipped=False)


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
