"""SwinIR image restoration: the network, checkpoint loading, and the tiled restoration engine.

Plain PyTorch; never imports ComfyUI.
"""

from pathlib import Path

from .checkpoint import convert, load_model, model_from_state_dict, read_checkpoint, save_safetensors
from .config import SwinIRConfig
from .describe import describe
from .errors import Cancelled, CheckpointError, InputError, SwinIRError, TaskMismatchError
from .infer import infer_config
from .network import SwinIR
from .engine import restore

DEFAULT_MODEL_NAME = "swinir-s-x2-default.safetensors"


def default_model_path() -> Path:
    """The pack's own SwinIR-S x2 model, trained by this project (see bench/RESULTS.md)."""
    return Path(__file__).resolve().parent.parent / "models" / DEFAULT_MODEL_NAME


__all__ = [
    "Cancelled", "CheckpointError", "DEFAULT_MODEL_NAME", "InputError", "SwinIR", "SwinIRConfig", "SwinIRError",
    "TaskMismatchError", "convert", "default_model_path", "describe", "infer_config", "load_model",
    "model_from_state_dict", "read_checkpoint", "restore", "save_safetensors",
]
