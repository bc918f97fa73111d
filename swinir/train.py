"""Training of a SwinIR super-resolution model on a folder of images (the default model is trained with this).

Degradation: MATLAB-style bicubic downscaling of the whole HR image, quantised to uint8 the way the SR test sets
are made, done once up front; training pairs are aligned random crops with flips and 90-degree rotations.
L1 loss, Adam, an exponential moving average of the weights (what gets exported), and a resumable state file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import SwinIRConfig
from .errors import CheckpointError, InputError
from .fileutil import atomic_target
from .imageio import IMAGE_SUFFIXES, read_image_uint8
from .imresize import imresize_uint8
from .metrics import psnr_y
from .network import SwinIR

log = logging.getLogger(__name__)

LIGHTWEIGHT_S = dict(
    embed_dim=60, depths=(6, 6, 6, 6), num_heads=(6, 6, 6, 6), window_size=8, mlp_ratio=2.0,
    upsampler="pixelshuffledirect", resi_connection="1conv", img_range=1.0, in_chans=3,
)


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
    eval_dir: Path | None = None  # an SR test set laid out as HR/ and LR_bicubic/X<s>/, for monitoring only
    seed: int = 0


def _modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def load_pairs(folders: list[Path], scale: int, min_lr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(LR, HR) uint8 HWC RGB pairs; images too small for one crop are left out."""
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
            pairs.append((imresize_uint8(hr, 1 / scale), hr))
    if not pairs:
        raise InputError(
            f"no usable training images in {', '.join(map(str, folders))}: they need PNG/JPEG/WebP/TIFF images "
            f"of at least {min_lr * scale} px on the short side (the crop size times the scale)"
        )
    return pairs


def sample_batch(pairs, batch: int, patch: int, scale: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    lrs, hrs = [], []
    for _ in range(batch):
        lr, hr = pairs[rng.integers(len(pairs))]
        y = int(rng.integers(lr.shape[0] - patch + 1))
        x = int(rng.integers(lr.shape[1] - patch + 1))
        lr_c = lr[y : y + patch, x : x + patch]
        hr_c = hr[y * scale : (y + patch) * scale, x * scale : (x + patch) * scale]
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        lr_c, hr_c = np.rot90(lr_c, k), np.rot90(hr_c, k)
        if flip:
            lr_c, hr_c = lr_c[:, ::-1], hr_c[:, ::-1]
        lrs.append(np.ascontiguousarray(lr_c))
        hrs.append(np.ascontiguousarray(hr_c))
    to_t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float().div_(255)  # noqa: E731
    return to_t(lrs), to_t(hrs)


def evaluate(model: torch.nn.Module, eval_dir: Path, scale: int) -> float:
    """Mean PSNR-Y (border = scale) over an SR test set; the official SwinIR convention."""
    values = []
    model.eval()
    with torch.inference_mode():
        for hr_path in sorted((eval_dir / "HR").iterdir()):
            lr_path = eval_dir / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}{hr_path.suffix}"
            lr = read_image_uint8(lr_path, channels=3)
            hr = _modcrop(read_image_uint8(hr_path, channels=3), scale)
            x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
            sr = model(x).clamp(0, 1)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
            values.append(psnr_y(sr, hr, border=scale))
    return float(np.mean(values))


def _lr_at(step: int, s: TrainSettings) -> float:
    return s.lr * min(1.0, (step + 1) / s.warmup)


def _load_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of a truncated or foreign file
        raise CheckpointError(
            f"{path} is not a readable training state ({e}); restore it from a copy or delete it to start over"
        ) from e
    state.setdefault("data", [])  # states saved before the data folders were recorded
    return state


def _save_state(path: Path, state: dict) -> None:
    with atomic_target(path) as tmp:
        torch.save(state, tmp)


def train(s: TrainSettings, config: SwinIRConfig | None = None) -> Path:
    """Runs (or resumes) training; returns the state file. Stop any time: at most `save_every` steps are lost."""
    s.out.mkdir(parents=True, exist_ok=True)
    state_path = s.out / "state.pt"
    config = config or SwinIRConfig(task="lightweight_sr", scale=s.scale, **LIGHTWEIGHT_S)
    torch.manual_seed(s.seed)
    model = SwinIR(config)
    ema = SwinIR(config)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr, betas=(0.9, 0.99))
    step, elapsed, history, data_names = 0, 0.0, [], []
    rng = np.random.default_rng(s.seed)
    if state_path.exists():
        state = _load_state(state_path)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, history = state["step"], state["elapsed"], list(state["history"])
        data_names = list(state["data"])
        rng = np.random.default_rng([s.seed, step])
        log.info("resumed at step %d (%.0f s trained)", step, elapsed)
    # The export's metadata names every folder the weights ever saw, across resumes.
    data_names += [d.name for d in s.data if d.name not in data_names]
    pairs = load_pairs(s.data, s.scale, s.patch)
    log.info("%d training images", len(pairs))
    model.train()
    t0, loss_sum, loss_n = time.time(), 0.0, 0
    while step < s.iterations:
        lr_img, hr_img = sample_batch(pairs, s.batch, s.patch, s.scale, rng)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, s)
        loss = F.l1_loss(model(lr_img), hr_img)
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
            record = {"step": step, "loss": loss_sum / loss_n, "elapsed": round(elapsed, 1)}
            if s.eval_dir is not None and (step % s.eval_every == 0 or step == s.iterations):
                record["eval_psnr"] = round(evaluate(ema, s.eval_dir, s.scale), 3)
                model.train()
            history.append(record)
            log.info("%s", record)
            loss_sum, loss_n = 0.0, 0
            _save_state(state_path, {
                "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                "step": step, "elapsed": elapsed, "history": history, "config": config.to_metadata(),
                "data": data_names,
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
        "data": list(state["data"]),
    }
    return state["ema"], SwinIRConfig.from_metadata(state["config"]), info


def export(state_path: Path, target: Path) -> Path:
    """Write the EMA weights of a training state as the pack's safetensors, with the training record."""
    from .checkpoint import save_safetensors

    weights, config, info = ema_weights(state_path)
    model = SwinIR(config)
    model.load_state_dict(weights)
    data = ", ".join(info["data"]) or "not recorded"
    last_eval = next((r["eval_psnr"] for r in reversed(info["history"]) if "eval_psnr" in r), None)
    extra = {
        "source_file": "trained by ComfyUI-SwinIR (python -m swinir train)",
        "training_data": f"{data}, MATLAB bicubic x{config.scale}",
        "training_steps": str(info["step"]),
        "training_seconds": str(int(info["elapsed_s"])),
    }
    if last_eval is not None:
        extra["monitor_set5_psnr_y"] = str(last_eval)
    return save_safetensors(model, target, extra=extra)
