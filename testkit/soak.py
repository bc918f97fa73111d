"""A soak of the real ComfyUI server (issue 14, part 2): many random prompts, their outcomes, its memory, leftovers.

Used by tests/comfy/test_soak.py (a light run in CI) and bench/bench_soak.py (the full one). Every prompt is
one of: super-resolution, denoising or JPEG cleanup of a crop of random size (1 px up to `max_side`), a batch of
1-3, tiled or whole, fp32 or bf16 (with `scale_by` or `strength`); a prompt giving a model to the node of another
task; or a prompt interrupted (POST /interrupt for that prompt) once its restore node has reported a tile done.
Each must end as it should: outputs of the right count and size, the clear wrong-task message, or an
interruption. The server's resident memory is read after a warm-up of the same mix and after the soak, each time
after the same small probe prompt (so ComfyUI's cache of the last prompt's outputs holds the same thing).
"""

from __future__ import annotations

import collections
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from testkit.comfy_harness import (
    DENOISE_NAME,
    JPEG_NAME,
    PACK_DIR,
    ComfyEvents,
    ComfyServer,
    make_image,
    p_crop,
    p_load_image,
    p_loader,
    p_repeat,
    p_restore,
    p_save,
    process_rss,
)

NODE_OF = {"sr": "SwinIRUpscale", "denoise": "SwinIRDenoise", "jpeg": "SwinIRJPEGCleanup"}
# The node names the wrong-task message sends the user to (swinir.describe.NODE_FOR_FAMILY).
NODE_TITLE = {"sr": "SwinIR Upscale", "denoise": "SwinIR Denoise", "jpeg": "SwinIR JPEG Cleanup"}
# Shares of the mix, per 20 prompts.
MIX = {"sr": 6, "denoise": 4, "jpeg": 4, "wrong-task": 3, "interrupt": 3}
SOURCES = 2  # source pictures the crops come from
RESTORE_ID, SAVE_ID = "5", "6"
# File names that only a temporary file has: atomic_target's ".<name>.<random>.<host>@<pid>.part", tempfile's
# "tmp*", editors' and downloaders' leftovers.
TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".download", "~")
SKIP_DIRS = {".git", ".venv", ".comfyui", "__pycache__", "node_modules", ".cache", "out", ".pytest_cache"}


@dataclass(frozen=True)
class SoakConfig:
    prompts: int
    warmup: int
    max_side: int
    sr_model: str  # the loader's entry for super-resolution (x2)
    interrupt_model: str  # a model slow enough that a run of interrupt_side px in 32 px tiles takes seconds
    interrupt_side: int = 160
    seed: int = 0
    timeout: float = 900.0  # seconds for one prompt
    max_minutes: float | None = None  # stop queueing soak prompts after this long (the bench's time limit)


@dataclass
class Planned:
    """One prompt of the mix and what it must end as."""

    kind: str  # sr | denoise | jpeg | wrong-task | interrupt
    prompt: dict
    size: tuple[int, int]  # input crop (height, width)
    batch: int
    out_size: tuple[int, int] | None  # (height, width) of each output image, for prompts that must succeed
    right_node: str | None = None  # for wrong-task: the node the message must name
    tiled: bool = False


@dataclass
class SoakReport:
    prompts: int = 0
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    rss_start: int = 0
    rss_warm: int = 0
    rss_after: int = 0
    temp_files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    largest: int = 0  # largest input side drawn
    pixels: int = 0  # input pixels restored by the prompts that succeeded
    seconds_by_kind: collections.Counter = field(default_factory=collections.Counter)

    @property
    def growth(self) -> float:
        return self.rss_after / self.rss_warm - 1 if self.rss_warm else float("nan")

    def text(self) -> str:
        mib = lambda b: f"{b / 2**20:.0f} MiB"  # noqa: E731
        lines = [
            f"soak: {self.prompts} prompts in {self.seconds:.0f} s (sides 1..{self.largest} px drawn, "
            f"{self.pixels / 1e6:.1f} Mpx restored)",
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
            "seconds by kind: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(self.seconds_by_kind.items())),
            f"failures: {len(self.failures)}" + "".join(f"\n  {f}" for f in self.failures[:20]),
            f"server RSS: {mib(self.rss_start)} at start, {mib(self.rss_warm)} after the warm-up, "
            f"{mib(self.rss_after)} after the soak ({self.growth:+.1%})",
            f"temporary files left: {len(self.temp_files)}" + "".join(f"\n  {t}" for t in self.temp_files[:20]),
        ]
        return "\n".join(lines)


def put_sources(comfy: ComfyServer, side: int) -> list[str]:
    names = []
    for i in range(SOURCES):
        names.append(comfy.put_input(f"soak_source_{i}_{side}.png", make_image(side, side, seed=100 + i)))
    return names


def _tile(rng: random.Random, h: int, w: int) -> int:
    """0 (automatic: whole image here) or a tile size that needs at most ~36 tiles."""
    if rng.random() < 0.5:
        return 0
    low = max(16, -(-max(h, w) // 6 // 8) * 8)
    return rng.randrange(low, max(low, 256) + 1, 8)


def plan(rng: random.Random, kind: str, cfg: SoakConfig, sources: list[str], tag: str,
         size: tuple[int, int] | None = None) -> Planned:
    side = cfg.interrupt_side if kind == "interrupt" else cfg.max_side
    h, w = size or (rng.randint(1, side), rng.randint(1, side))
    if kind == "interrupt":
        h = w = cfg.interrupt_side
    batch = rng.choice((1, 1, 1, 2, 3)) if kind != "interrupt" else 1
    if h * w * batch > cfg.max_side**2:
        batch = 1
    source_side = max(cfg.max_side, cfg.interrupt_side)
    prompt = {
        "1": p_load_image(rng.choice(sources)),
        "2": p_crop(["1", 0], w, h, rng.randint(0, source_side - w), rng.randint(0, source_side - h)),
    }
    image = ["2", 0]
    if batch > 1:
        prompt["3"] = p_repeat(["2", 0], batch)
        image = ["3", 0]
    family, right = kind, None
    model = {"sr": cfg.sr_model, "denoise": DENOISE_NAME, "jpeg": JPEG_NAME}.get(kind)
    if kind == "wrong-task":
        family, actual = rng.sample(list(NODE_OF), 2)
        model = {"sr": cfg.sr_model, "denoise": DENOISE_NAME, "jpeg": JPEG_NAME}[actual]
        right = NODE_TITLE[actual]
    if kind == "interrupt":
        family, model = "sr", cfg.interrupt_model
    tile = 32 if kind == "interrupt" else _tile(rng, h, w)
    extra = {}
    out_size = (h, w)
    if family == "sr":
        scale_by = 0.0 if kind == "interrupt" else rng.choice((0.0, 0.0, 0.0, 1.5, 0.5))
        if scale_by:
            extra["scale_by"] = scale_by
            out_size = (max(1, round(h * scale_by)), max(1, round(w * scale_by)))
        else:
            out_size = (2 * h, 2 * w)  # every SR model of the mix is x2
    else:
        extra["strength"] = rng.choice((1.0, 1.0, 0.5, 0.0))
    prompt["4"] = p_loader(model)
    interrupt = kind == "interrupt"
    prompt[RESTORE_ID] = p_restore(
        NODE_OF[family], ["4", 0], image, tile_size=tile, overlap=8 if interrupt else rng.choice((0, 8, 16, 32)),
        precision="fp32" if interrupt else rng.choice(("fp32", "bf16")), **extra,
    )
    prompt[SAVE_ID] = p_save([RESTORE_ID, 0], f"soak/{tag}")
    return Planned(kind, prompt, (h, w), batch, None if kind in ("wrong-task", "interrupt") else out_size, right,
                   tiled=tile > 0)


def run_planned(comfy: ComfyServer, events: ComfyEvents, p: Planned, timeout: float) -> tuple[str, str | None]:
    """(outcome, failure description or None), once the prompt has ended; its output files are removed."""
    from PIL import Image

    pid = events.queue(p.prompt)
    end = None
    if p.kind == "interrupt":
        # The restore node's first tile is done, and many remain: interrupt this prompt (not whatever runs next).
        msg = events.wait_for(lambda m: m.get("data", {}).get("prompt_id") == pid and (
            m.get("type") in events.END or (m.get("type") == "progress" and m["data"].get("node") == RESTORE_ID)),
            timeout)
        if msg["type"] == "progress":
            left = msg["data"]["max"] - msg["data"]["value"]
            r = comfy.post("/interrupt", json={"prompt_id": pid})
            assert r.status_code == 200, r.text
        else:
            end, left = msg, None
    end = end or events.wait_end(pid, timeout)
    kind, data = end["type"], end["data"]
    entry = comfy.wait(pid, timeout)  # the history entry is written just after the end message is sent
    files = [comfy.output_dir / img.get("subfolder", "") / img["filename"]
             for out in entry.get("outputs", {}).values() for img in out.get("images", [])]
    try:
        if p.kind == "interrupt":
            if kind != "execution_interrupted":
                return "FAIL", f"interrupt with {left} tiles left ended as {kind}: {data}"
            if files:
                return "FAIL", f"interrupted prompt wrote {len(files)} images"
            return "interrupted", None
        if p.kind == "wrong-task":
            text = str(data.get("exception_message", ""))
            if kind != "execution_error" or f"Use the '{p.right_node}' node" not in text:
                return "FAIL", f"wrong-task prompt ended as {kind}: {data.get('exception_type')}: {text[:300]}"
            return "wrong-task (clear message)", None
        if kind != "execution_success":
            return "FAIL", (f"{p.kind} {p.size} x{p.batch} ended as {kind}: {data.get('exception_type')}: "
                            f"{str(data.get('exception_message', ''))[:300]}")
        sizes = []
        for path in files:
            with Image.open(path) as im:
                sizes.append((im.height, im.width))
        if sizes != [p.out_size] * p.batch:
            return "FAIL", f"{p.kind} {p.size} x{p.batch}: outputs {sizes}, expected {p.batch} of {p.out_size}"
        return f"{p.kind} ok", None
    finally:
        for path in files:
            path.unlink(missing_ok=True)


def leftover_temp_files(roots: list[Path], since: float, anything_in: list[Path] = ()) -> list[str]:
    """Temporary-looking files under `roots` modified since `since`, and any file at all in `anything_in`."""
    found = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
            for name in files:
                path = Path(folder) / name
                looks_temporary = name.endswith(TEMP_SUFFIXES) or name.startswith(("tmp", ".~"))
                try:
                    recent = path.lstat().st_mtime >= since
                except OSError:
                    continue
                if looks_temporary and recent:
                    found.append(str(path))
    for folder in anything_in:
        if folder.is_dir():
            found += [str(p) for p in folder.rglob("*") if p.is_file()]
    return sorted(set(found))


def _schedule(rng: random.Random, n: int) -> list[str]:
    """n kinds in MIX's proportions, every kind first once (so a short run has them all), the rest shuffled."""
    kinds = [k for k, count in MIX.items() for _ in range(count)] * (n // sum(MIX.values()) + 1)
    rng.shuffle(kinds)
    return (list(MIX) + kinds)[:n]


def run_soak(comfy: ComfyServer, cfg: SoakConfig, log=lambda line: None) -> SoakReport:
    report = SoakReport()
    rng = random.Random(cfg.seed)
    sources = put_sources(comfy, max(cfg.max_side, cfg.interrupt_side))
    started = time.time()
    report.rss_start = process_rss(comfy.proc.pid)
    events = ComfyEvents(comfy)
    probe_rng = random.Random(-1)
    probe = plan(probe_rng, "sr", cfg, sources, "probe", size=(16, 16))

    def run(p: Planned, counted: bool) -> None:
        t = time.monotonic()
        outcome, failure = run_planned(comfy, events, p, cfg.timeout)
        if counted:
            report.seconds_by_kind[p.kind] += time.monotonic() - t
            report.prompts += 1
            report.outcomes[outcome] += 1
            report.largest = max(report.largest, *p.size)
            if failure:
                report.failures.append(failure)
            elif p.out_size:
                report.pixels += p.size[0] * p.size[1] * p.batch
        elif failure:
            report.failures.append("warm-up: " + failure)

    try:
        # The warm-up: the same mix, starting with the largest size of each task (the allocator's high-water mark).
        warm = [plan(rng, k, cfg, sources, f"w{i}", size=(cfg.max_side, cfg.max_side))
                for i, k in enumerate(("sr", "denoise", "jpeg"))]
        warm += [plan(rng, k, cfg, sources, f"w{i + 3}") for i, k in enumerate(_schedule(rng, max(0, cfg.warmup - 3)))]
        for p in warm:
            run(p, counted=False)
        run(probe, counted=False)
        report.rss_warm = process_rss(comfy.proc.pid)
        log(f"warm-up done: {len(warm)} prompts, server RSS {report.rss_warm / 2**20:.0f} MiB")
        t0 = time.monotonic()
        for i, kind in enumerate(_schedule(rng, cfg.prompts)):
            if cfg.max_minutes is not None and time.monotonic() - t0 > cfg.max_minutes * 60:
                log(f"time limit reached after {i} prompts")
                break
            run(plan(rng, kind, cfg, sources, f"s{i}"), counted=True)
            if (i + 1) % 10 == 0:
                log(f"{i + 1} prompts, {len(report.failures)} failures, RSS "
                    f"{process_rss(comfy.proc.pid) / 2**20:.0f} MiB, {time.monotonic() - t0:.0f} s")
        run(probe, counted=False)
        report.rss_after = process_rss(comfy.proc.pid)
    finally:
        events.close()
        report.seconds = time.time() - started
    report.temp_files = leftover_temp_files(
        [comfy.models_dir, comfy.base / "extra_models", comfy.output_dir, comfy.input_dir, PACK_DIR], started,
        anything_in=[comfy.base / "temp"],
    )
    return report
