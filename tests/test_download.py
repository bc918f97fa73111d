"""The downloader against a real local HTTP server: good, corrupt, cut and missing files."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from swinir.catalogue import find_entry
from swinir.cli.download import register, run
from swinir.download import (MIRROR_ENV, UNPUBLISHED_SIZE_CAP, catalogue_url, default_models_dir, digest_record,
                             download, download_file, sweep_partial_downloads, verify_local)
from swinir.errors import Cancelled, DownloadError, SwinIRError
from testkit.http_server import serving

REPO = Path(__file__).resolve().parents[1]
PAYLOAD_BYTES = 300_000  # spans many TCP segments, so "cut halfway" is a real mid-stream cut


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    hits: dict[str, int] = {}

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        kind, _, name = self.path.lstrip("/").partition("/")
        self.hits[name] = self.hits.get(name, 0) + 1
        data = self.files.get(name)
        if kind == "missing" or data is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if kind == "cut":
            # Promise everything, deliver half, hang up: what a dropped connection looks like.
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}
    handler = type("Handler", (_Handler,), {"files": files, "hits": {}})
    _Handler.last_hits = handler.hits
    with serving(handler) as url:
        yield url, files


@pytest.fixture()
def payload(server: tuple[str, dict[str, bytes]], request: pytest.FixtureRequest) -> tuple[str, bytes, str]:
    """A fresh random file on the server: (name, bytes, sha256)."""
    _, files = server
    name = f"{request.node.name.replace('[', '_').replace(']', '')}.pth"
    data = os.urandom(PAYLOAD_BYTES)
    files[name] = data
    return name, data, hashlib.sha256(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_download_verified(server, payload, tmp_path: Path) -> None:
    base, _ = server
    name, data, digest = payload
    seen: list[tuple[int, int | None]] = []
    path = download(f"{base}/files/{name}", tmp_path, expected_sha256=digest,
                    progress=lambda done, total: seen.append((done, total)), timeout=10)
    assert path == tmp_path / name
    assert path.read_bytes() == data
    assert _leftovers(tmp_path) == [name]  # no .part file left
    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))


def test_unknown_digest_is_reported_not_verified(server, payload, tmp_path: Path) -> None:
    base, _ = server
    name, data, digest = payload
    result = download_file(f"{base}/files/{name}", tmp_path, timeout=10)
    assert result.verified is False and result.skipped is False
    assert result.sha256 == digest
    assert result.path.read_bytes() == data


def test_wrong_digest_leaves_nothing(server, payload, tmp_path: Path) -> None:
    base, _ = server
    name, _, digest = payload
    wrong = "0" * 64
    with pytest.raises(DownloadError) as caught:
        download(f"{base}/files/{name}", tmp_path, expected_sha256=wrong, timeout=10)
    message = str(caught.value)
    assert wrong in message and digest in message and name in message and base in message
    assert _leftovers(tmp_path) == []


def test_cut_connection_leaves_nothing(server, payload, tmp_path: Path) -> None:
    base, _ = server
    name, data, digest = payload
    with pytest.raises(DownloadError) as caught:
        download(f"{base}/cut/{name}", tmp_path, expected_sha256=digest, timeout=10)
    message = str(caught.value)
    assert "cut" in message and name in message and f"{base}/cut/{name}" in message
    assert f"{len(data) // 2} of {len(data)}" in message
    assert _leftovers(tmp_path) == []


def test_cut_connection_without_digest_still_fails(server, payload, tmp_path: Path) -> None:
    # Without a digest the announced length is the only guard against a truncated file.
    base, _ = server
    name, _, _ = payload
    with pytest.raises(DownloadError, match="cut"):
        download(f"{base}/cut/{name}", tmp_path, timeout=10)
    assert _leftovers(tmp_path) == []


def test_http_404(server, tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(DownloadError) as caught:
        download(f"{base}/missing/nothing.pth", tmp_path, timeout=10)
    message = str(caught.value)
    assert "HTTP 404" in message and "nothing.pth" in message and base in message
    assert _leftovers(tmp_path) == []


def test_existing_good_file_is_not_downloaded_again(server, payload, tmp_path: Path) -> None:
    base, files = server
    name, data, digest = payload
    (tmp_path / name).write_bytes(data)
    # The server no longer has it, so any request would fail.
    del files[name]
    result = download_file(f"{base}/files/{name}", tmp_path, expected_sha256=digest, timeout=10)
    assert result.skipped and result.verified
    assert (tmp_path / name).read_bytes() == data


def test_existing_bad_file_is_replaced(server, payload, tmp_path: Path) -> None:
    base, _ = server
    name, data, digest = payload
    (tmp_path / name).write_bytes(b"truncated")
    result = download_file(f"{base}/files/{name}", tmp_path, expected_sha256=digest, timeout=10)
    assert not result.skipped and result.verified
    assert (tmp_path / name).read_bytes() == data
    assert _leftovers(tmp_path) == [name]


def test_failed_download_keeps_existing_file(server, payload, tmp_path: Path) -> None:
    # The old file is only replaced by a verified new one, never deleted by a failure.
    base, _ = server
    name, _, digest = payload
    (tmp_path / name).write_bytes(b"old")
    with pytest.raises(DownloadError):
        download(f"{base}/cut/{name}", tmp_path, expected_sha256=digest, timeout=10)
    assert (tmp_path / name).read_bytes() == b"old"
    assert _leftovers(tmp_path) == [name]


def test_catalogue_entry_with_mirror_url_checks_size(server, payload, tmp_path: Path) -> None:
    base, _ = server
    name, data, _ = payload
    entry = dataclasses.replace(find_entry("gray-denoise-M-noise15"), size_bytes=len(data) + 1, sha256=None)
    with pytest.raises(DownloadError, match="catalogue expects"):
        download_file(entry, tmp_path, url=f"{base}/files/{name}", timeout=10)
    assert _leftovers(tmp_path) == []


def test_mirror_url_keeps_catalogue_file_name_and_digest(server, payload, tmp_path: Path) -> None:
    base, _ = server
    name, data, digest = payload
    entry = dataclasses.replace(find_entry("lightweight-S-x2"), size_bytes=len(data), sha256=digest)
    result = download_file(entry, tmp_path, url=f"{base}/files/{name}", timeout=10)
    assert result.verified and result.path == tmp_path / entry.file
    assert result.path.read_bytes() == data


def test_conflicting_digests_refused(tmp_path: Path) -> None:
    entry = find_entry("classical-M-x2-DF2K")
    with pytest.raises(DownloadError, match="differs from the catalogue"):
        download(entry, tmp_path, expected_sha256="1" * 64)


def test_unsafe_inputs_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="http"):
        download("file:///etc/passwd", tmp_path)
    with pytest.raises(DownloadError, match="safe file name"):
        download("http://127.0.0.1:9/a/..", tmp_path)
    with pytest.raises(DownloadError, match="not a sha256"):
        download("http://127.0.0.1:9/x.pth", tmp_path, expected_sha256="abc")
    assert isinstance(DownloadError("x"), SwinIRError)


def test_mirror_environment_variable(server, payload, tmp_path: Path, monkeypatch) -> None:
    """$SWINIR_MODEL_MIRROR replaces the catalogue's base URL; the file keeps its official name and checks."""
    base, files = server
    name, data, digest = payload
    entry = dataclasses.replace(find_entry("lightweight-S-x2"), size_bytes=len(data), sha256=digest)
    files[entry.file] = data
    assert catalogue_url(entry) == entry.url  # no mirror: the official release
    monkeypatch.setenv(MIRROR_ENV, f"{base}/files/")
    assert catalogue_url(entry) == f"{base}/files/{entry.file}"
    result = download_file(entry, tmp_path, timeout=10)
    assert result.verified and result.path.read_bytes() == data


def test_cancel_keeps_nothing(server, payload, tmp_path: Path) -> None:
    base, _ = server
    name, _, _ = payload
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 1  # let the transfer start, then stop it

    with pytest.raises(Cancelled, match="nothing was kept"):
        download_file(f"{base}/files/{name}", tmp_path, cancel=cancel, timeout=10)
    assert _leftovers(tmp_path) == []


def test_concurrent_downloads_fetch_once(server, payload, tmp_path: Path) -> None:
    """Threads asking for one file at once: one transfer, the others wait and find it in place."""
    base, _ = server
    name, data, digest = payload
    hits = _Handler.last_hits
    hits.pop(name, None)
    barrier = threading.Barrier(4)
    results, errors = [], []

    def fetch() -> None:
        barrier.wait()
        try:
            results.append(download_file(f"{base}/files/{name}", tmp_path, expected_sha256=digest, timeout=10))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert hits[name] == 1
    assert sorted(r.skipped for r in results) == [False, True, True, True]
    assert _leftovers(tmp_path) == [name]


def test_unreachable_names_url_and_folder(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.pth"
    with pytest.raises(DownloadError) as caught:
        download(url, tmp_path, timeout=5)
    message = str(caught.value)
    assert url in message and str(tmp_path) in message and "put it in" in message
    assert _leftovers(tmp_path) == []


def test_default_models_dir(tmp_path: Path) -> None:
    inside = tmp_path / "ComfyUI" / "custom_nodes" / "ComfyUI-SwinIR" / "swinir" / "download.py"
    assert default_models_dir(inside) == tmp_path / "ComfyUI" / "models" / "swinir"
    outside = tmp_path / "src" / "ComfyUI-SwinIR" / "swinir" / "download.py"
    assert default_models_dir(outside) is None


# --- the CLI -------------------------------------------------------------------------------


def _cli_via_subprocess() -> bool:
    """The lead's ``python -m swinir`` entry point, once it exists; else ``run()`` directly."""
    return (REPO / "swinir" / "cli" / "__init__.py").is_file() and (REPO / "swinir" / "__main__.py").is_file()


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    if _cli_via_subprocess():
        proc = subprocess.run([sys.executable, "-m", "swinir", *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stdout, proc.stderr
    parser = argparse.ArgumentParser(prog="swinir")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.func is run
    code = run(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_download_unknown_digest(server, payload, tmp_path: Path, capsys) -> None:
    base, _ = server
    name, data, digest = payload
    entry = find_entry("gray-denoise-M-noise25")
    assert entry.sha256 is None and entry.size_bytes is None  # precondition of this test
    code, out, err = _run_cli(["download", entry.name, "--url", f"{base}/files/{name}",
                               "--dir", str(tmp_path)], capsys)
    assert code == 0, err
    assert (tmp_path / entry.file).read_bytes() == data
    assert digest in out and "NOT verified" in out
    assert "100%" in err
    # No published digest: the first download's is recorded beside the file, for every later use to check.
    assert _leftovers(tmp_path) == sorted([entry.file, digest_record(tmp_path / entry.file).name])
    assert digest_record(tmp_path / entry.file).read_text().split()[0] == digest


def test_cli_size_mismatch_is_one_line(server, payload, tmp_path: Path, capsys) -> None:
    base, _ = server
    name, _, _ = payload
    entry = find_entry("classical-M-x2-DF2K")
    assert entry.size_bytes is not None
    # A mirror serving some other file: the catalogue's known size already rejects it.
    code, _, err = _run_cli(["download", entry.name, "--url", f"{base}/files/{name}", "--dir", str(tmp_path)],
                            capsys)
    assert code == 1
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("swinir download: error:")
    assert "catalogue expects" in last and entry.file in last
    assert _leftovers(tmp_path) == []


def test_cli_sha256_option_mismatch(server, payload, tmp_path: Path, capsys) -> None:
    base, _ = server
    name, _, digest = payload
    wrong = "f" * 64
    code, _, err = _run_cli(["download", "gray-jpeg-M-q20", "--sha256", wrong, "--url", f"{base}/files/{name}",
                             "--dir", str(tmp_path)], capsys)
    assert code == 1 and "Traceback" not in err
    assert wrong in err and digest in err
    assert _leftovers(tmp_path) == []


def test_cli_404_and_unknown_name(server, tmp_path: Path, capsys) -> None:
    base, _ = server
    code, _, err = _run_cli(["download", "gray-jpeg-M-q30", "--url", f"{base}/missing/x.pth",
                             "--dir", str(tmp_path)], capsys)
    assert code == 1 and "HTTP 404" in err and "Traceback" not in err
    code, _, err = _run_cli(["download", "clasical-M-x2-DF2K", "--dir", str(tmp_path)], capsys)
    assert code == 1 and "classical-M-x2-DF2K" in err and "Traceback" not in err
    assert _leftovers(tmp_path) == []


def test_cli_list(capsys) -> None:
    code, out, _ = _run_cli(["download", "--list"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["NAME", "TASK"]
    assert len(lines) == 31
    assert any(line.startswith("real-L-x4-GAN") and "known" in line for line in lines)


def test_cli_without_dir_outside_comfyui(capsys) -> None:
    if default_models_dir() is not None:
        pytest.skip("this checkout sits inside ComfyUI/custom_nodes, so a default folder exists")
    code, _, err = _run_cli(["download", "lightweight-S-x2"], capsys)
    assert code == 1 and "--dir" in err and "Traceback" not in err


def test_cli_restore_fetches_an_official_model_on_first_use(server, tmp_path: Path) -> None:
    """`restore --model <official name>` downloads it into --models-dir (from $SWINIR_MODEL_MIRROR here) and runs."""
    import numpy as np
    import torch
    from PIL import Image

    import swinir

    base, files = server
    entry = find_entry("gray-denoise-M-noise15")  # no published size or digest: any SwinIR file of that name
    torch.manual_seed(0)
    net = swinir.SwinIR(swinir.SwinIRConfig(task="gray_denoise", scale=1, in_chans=1, upsampler="", embed_dim=8,
                                            depths=(1,), num_heads=(2,)))
    buf = io.BytesIO()
    torch.save({"params": net.state_dict()}, buf)
    files[entry.file] = buf.getvalue()
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(image)
    models = tmp_path / "models"
    env = dict(os.environ, SWINIR_MODEL_MIRROR=f"{base}/files", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "swinir", "restore", str(image), "-o", str(tmp_path / "out.png"),
                           "--model", entry.name, "--models-dir", str(models)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (models / entry.file).read_bytes() == files[entry.file]
    assert _leftovers(models) == sorted([entry.file, digest_record(models / entry.file).name])
    assert "no sha256 is published" in proc.stderr and proc.stderr.count("no sha256 is published") == 1
    assert Image.open(tmp_path / "out.png").size == (24, 20)
