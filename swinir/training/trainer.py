"""Training of the pack's default models on folders of clean images: one degradation per task.

- sr: MATLAB-style bicubic downscaling of the whole HR image, quantised to uint8 the way the SR test sets are
  made, done once up front; training pairs are aligned random crops.
- denoise (blind): a random sigma per patch, uniform in [0, sigma_max] on the 0-255 scale, Gaussian noise added
  in float (neither rounded nor clipped), as the official tests add it.
- jpeg (blind): a random IJG quality per patch, log-uniform in the range by default (see `QUALITY_SAMPLING`),
  through Pillow's encoder with 4:2:0 chroma (what most JPEGs carry); the patch is encoded after its
  flip/rotation, so its 16 px MCU grid starts at the patch corner, as a whole image's does.

Crops get random flips and 90-degree rotations. L1 loss, Adam, an exponential moving average of the weights
(what gets exported), and a resumable state file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import read_checkpoint, read_torch_file, save_safetensors
from ..config import SwinIRConfig
from ..precision import warn_if_emulated
from ..errors import CheckpointError, InputError
from ..fileutil import atomic_target
from ..imageio import IMAGE_SUFFIXES, read_image_uint8
from ..network import SwinIR
from ..tasks import FAMILIES
from .degrade import add_gaussian_noise, jpeg_roundtrip
from .imresize import imresize_uint8
from .metrics import psnr, psnr_y

log = logging.getLogger(__name__)

LIGHTWEIGHT_S = dict(
    embed_dim=60, depths=(6, 6, 6, 6), num_heads=(6, 6, 6, 6), window_size=8, mlp_ratio=2.0,
    upsampler="pixelshuffledirect", resi_connection="1conv", img_range=1.0, in_chans=3,
)
# The level each monitor evaluation uses for the blind tasks (a fixed seed for the noise).
MONITOR_SIGMA = 25
MONITOR_QUALITY = 20
# How a patch's JPEG quality is drawn from the range. log: P(q) proportional to 1/q, so each halving of the quality
# gets the same share of patches; below quality 50 the IJG quantiser step is proportional to 1/q, so this spreads
# the patches evenly over the strength of the artifacts, where uniform gave q 10-20 only 14 % of them.
# uniform: every quality equally often (how the JPEG default's run was trained up to its step 6,600).
QUALITY_SAMPLING = ("log", "uniform")


@dataclass
class TrainSettings:
    data: list[Path]
    out: Path
    scale: int = 2
    iterations: int = 100_000
    batch: int = 8
    patch: int = 48  # LR crop size
    lr: float = 2e-4
    warmup: int = 200
    ema_decay: float = 0.999
    save_every: int = 100
    eval_every: int = 500
    eval_dir: Path | None = None  # monitoring only: an SR set with HR/ and LR_bicubic/X<s>/, or clean images
    seed: int = 0
    task: str = "sr"
    sigma_max: int = 50  # denoise: sigma drawn from [0, sigma_max]
    quality_range: tuple[int, int] = (10, 90)  # jpeg: quality drawn from this range, inclusive
    quality_sampling: str = "log"  # jpeg: one of QUALITY_SAMPLING
    init: Path | None = None  # starting weights for a new run: a state.pt or a .safetensors of the same network
    precision: str = "fp32"  # bf16: autocast for the forward and backward (fp32 weights and Adam state)

    def __post_init__(self) -> None:
        # Checked up front: a wrong name would otherwise surface only at the first JPEG patch.
        if self.quality_sampling not in QUALITY_SAMPLING:
            raise InputError(
                f"unknown quality sampling {self.quality_sampling!r}; use one of {', '.join(QUALITY_SAMPLING)}"
            )

    def level_range(self) -> tuple[int, int] | None:
        if self.task == "denoise":
            return (0, self.sigma_max)
        if self.task == "jpeg":
            return tuple(self.quality_range)
        return None

    def degradation(self) -> str:
        if self.task == "denoise":
            return f"Gaussian noise sigma 0-{self.sigma_max} (float, per patch)"
        if self.task == "jpeg":
            low, high = self.quality_range
            spread = "" if self.quality_sampling == "uniform" else f" {self.quality_sampling}-uniform"
            return f"Pillow JPEG quality {low}-{high}{spread}, 4:2:0 (per patch)"
        return f"MATLAB bicubic x{self.scale}"


def default_config(s: TrainSettings) -> SwinIRConfig:
    """The official lightweight SwinIR-S body; scale 1 and no upsampler for the restoration tasks."""
    if s.task not in FAMILIES:
        raise InputError(f"unknown training task {s.task!r}; use one of {', '.join(FAMILIES)}")
    if s.task == "sr":
        return SwinIRConfig(task="lightweight_sr", scale=s.scale, **LIGHTWEIGHT_S)
    body = {**LIGHTWEIGHT_S, "upsampler": ""}
    task = "color_denoise" if s.task == "denoise" else "color_jpeg"
    return SwinIRConfig(task=task, scale=1, level_range=s.level_range(), **body)


def _modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def load_pairs(folders: list[Path], scale: int, min_lr: int) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """(LR, HR) uint8 HWC RGB pairs (LR None at scale 1: it is made per patch); images too small for one crop are
    left out."""
    pairs = []
    for folder in folders:
        if not folder.is_dir():
            raise InputError(f"training data folder {folder} does not exist; pass folders of high-resolution images")
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            hr = _modcrop(read_image_uint8(path, channels=3), scale)
            if min(hr.shape[:2]) < min_lr * scale:
                continue
            pairs.append((imresize_uint8(hr, 1 / scale) if scale > 1 else None, hr))
    if not pairs:
        raise InputError(
            f"no usable training images in {', '.join(map(str, folders))}: they need PNG/JPEG/WebP/TIFF images "
            f"of at least {min_lr * scale} px on the short side (the crop size times the scale)"
        )
    return pairs


def _augment(crops: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    crops = [np.rot90(c, k) for c in crops]
    return [np.ascontiguousarray(c[:, ::-1] if flip else c) for c in crops]


def degrade_patch(clean: np.ndarray, s: TrainSettings, rng: np.random.Generator) -> np.ndarray:
    """A float32 HWC [0, 1] input for one clean uint8 patch, at a random level of the task's range."""
    if s.task == "denoise":
        sigma = rng.uniform(0.0, s.sigma_max)
        return add_gaussian_noise(clean.astype(np.float32) / 255.0, sigma, rng)
    return jpeg_roundtrip(clean, draw_quality(s, rng)).astype(np.float32) / 255.0


def draw_quality(s: TrainSettings, rng: np.random.Generator) -> int:
    low, high = s.quality_range
    if s.quality_sampling == "uniform":
        return int(rng.integers(low, high + 1))
    if s.quality_sampling != "log":
        raise InputError(f"unknown quality sampling {s.quality_sampling!r}; use one of {', '.join(QUALITY_SAMPLING)}")
    qualities = np.arange(low, high + 1)
    return int(rng.choice(qualities, p=(1.0 / qualities) / (1.0 / qualities).sum()))


def sample_batch(pairs, s: TrainSettings, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) NCHW float batches of random crops."""
    patch, scale = s.patch, s.scale if s.task == "sr" else 1
    inputs, targets = [], []
    for _ in range(s.batch):
        lr, hr = pairs[rng.integers(len(pairs))]
        size = hr.shape[:2] if lr is None else lr.shape[:2]
        y = int(rng.integers(size[0] - patch + 1))
        x = int(rng.integers(size[1] - patch + 1))
        hr_c = hr[y * scale : (y + patch) * scale, x * scale : (x + patch) * scale]
        if lr is None:
            (hr_c,) = _augment([hr_c], rng)
            inputs.append(degrade_patch(hr_c, s, rng))
        else:
            lr_c, hr_c = _augment([lr[y : y + patch, x : x + patch], hr_c], rng)
            inputs.append(lr_c.astype(np.float32) / 255.0)
        targets.append(hr_c.astype(np.float32) / 255.0)
    to_t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return to_t(inputs), to_t(targets)


def _run_uint8(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(2, 0, 1)[None]
    return model(t).clamp(0, 1)[0].permute(1, 2, 0).mul(255).round().byte().numpy()


def evaluate(model: torch.nn.Module, eval_dir: Path, scale: int, task: str = "sr") -> float:
    """Monitor score. sr: mean PSNR-Y (border = scale) over an SR test set, the official SwinIR convention.
    denoise / jpeg: mean RGB PSNR over the clean images of `eval_dir` (or its HR/) at sigma 25 (seed 0) or
    quality 20."""
    values = []
    model.eval()
    with torch.inference_mode():
        if task == "sr":
            for hr_path in sorted((eval_dir / "HR").iterdir()):
                lr_path = eval_dir / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}{hr_path.suffix}"
                lr = read_image_uint8(lr_path, channels=3)
                hr = _modcrop(read_image_uint8(hr_path, channels=3), scale)
                values.append(psnr_y(_run_uint8(model, lr / 255.0), hr, border=scale))
            return float(np.mean(values))
        folder = eval_dir / "HR" if (eval_dir / "HR").is_dir() else eval_dir
        rng = np.random.default_rng(0)
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            clean = read_image_uint8(path, channels=3)
            if task == "denoise":
                degraded = add_gaussian_noise(clean.astype(np.float32) / 255.0, MONITOR_SIGMA, rng)
            else:
                degraded = jpeg_roundtrip(clean, MONITOR_QUALITY) / 255.0
            values.append(psnr(_run_uint8(model, degraded), clean))
    return float(np.mean(values))


def monitor_name(task: str) -> str:
    if task == "denoise":
        return f"RGB PSNR at sigma {MONITOR_SIGMA}"
    if task == "jpeg":
        return f"RGB PSNR at JPEG quality {MONITOR_QUALITY}"
    return "PSNR-Y"


def _lr_at(step: int, s: TrainSettings) -> float:
    return s.lr * min(1.0, (step + 1) / s.warmup)


# What every state file holds (`_save_state`); the rest has defaults.
STATE_KEYS = ("model", "ema", "optimizer", "step", "elapsed", "history", "config")


def _load_state(path: Path) -> dict:
    """A resume state, read within the checkpoint reader's limits (a damaged file claiming huge tensors is refused
    before anything is allocated)."""
    try:
        state = read_torch_file(path, fix="restore it from a copy or delete it to start over")
    except CheckpointError as e:
        raise CheckpointError(f"not a readable training state: {e}") from None
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f"{path} is not a readable training state (no {', '.join(missing)}); restore it from a copy or delete "
            "it to start over"
        )
    state.setdefault("data", [])  # states saved before the data folders were recorded
    # The x2 default's state predates tasks: bicubic x2 with a Set5 PSNR-Y monitor.
    state.setdefault("degradation", "MATLAB bicubic x2")
    state.setdefault("monitor", "Set5 PSNR-Y")
    return state


def _save_state(path: Path, state: dict) -> None:
    with atomic_target(path) as tmp:
        torch.save(state, tmp)


def initial_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Starting weights from a training state (its EMA) or a model file, for `TrainSettings.init`, and a line
    saying what they had been trained for (kept in the export so a restarted run never hides its history)."""
    if path.suffix == ".pt":
        state = _load_state(path)
        return state["ema"], f"{path.name} at step {state['step']} ({int(state['elapsed'])} s)"
    weights, metadata = read_checkpoint(path)
    steps, seconds = metadata.get("training_steps", "?"), metadata.get("training_seconds", "?")
    return weights, f"{path.name} at step {steps} ({seconds} s)"


def train(s: TrainSettings, config: SwinIRConfig | None = None) -> Path:
    """Runs (or resumes) training; returns the state file. Stop any time: at most `save_every` steps are lost."""
    s.out.mkdir(parents=True, exist_ok=True)
    state_path = s.out / "state.pt"
    config = config or default_config(s)
    torch.manual_seed(s.seed)
    model = SwinIR(config)
    init_record = None
    if s.init is not None and not state_path.exists():
        weights, init_record = initial_weights(s.init)
        try:
            model.load_state_dict(weights)
        except RuntimeError as e:
            raise CheckpointError(
                f"--init {s.init}: its weights do not fit the {config.task} network being trained "
                f"({str(e).splitlines()[-1].strip()[:160]}); start from a model of the same size"
            ) from None
    ema = SwinIR(config)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr, betas=(0.9, 0.99))
    step, elapsed, history, data_names = 0, 0.0, [], []
    degradation = s.degradation()
    monitor = None if s.eval_dir is None else f"{s.eval_dir.name} {monitor_name(s.task)}"
    rng = np.random.default_rng(s.seed)
    if state_path.exists():
        state = _load_state(state_path)
        saved = SwinIRConfig.from_metadata(state["config"]).task
        if saved != config.task:
            raise InputError(
                f"{state_path} is a {saved} training, not {config.task}; pass the matching --task or another --out"
            )
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, history = state["step"], state["elapsed"], list(state["history"])
        data_names = list(state["data"])
        init_record = state.get("init")
        # A resume without --eval-dir keeps the name of the monitor its history's scores came from.
        monitor = monitor or state.get("monitor")
        # A run resumed with another degradation keeps what its earlier steps were trained on.
        if state["degradation"].endswith(degradation):
            degradation = state["degradation"]
        else:
            degradation = f"{state['degradation']} to step {step}, then {degradation}"
        rng = np.random.default_rng([s.seed, step])
        log.info("resumed at step %d (%.0f s trained)", step, elapsed)
    # The export's metadata names every folder the weights ever saw, across resumes.
    data_names += [d.name for d in s.data if d.name not in data_names]
    pairs = load_pairs(s.data, s.scale if s.task == "sr" else 1, s.patch)
    log.info("%d training images", len(pairs))
    if s.precision == "bf16":
        # On an AVX2 CPU a bf16 step takes 7-10x as long as an fp32 one (bench/RESULTS.md).
        warn_if_emulated(torch.device("cpu"), torch.bfloat16)
    model.train()
    t0, loss_sum, loss_n = time.time(), 0.0, 0
    while step < s.iterations:
        lr_img, hr_img = sample_batch(pairs, s, rng)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, s)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.precision == "bf16"):
            out = model(lr_img)
        loss = F.l1_loss(out.float(), hr_img)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # The EMA starts short so early exports are not dragged back to the random initialisation.
        decay = min(s.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1 - decay)
        step += 1
        loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
        if step % s.save_every == 0 or step == s.iterations:
            now = time.time()
            elapsed += now - t0
            t0 = now
            # The learning rate is recorded because a resume may change it (--lr), and the history must say so.
            record = {"step": step, "loss": loss_sum / loss_n, "lr": _lr_at(step - 1, s), "elapsed": round(elapsed, 1)}
            if s.eval_dir is not None and (step % s.eval_every == 0 or step == s.iterations):
                record["eval_psnr"] = round(evaluate(ema, s.eval_dir, s.scale, s.task), 3)
                model.train()
            history.append(record)
            log.info("%s", record)
            loss_sum, loss_n = 0.0, 0
            _save_state(state_path, {
                "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                "step": step, "elapsed": elapsed, "history": history, "config": config.to_metadata(),
                "data": data_names, "degradation": degradation,
                "monitor": monitor,
                "init": init_record,
            })
    return state_path


def ema_weights(state_path: Path) -> tuple[dict[str, torch.Tensor], SwinIRConfig, dict]:
    """The exported weights (EMA), the config and the training record of a state file."""
    if not state_path.is_file():
        raise CheckpointError(
            f"no training state at {state_path}; pass as --out the folder of a run that has saved at least once"
        )
    state = _load_state(state_path)
    info = {
        "step": state["step"], "elapsed_s": state["elapsed"], "history": state["history"],
        "data": list(state["data"]), "degradation": state["degradation"], "monitor": state["monitor"],
        "init": state.get("init"),
    }
    return state["ema"], SwinIRConfig.from_metadata(state["config"]), info


def export(state_path: Path, target: Path) -> Path:
    """Write the EMA weights of a training state as the pack's safetensors, with the training record."""
    weights, config, info = ema_weights(state_path)
    model = SwinIR(config)
    model.load_state_dict(weights)
    data = ", ".join(info["data"]) or "not recorded"
    last_eval = next((r for r in reversed(info["history"]) if "eval_psnr" in r), None)
    extra = {
        "source_file": "trained by ComfyUI-SwinIR (python -m swinir train)",
        "training_data": f"{data}, {info['degradation']}",
        "training_steps": str(info["step"]),
        "training_seconds": str(int(info["elapsed_s"])),
    }
    if info["init"]:
        extra["initialised_from"] = info["init"]
    if last_eval is not None:
        # The step is named because a run may go on without evaluating (a large --eval-every).
        score = f"{last_eval['eval_psnr']} at step {last_eval['step']}"
        if config.is_sr:
            extra["monitor_set5_psnr_y"] = score
        else:
            extra["monitor"] = f"{info['monitor']}: {score}"
    return save_safetensors(model, target, extra=extra)
