"""The fuzzer's worker process and its driver (issue 14, part 3); the cases come from testkit/fuzz_mutations.py.

Cases run in a worker process, one at a time with a deadline and under an address-space limit: a hang is a
timeout, an attempted large allocation fails inside the limit and is reported, a crash is the worker's death, and
each case's peak memory (VmHWM, reset before it) and the canaries' marker file and flag are checked after it.
"""

from __future__ import annotations

import json
import os
import random
import resource
import selectors
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from testkit.fuzz_mutations import (
    CANARY_FLAG,
    SEED_FORMATS,
    canary_code,
    claimed_elements,
    image_spec,
    make_seeds,
    mutate,
    mutate_weights,
    seed_weights,
    tiny_models,
)
from testkit.data import ROOT
from testkit.pack import pack_module

CASE_TIMEOUT = 30.0  # seconds; every case takes well under one, so only a hang reaches this
ADDRESS_SPACE_HEADROOM = 3 << 30  # bytes of address space a case may add to the warmed-up worker
CHECKPOINT_GROWTH_LIMIT = 96 << 20  # peak RSS a checkpoint case may add, plus 4x its file (the seeds are ~40 kB)
# Valid images up to this many pixels (all of a batch) are restored and checked; larger ones only when refused.
RUN_PIXELS = 320 * 320 * 2
IMAGE_GROWTH_LIMIT = 256 << 20  # peak RSS an image case may add (at most RUN_PIXELS through a tiny model)

# ------------------------------------------------------------------------------------------------ the worker side


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


CHECKPOINT_KINDS = (  # message phrase -> outcome kind; first match wins
    ("the file is empty", "empty file"),
    ("not a checkpoint (neither", "not a checkpoint"),
    ("could run code", "refused pickle (code)"),
    ("is compressed", "refused compressed zip"),
    ("truncated safetensors", "truncated safetensors"),
    ("tensors claim", "refused oversized claim"),
    ("corrupt safetensors header", "corrupt safetensors header"),
    ("corrupt safetensors file", "corrupt safetensors data"),
    ("corrupt or truncated PyTorch", "corrupt torch file"),
    ("truncated PyTorch", "corrupt torch file"),
    ("corrupt PyTorch", "corrupt torch file"),
    ("is not a SwinIR checkpoint", "not SwinIR weights"),
    ("not a plain state dict", "not a state dict"),
    ("not a state dict", "not a state dict"),
    ("dense floating", "not float weights"),
    ("metadata", "bad metadata"),
    ("do not form a SwinIR", "inconsistent shapes"),
    ("does not match the SwinIR layout", "layout mismatch"),
    ("do not fit the SwinIR layout", "layout mismatch"),
    ("input channels", "layout mismatch"),
    ("absolute position", "layout mismatch"),
)


def classify_checkpoint_error(message: str) -> str:
    if any(phrase in message for phrase in ("can't allocate", "tried to allocate", "Cannot allocate")):
        return "FAIL attempted allocation"  # the loader tried what the address-space limit refused
    return next((kind for phrase, kind in CHECKPOINT_KINDS if phrase in message), "other CheckpointError")


def _run_checkpoint(path: str) -> dict:
    import swinir

    try:
        model = swinir.load_model(path)
        return {"kind": "loaded", "task": model.config.task}
    except swinir.CheckpointError as e:
        return {"kind": classify_checkpoint_error(str(e)), "message": str(e)[:500]}


def _realize(spec: dict):
    """The input a spec describes; huge shapes are stride-0 views, which hold one element whatever they claim."""
    import numpy as np
    import torch

    if spec["container"] == "none":
        return None
    shape = spec["shape"]
    dtype = getattr(torch, spec["dtype"])
    g = torch.Generator().manual_seed(spec["seed"])
    layout = spec["layout"]
    if claimed_elements(shape) > (1 << 22) or max(shape, default=0) > (1 << 16):
        layout = "expanded"
    base_shape = [1] * len(shape) if layout == "expanded" else list(shape)
    if layout == "sliced":
        base_shape = [2 * s for s in shape]
    x = torch.rand(base_shape, generator=g)
    special = spec["special"]
    if x.numel():
        flat = x.view(-1)
        # The first element survives slicing and expansion; elsewhere any element will do.
        at = 0 if layout in ("sliced", "expanded") else int(torch.randint(flat.numel(), (1,), generator=g))
        if special in ("nan", "inf", "-inf"):
            flat[at] = float(special)
        elif special == "out_of_range":
            x.mul_(8).sub_(3)
    if dtype.is_floating_point or dtype.is_complex:
        x = x.to(dtype)
    elif dtype == torch.bool:
        x = x > 0.5
    else:
        x = (x * 255).clamp(0, 255).to(dtype)
    if layout == "expanded":
        x = x.expand(shape)
    elif layout == "sliced":
        x = x[tuple(slice(None, None, 2) for _ in shape)]
    elif layout == "channels_last" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed" and x.dim() >= 2:
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif layout == "sparse":
        try:
            x = x.to_sparse()
        except (RuntimeError, TypeError, NotImplementedError):
            pass
    elif layout == "meta":
        x = torch.empty(shape, dtype=dtype, device="meta")
    if spec["requires_grad"] and x.dtype.is_floating_point and x.layout == torch.strided and not x.is_meta:
        x = x.detach().requires_grad_(True)
    if spec["container"] == "numpy":
        return np.zeros([min(s, 4) for s in shape], np.float32)
    if spec["container"] == "list":
        return [[0.5]]
    return x


def _must_succeed(spec: dict, x, scale: int) -> bool:
    """Whether the input is valid and small (so it must be restored); False means it must be refused."""
    import torch

    kw = spec["kwargs"]
    if not isinstance(x, torch.Tensor) or x.layout != torch.strided or x.is_meta:
        return False
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        return False
    if spec["target"] == "work":
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4:
            return False
        x = x.movedim(-1, 1)
        if kw["precision"] not in ("fp32", "bf16", "fp16"):
            return False
    else:
        if x.dim() != 4 or kw["precision"] not in ("fp32", "bf16", "fp16"):
            return False
        if kw["gray_mode"] not in ("luma", "per_channel") or kw["device"] == "tpu":
            return False
        if kw["device"] == "cuda" and not torch.cuda.is_available():
            return False
        if kw["tile"] == -5 or kw["tile"] == "big":
            return False
    n, c, h, w = x.shape
    if not (n and h and w) or c not in (1, 2, 3, 4):
        return False
    if spec["special"] in ("nan", "inf", "-inf"):
        return False
    return True


def work_module():
    """nodes/work.py imported the way ComfyUI imports the pack (as a package: its imports are relative)."""
    return pack_module("nodes.work")


def _run_image(spec: dict, models: dict) -> dict:
    import torch

    import swinir

    work = work_module()
    input_errors = (swinir.InputError, work.swinir.InputError)
    model = models[spec["model"]]
    scale = model.config.scale
    x = _realize(spec)
    # A valid input claiming more than this machine's memory must be refused; the generator makes no sizes between.
    must_succeed = _must_succeed(spec, x, scale)
    if must_succeed:
        shape = x.shape if spec["target"] == "restore" else (x.unsqueeze(0) if x.dim() == 3 else x).movedim(-1, 1).shape
        n, c, h, w = shape
        if 4 * h * w * scale * scale * (n * c + c + 1) > (1 << 36):
            must_succeed = False
        elif h * w * n > RUN_PIXELS:
            return {"kind": "skipped (valid but large)"}
    try:
        if spec["target"] == "restore":
            kw = {k: v for k, v in spec["kwargs"].items() if v is not None}
            out = swinir.restore(model, x, **kw)
            want = (n, c, h * scale, w * scale) if must_succeed else None
        else:
            out = work.restore_batch(model, x, **spec["kwargs"])
            want = (n, h * scale, w * scale, c) if must_succeed else None
    except input_errors as e:
        if must_succeed:
            return {"kind": "FAIL refused a valid image", "message": str(e)[:300]}
        return {"kind": "InputError", "message": str(e)[:300]}
    if not must_succeed:
        return {"kind": "FAIL accepted an invalid image", "shape": list(out.shape)}
    if tuple(out.shape) != want or out.dtype != torch.float32 or not bool(torch.isfinite(out).all()):
        return {"kind": "FAIL bad output", "shape": list(out.shape), "dtype": str(out.dtype)}
    if float(out.min()) < 0 or float(out.max()) > 1:
        return {"kind": "FAIL output outside [0, 1]"}
    return {"kind": "restored"}


def _selftest(what: str, code: str) -> dict:
    """Cases that misbehave on purpose, so the tests can show that each kind of failure is caught."""
    import threading

    import torch

    if what == "selftest-hang":
        threading.Event().wait()  # never returns
    if what == "selftest-alloc":  # far past the address-space limit, as an unchecked 100 GB claim would be
        torch.empty(100 << 30, dtype=torch.uint8)
    if what == "selftest-grow":  # within the limit, but a checkpoint case must not touch this much
        torch.ones(512 << 20, dtype=torch.uint8)
    if what == "selftest-code":
        exec(code)
    return {"kind": "selftest done"}


def worker_main() -> None:
    """Reads one JSON case per line on stdin, answers one JSON line per case on stdout."""
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    main = sys.modules["__main__"]
    sr, dn = tiny_models()
    models = {"sr": sr, "dn": dn}
    ready = json.loads(sys.stdin.readline())
    # Warm up every path once (first loads import and initialise lazily), then cap the address space: a case that
    # tries to allocate far more than it should fails inside the cap instead of swapping the machine to death.
    for i, path in enumerate(ready.get("warmup", []) + [None] * 40):
        try:
            if path:
                _run_checkpoint(path)
            else:
                _run_image(image_spec(random.Random(i), "restore" if i % 2 else "work"), models)
        except Exception:  # noqa: BLE001 - failures are for the cases to find and report
            pass
    limit = _status_kib("VmSize") * 1024 + ADDRESS_SPACE_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not break the protocol
    out.write(json.dumps({"ready": True, "pid": os.getpid(), "address_space_limit": limit}) + "\n")
    out.flush()
    for line in sys.stdin:
        case = json.loads(line)
        setattr(main, CANARY_FLAG, False)
        peak_ok = _reset_peak()
        before = _status_kib("VmRSS") * 1024
        started = time.perf_counter()
        try:
            if case["what"] == "checkpoint":
                result = _run_checkpoint(case["path"])
            elif case["what"] == "image":
                result = _run_image(case["spec"], models)
            else:
                result = _selftest(case["what"], case.get("code", ""))
        except BaseException as e:  # noqa: BLE001 - reported as a failure of the case, the worker goes on
            result = {"kind": f"FAIL {type(e).__name__}", "message": str(e)[:500],
                      "traceback": traceback.format_exc()[-3000:]}
        result["seconds"] = time.perf_counter() - started
        result["growth"] = (_status_kib("VmHWM") * 1024 - before) if peak_ok else 0
        result["canary"] = bool(getattr(main, CANARY_FLAG, False))
        out.write(json.dumps(result) + "\n")
        out.flush()


# ------------------------------------------------------------------------------------------------ the parent side


class Worker:
    """The worker process: started on first use, restarted after a hang or a crash."""

    def __init__(self, warmup: list[Path], log: Path) -> None:
        self.warmup = [str(p) for p in warmup]
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def _start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from testkit.fuzz_worker import worker_main; worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=ROOT, env=env,
        )
        self.starts += 1
        self.proc.stdin.write((json.dumps({"warmup": self.warmup}) + "\n").encode())
        self.proc.stdin.flush()
        reply = self._read(300.0)
        if reply is None or not reply.get("ready"):
            self.close()
            raise RuntimeError(f"the fuzz worker did not start; see {self.log}")

    def _read(self, timeout: float) -> dict | None:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                return None
            line = self.proc.stdout.readline()
        finally:
            sel.close()
        return json.loads(line) if line else None

    def run(self, case: dict, timeout: float = CASE_TIMEOUT) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.proc.stdin.write((json.dumps(case) + "\n").encode())
            self.proc.stdin.flush()
            reply = self._read(timeout)
        except (BrokenPipeError, ValueError):
            reply = None
        if reply is not None:
            return reply
        hung = self.proc.poll() is None
        code = self.proc.returncode
        self.close()
        if hung:
            return {"kind": "FAIL hang", "message": f"no answer within {timeout:.0f} s"}
        return {"kind": "FAIL worker died", "message": f"exit status {code}; see {self.log}"}

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()  # our own child, by its handle
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.proc = None
        if getattr(self, "_log", None):
            self._log.close()


@dataclass
class FuzzSession:
    """Seeds, a scratch folder, the marker the canaries would create, and the worker."""

    folder: Path
    seeds: dict[str, Path] = field(default_factory=dict)
    seed_bytes: dict[str, bytes] = field(default_factory=dict)
    marker: Path = field(init=False)
    worker: Worker = field(init=False)
    count: int = 0

    def __post_init__(self) -> None:
        self.marker = self.folder / "canary-ran"
        self.seeds = make_seeds(self.folder / "seeds", self.marker)
        self.seed_bytes = {name: p.read_bytes() for name, p in self.seeds.items()}
        self.code = canary_code(self.marker)
        self.weights = seed_weights()
        self.worker = Worker(list(self.seeds.values()), self.folder / "worker.log")

    def checkpoint_case(self, seed: str, rng: random.Random) -> tuple[dict, Path]:
        """Mutate `seed`, load the result in the worker; returns the outcome and the file (kept for a failure)."""
        fmt = SEED_FORMATS[seed]
        if rng.random() < 0.35:
            data = mutate_weights(*self.weights[seed], fmt, rng, self.code)
            if rng.random() < 0.3:
                data = mutate(data, fmt, rng, self.code)
        else:
            data = mutate(self.seed_bytes[seed], fmt, rng, self.code)
        self.count += 1
        path = self.folder / "cases" / str(self.count % 8) / seed  # the name, as for real files, decides the task
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        result = self.worker.run({"what": "checkpoint", "path": str(path)})
        result["seed"] = seed
        return self._judge(result, CHECKPOINT_GROWTH_LIMIT + 4 * len(data)), path

    def image_case(self, target: str, rng: random.Random) -> tuple[dict, dict]:
        spec = image_spec(rng, target)
        return self._judge(self.worker.run({"what": "image", "spec": spec}), IMAGE_GROWTH_LIMIT), spec

    def selftest(self, what: str, timeout: float = CASE_TIMEOUT) -> dict:
        """One misbehaving case (see `_selftest`), judged like a checkpoint case."""
        result = self.worker.run({"what": what, "code": self.code}, timeout)
        return self._judge(result, CHECKPOINT_GROWTH_LIMIT)

    def _judge(self, result: dict, growth_limit: int) -> dict:
        """A case that ran code or grew the worker too much fails, whatever it returned."""
        if self.marker.exists() or result.get("canary"):
            result["kind"] = "FAIL code ran"
            self.marker.unlink(missing_ok=True)
        elif not result["kind"].startswith("FAIL") and result.get("growth", 0) > growth_limit:
            result["kind"] = "FAIL memory growth"
        return result

    def close(self) -> None:
        self.worker.close()


def new_session(parent: Path | None = None) -> FuzzSession:
    return FuzzSession(Path(tempfile.mkdtemp(prefix="swinir-fuzz-", dir=parent)))
