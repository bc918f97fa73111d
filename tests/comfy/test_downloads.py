"""Official models fetched by the loader on first use, from a local mirror ($SWINIR_MODEL_MIRROR) on 127.0.0.1.

Its own ComfyUI server (the mirror is read from the server's environment) with an empty models/swinir/: a good
file, a file whose bytes do not match the published digest, a cut connection, a missing file, Cancel during the
download, and two prompts that need the same file. models/swinir/ never holds a partial file.
"""

from __future__ import annotations

import http.server
import io
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from testkit.comfy_harness import (
    COMFY_DIR,
    _spandrel_swinir,
    engine,
    error_text,
    make_image,
    missing,
    p_load_image,
    p_loader,
    p_restore,
    p_save,
    quantise,
    start_server,
    to_tensor,
)

import swinir
from swinir.catalogue import find_entry
from swinir.download import digest_record
from testkit.http_server import serving

GOOD = "004_grayDN_DFWB_s128w8_SwinIR-M_noise15.pth"  # no published digest or size: any SwinIR file is good
TWICE = "006_CAR_DFWB_s126w7_SwinIR-M_jpeg30.pth"
BAD_DIGEST = "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x2.pth"  # published size and sha256
CUT = "004_grayDN_DFWB_s128w8_SwinIR-M_noise50.pth"
MISSING = "006_CAR_DFWB_s126w7_SwinIR-M_jpeg40.pth"
GATED = "006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg30.pth"  # no published size: the mirror's file is never loaded
GATE_FIRST = 3 << 20  # sent before the gate: more than one read chunk, so the download is truly under way


@dataclass
class Mirror:
    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    started: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)


def _handler(mirror: Mirror):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            name = self.path.lstrip("/")
            mirror.hits[name] = mirror.hits.get(name, 0) + 1
            data = mirror.files.get(name)
            if data is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                if name == CUT:
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                if name == GATED:
                    self.wfile.write(data[:GATE_FIRST])
                    self.wfile.flush()
                    mirror.started.set()
                    mirror.gate.wait(120)
                    self.wfile.write(data[GATE_FIRST:])
                    return
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (Cancel): what we want

    return Handler


def _official_pth(net) -> bytes:
    buf = io.BytesIO()
    torch.save({"params": net.state_dict()}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def mirror():
    m = Mirror()
    gray_dn = _spandrel_swinir(upscale=1, in_chans=1, img_size=128, window_size=8, img_range=1.0, upsampler="", seed=11)
    gray_car = _spandrel_swinir(upscale=1, in_chans=1, img_size=126, window_size=7, img_range=255.0, upsampler="",
                                seed=12)
    m.files[GOOD] = _official_pth(gray_dn)
    m.files[TWICE] = _official_pth(gray_car)
    m.files[CUT] = _official_pth(gray_dn)
    m.files[GATED] = _official_pth(gray_car) + os.urandom(2 * GATE_FIRST)  # big enough to gate; never loaded
    size = find_entry(BAD_DIGEST).size_bytes
    m.files[BAD_DIGEST] = os.urandom(size)  # the published size, other bytes
    with serving(_handler(m)) as m.url:
        try:
            yield m
        finally:
            m.gate.set()  # a gated transfer ends, so the server can shut down


@pytest.fixture(scope="module")
def server(mirror, tmp_path_factory):
    if not (COMFY_DIR / "main.py").is_file():
        missing(f"ComfyUI not installed at {COMFY_DIR}; run scripts/get-comfyui.sh")
    base = tmp_path_factory.mktemp("comfy_dl")
    try:
        # fresh: an empty models/ (so models/swinir/ starts empty); the mirror is read from the server's environment.
        srv = start_server(base, "server-downloads", fresh=True, env={"SWINIR_MODEL_MIRROR": mirror.url})
    except Exception as e:
        pytest.fail(str(e), pytrace=False)
    srv.put_input("dl.png", make_image(40, 52, seed=7))
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)


def swinir_dir(server) -> Path:
    return server.models_dir / "swinir"


def assert_clean(server) -> None:
    """Only complete model files in models/swinir/: no .part, no lock, no hidden leftovers but the digest recorded
    beside a file that has no published one."""
    folder = swinir_dir(server)
    names = {p.name for p in folder.iterdir()} if folder.exists() else set()
    records = {digest_record(folder / n).name for n in names if not n.startswith(".")}
    leftovers = [n for n in names if n.startswith(".") and n not in records]
    assert not leftovers, leftovers


def denoise_prompt(model: str, prefix: str, node: str = "SwinIRDenoise") -> dict:
    return {
        "1": p_load_image("dl.png"),
        "2": p_loader(model),
        "3": p_restore(node, ["2", 0], ["1", 0], strength=1.0),
        "4": p_save(["3", 0], prefix),
    }


def test_loader_offers_catalogue_files_not_on_disk(server):
    info = server.get("/object_info/SwinIRModelLoader").json()["SwinIRModelLoader"]
    spec = info["input"]["required"]["model_name"]
    options = spec[0] if isinstance(spec[0], list) else spec[1]["options"]
    catalogue = [e.file for e in swinir.catalogue.load_catalogue()]
    assert set(catalogue) <= set(options)
    assert options[0].startswith("(default) ")
    # Downloadable files are marked, with their size, in the tooltip.
    tooltip = spec[1]["tooltip"]
    entry = find_entry(BAD_DIGEST)
    assert f"{BAD_DIGEST} ({entry.size_bytes / 1e6:.0f} MB)" in tooltip
    assert "downloaded into models/swinir/" in tooltip


def test_first_use_downloads_then_runs(server, mirror):
    assert not (swinir_dir(server) / GOOD).exists()
    entry = server.run_ok(denoise_prompt(GOOD, "dl_good"))
    target = swinir_dir(server) / GOOD
    assert target.read_bytes() == mirror.files[GOOD]
    assert mirror.hits[GOOD] == 1
    # The downloaded file ran: same output as the engine on that file.
    expected = quantise(engine(target, to_tensor(make_image(40, 52, seed=7))))
    (out,) = server.output_images(entry, "4")
    assert abs(out.astype(int) - expected.astype(int)).max() <= 1
    assert_clean(server)
    # Now listed as a file on disk, and not fetched again.
    server.run_ok(denoise_prompt(GOOD, "dl_good2"))
    assert mirror.hits[GOOD] == 1


def test_two_prompts_download_once(server, mirror):
    first = server.queue(denoise_prompt(TWICE, "twice_a", "SwinIRJPEGCleanup"))
    second = server.queue(denoise_prompt(TWICE, "twice_b", "SwinIRJPEGCleanup"))
    for pid in (first, second):
        entry = server.wait(pid)
        assert entry["status"]["status_str"] == "success", error_text(entry)
    assert mirror.hits[TWICE] == 1
    assert_clean(server)


def test_digest_mismatch_deletes_and_says_so(server, mirror):
    entry = server.run(denoise_prompt(BAD_DIGEST, "bad", "SwinIRUpscale"))
    assert entry["status"]["status_str"] == "error"
    text = error_text(entry)
    assert "sha256 mismatch" in text and "deleted" in text, text
    assert not (swinir_dir(server) / BAD_DIGEST).exists()
    assert_clean(server)


def test_cut_connection_keeps_nothing(server):
    entry = server.run(denoise_prompt(CUT, "cut"))
    assert entry["status"]["status_str"] == "error"
    text = error_text(entry)
    assert "connection was cut" in text and "nothing was kept" in text, text
    assert not (swinir_dir(server) / CUT).exists()
    assert_clean(server)


def test_missing_file_names_url_and_folder(server, mirror):
    entry = server.run(denoise_prompt(MISSING, "missing", "SwinIRJPEGCleanup"))
    assert entry["status"]["status_str"] == "error"
    text = error_text(entry)
    assert f"{mirror.url}/{MISSING}" in text, text
    assert str(swinir_dir(server)) in text and "put it in" in text, text
    assert_clean(server)


def test_cancel_during_download(server, mirror):
    pid = server.queue(denoise_prompt(GATED, "gated", "SwinIRJPEGCleanup"))
    assert mirror.started.wait(120), "the download never started"
    # The download is under way (the mirror has sent more than one read chunk and waits at the gate).
    assert server.post("/interrupt").status_code == 200
    mirror.gate.set()
    entry = server.wait(pid, timeout=120)
    assert entry["status"]["status_str"] == "error"
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds, kinds
    assert not (swinir_dir(server) / GATED).exists()
    assert_clean(server)
    # The server goes on.
    server.run_ok(denoise_prompt(GOOD, "after_cancel"))


def test_models_folder_removed_while_the_server_runs(server, mirror):
    """ComfyUI's file-list cache stats every folder it listed; models/swinir/ removed under a running server must not
    make every prompt fail at validation: an official file is fetched again, and a folder put back is used."""
    folder = swinir_dir(server)
    server.run_ok(denoise_prompt(GOOD, "before_removal"))
    server.run_ok(denoise_prompt(GOOD, "before_removal_on_disk"))  # now fingerprinted as the file on disk
    assert (folder / GOOD).is_file()
    # The loader's list, read while the folder exists: ComfyUI's cache now holds the folder's mtime.
    assert GOOD in str(server.get("/object_info/SwinIRModelLoader").json())
    hits = mirror.hits[GOOD]
    shutil.rmtree(folder)
    entry = server.run(denoise_prompt(GOOD, "after_removal"))
    assert entry["status"]["status_str"] == "success", error_text(entry)
    assert mirror.hits[GOOD] == hits + 1 and (folder / GOOD).read_bytes() == mirror.files[GOOD]
    assert_clean(server)
    # Removed again, then put back with a file of the user's own: the next prompt finds it.
    shutil.rmtree(folder)
    r = server.post("/prompt", json={"prompt": denoise_prompt("mine.pth", "mine_missing")})
    if r.status_code == 200:
        entry = server.wait(r.json()["prompt_id"])
        assert entry["status"]["status_str"] == "error"
        assert "mine.pth" in error_text(entry)
    else:
        assert "mine.pth" in r.text and "Exception when validating" not in r.text, r.text
    folder.mkdir()
    (folder / "mine.pth").write_bytes(mirror.files[GOOD])
    server.run_ok(denoise_prompt("mine.pth", "mine_back"))


def test_only_catalogue_urls(server, mirror):
    """A model name that is a URL or a path outside the catalogue is refused before any request."""
    before = dict(mirror.hits)
    for name in (f"{mirror.url}/{GOOD}", "../../evil.pth", "http://example.invalid/x.pth"):
        r = server.post("/prompt", json={"prompt": denoise_prompt(name, "evil")})
        if r.status_code == 200:
            entry = server.wait(r.json()["prompt_id"])
            assert entry["status"]["status_str"] == "error"
    assert mirror.hits == before


def test_caches_emptied_when_comfyui_unloads_models(server):
    """The core's tensor caches live in the server process; POST /free (the Unload Models button) empties them."""
    server.run_ok(denoise_prompt(GOOD, "cache_fill"))
    held = server.get("/swinir/cache").json()["bytes"]
    assert held.get("cpu", 0) > 0, held
    assert server.post("/free", json={"unload_models": True, "free_memory": True}).status_code == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # /free is carried out by the prompt worker between prompts
        if not server.get("/swinir/cache").json()["bytes"]:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"caches still hold {server.get('/swinir/cache').json()} after POST /free")
