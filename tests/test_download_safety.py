"""Downloads that cannot be trusted or cannot finish: plain http and redirects off https, files with no published
digest (size cap, digest recorded at the first download and checked at every use, a notice once), what a killed
download leaves (swept at the next use), a full disk, and two processes fetching one file into one folder.

A real HTTP server on 127.0.0.1; real subprocesses; a real 128 KiB tmpfs for the full disk (mounted as root).
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import swinir.download as dl
from cli_runs import wait_for
from test_bad_inputs import mounted_tmpfs
from swinir.catalogue import find_entry
from swinir.download import MIRROR_ENV, digest_record, download_file, verify_local
from swinir.errors import DownloadError
from testkit.http_server import serving

REPO = Path(__file__).resolve().parents[1]
SIZE = 300_000
UNPUBLISHED = find_entry("gray-denoise-M-noise50")  # no published size or digest


@dataclass
class Site:
    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    stalled: threading.Event = field(default_factory=threading.Event)  # a "stall" transfer has sent its first half
    release: threading.Event = field(default_factory=threading.Event)  # lets "stall" transfers finish


def _handler(site: Site):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            kind, _, name = self.path.lstrip("/").partition("/")
            site.hits[name] = site.hits.get(name, 0) + 1
            if kind == "redirect":  # to wherever the rest of the path says
                self.send_response(302)
                self.send_header("Location", name)
                self.end_headers()
                return
            data = site.files.get(name)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            if kind != "nolength":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                if kind == "stall":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    site.stalled.set()
                    site.release.wait(120)
                    self.wfile.write(data[len(data) // 2:])
                    return
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


@pytest.fixture()
def site() -> Iterator[Site]:
    s = Site()
    with serving(_handler(s)) as s.url:
        try:
            yield s
        finally:
            s.release.set()  # a stalled transfer ends, so the server can shut down


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _publish(site: Site, name: str) -> tuple[bytes, str]:
    data = os.urandom(SIZE)
    site.files[name] = data
    return data, hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------- where from


@pytest.mark.parametrize("url", ["http://example.invalid/x.pth", "http://10.1.2.3/x.pth", "ftp://127.0.0.1/x.pth",
                                 "file:///etc/passwd"])
def test_only_https_or_http_to_this_machine(tmp_path: Path, url: str) -> None:
    with pytest.raises(DownloadError, match="https://"):
        download_file(url, tmp_path, timeout=5)
    assert _names(tmp_path) == []


def test_a_plain_http_mirror_elsewhere_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, "http://mirror.example.invalid/swinir")
    with pytest.raises(DownloadError, match="refusing plain http:// to mirror.example.invalid"):
        download_file(UNPUBLISHED, tmp_path, timeout=5)
    assert _names(tmp_path) == []


def test_a_redirect_to_plain_http_elsewhere_is_refused(site: Site, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="redirects to http://example.invalid/x.pth"):
        download_file(f"{site.url}/redirect/http://example.invalid/x.pth", tmp_path, timeout=5)
    assert _names(tmp_path) == []


def test_a_redirect_never_leaves_https() -> None:
    handler = dl._SecureRedirects()
    request = urllib.request.Request("https://github.com/x.pth")
    with pytest.raises(DownloadError, match="leaves https"):
        handler.redirect_request(request, None, 302, "Found", {}, "http://127.0.0.1/x.pth")
    followed = handler.redirect_request(request, None, 302, "Found", {}, "https://objects.example.org/x.pth")
    assert followed.full_url == "https://objects.example.org/x.pth"


# ------------------------------------------------------------------------------------- no published digest


def test_size_cap_without_a_published_size(site: Site, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(dl, "UNPUBLISHED_SIZE_CAP", SIZE - 1)
    _publish(site, "big.pth")
    with pytest.raises(DownloadError, match="announces 300000 bytes, more than any official SwinIR file"):
        download_file(f"{site.url}/files/big.pth", tmp_path, timeout=10)
    with pytest.raises(DownloadError, match="sent more than 299999 bytes"):
        download_file(f"{site.url}/nolength/big.pth", tmp_path, timeout=10)
    assert _names(tmp_path) == []


def test_digest_recorded_at_first_download_and_checked_at_every_use(site: Site, tmp_path: Path, caplog) -> None:
    data, digest = _publish(site, UNPUBLISHED.file)
    with caplog.at_level(logging.WARNING, logger="swinir"):
        result = download_file(UNPUBLISHED, tmp_path, url=f"{site.url}/files/{UNPUBLISHED.file}", timeout=10)
    assert not result.verified and result.recorded and result.sha256 == digest
    target = tmp_path / UNPUBLISHED.file
    assert digest_record(target).read_text().split() == [digest, UNPUBLISHED.file]
    notices = [r.getMessage() for r in caplog.records if "no sha256 is published" in r.getMessage()]
    assert len(notices) == 1 and digest in notices[0], caplog.text
    caplog.clear()

    with caplog.at_level(logging.WARNING, logger="swinir"):
        assert verify_local(UNPUBLISHED, target) == target  # a later use: checked, no second notice
        again = download_file(UNPUBLISHED, tmp_path, url=f"{site.url}/files/{UNPUBLISHED.file}", timeout=10)
    assert again.skipped and again.recorded and site.hits[UNPUBLISHED.file] == 1
    assert "no sha256 is published" not in caplog.text

    target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit changed on disk
    with pytest.raises(DownloadError, match=f"differs from {digest}, recorded when it was first downloaded"):
        verify_local(UNPUBLISHED, target)
    # Downloading it again replaces the damaged file with the good one.
    fixed = download_file(UNPUBLISHED, tmp_path, url=f"{site.url}/files/{UNPUBLISHED.file}", timeout=10)
    assert not fixed.skipped and target.read_bytes() == data
    assert verify_local(UNPUBLISHED, target) == target


def test_a_file_put_there_by_hand_is_recorded_with_a_notice(tmp_path: Path, caplog) -> None:
    target = tmp_path / UNPUBLISHED.file
    target.write_bytes(b"weights put here by hand")
    with caplog.at_level(logging.WARNING, logger="swinir"):
        verify_local(UNPUBLISHED, target)
        verify_local(UNPUBLISHED, target)
    assert caplog.text.count("no sha256 is published") == 1
    assert digest_record(target).is_file()


def test_the_command_line_gives_the_notice_once(site: Site, tmp_path: Path) -> None:
    _, digest = _publish(site, UNPUBLISHED.file)
    env = dict(os.environ, **{MIRROR_ENV: f"{site.url}/files"})
    runs = [subprocess.run([sys.executable, "-m", "swinir", "download", UNPUBLISHED.name, "--dir", str(tmp_path)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=60) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert runs[0].stderr.count("no sha256 is published") == 1 and digest in runs[0].stderr
    assert "no sha256 is published" not in runs[1].stderr
    assert "already present" in runs[1].stdout


# ------------------------------------------------------------------------------------------------ litter


def _download_in_child(url: str, folder: Path, name: str) -> subprocess.Popen:
    code = ("import sys; from pathlib import Path; from swinir.download import download_file; "
            "print('ready', flush=True); "
            "r = download_file(sys.argv[1], Path(sys.argv[2]), timeout=60); print(r.skipped, flush=True)")
    return subprocess.Popen([sys.executable, "-c", code, url, str(folder)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_killed_download_is_swept_at_the_next_use(site: Site, tmp_path: Path) -> None:
    data, _ = _publish(site, "w.pth")
    child = _download_in_child(f"{site.url}/stall/w.pth", tmp_path, "w.pth")
    try:
        wait_for(lambda: site.stalled.is_set() and any(".part" in n for n in _names(tmp_path)),
                 "a partial download", child, timeout=60)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    partial = [n for n in _names(tmp_path) if ".part" in n]
    assert len(partial) == 1  # what the killed process left (its download reads in 1 MiB chunks: empty here)
    assert ".w.pth.lock" in _names(tmp_path)  # and the lock it held
    # The next use of the folder (another file's download, or a model load from it) removes it.
    _publish(site, "other.pth")
    download_file(f"{site.url}/files/other.pth", tmp_path, timeout=10)
    assert _names(tmp_path) == sorted(["other.pth", digest_record(tmp_path / "other.pth").name])


def test_two_processes_download_one_file_once(site: Site, tmp_path: Path) -> None:
    """The second process asks while the first is mid-transfer (the server holds it until the second is seen
    waiting on the folder's lock in /proc/locks): one request, one good file, both succeed."""
    if not Path("/proc/locks").is_file():
        pytest.skip("needs /proc/locks to see the second process wait")
    data, digest = _publish(site, "shared.pth")
    url = f"{site.url}/stall/shared.pth"
    first = _download_in_child(url, tmp_path, "shared.pth")
    second = None
    try:
        wait_for(site.stalled.is_set, "the first transfer", first, timeout=60)
        second = _download_in_child(url, tmp_path, "shared.pth")
        assert second.stdout.readline().strip() == "ready"

        def second_waits() -> bool:
            return any(line.split()[1] == "->" and str(second.pid) in line.split()
                       for line in Path("/proc/locks").read_text().splitlines() if len(line.split()) > 2)

        wait_for(second_waits, "the second process waiting on the lock", second, timeout=60)
        site.release.set()
        outs = [p.communicate(timeout=60) for p in (first, second)]
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    assert outs[0][0].split()[-1] == "False" and outs[1][0].split()[-1] == "True", outs
    assert site.hits["shared.pth"] == 1
    assert (tmp_path / "shared.pth").read_bytes() == data
    assert _names(tmp_path) == sorted(["shared.pth", digest_record(tmp_path / "shared.pth").name])
    assert digest_record(tmp_path / "shared.pth").read_text().split()[0] == digest


@pytest.fixture()
def small_disk(tmp_path: Path):
    with mounted_tmpfs(tmp_path / "disk", "size=128k") as folder:
        yield folder


def test_a_full_disk_says_so(site: Site, small_disk: Path) -> None:
    _publish(site, "w.pth")
    with pytest.raises(DownloadError) as caught:
        download_file(f"{site.url}/files/w.pth", small_disk, timeout=10)
    text = str(caught.value)
    assert "the disk is full" in text and str(small_disk) in text and "nothing was kept" in text, text
    assert "connection" not in text
    assert _names(small_disk) == []
