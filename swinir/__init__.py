"""SwinIR image restoration: the network, checkpoint loading, and the tiled restoration engine.

Plain PyTorch; never imports ComfyUI.
"""

from .cache import cached_bytes, clear_caches
from .checkpoint import convert, load_model, model_from_state_dict, read_checkpoint, save_safetensors
from .config import SwinIRConfig
from .describe import describe
from .errors import Cancelled, CheckpointError, InputError, SwinIRError, TaskMismatchError
from .infer import infer_config
from .model_ref import default_model_path, resolve_model
from .network import SwinIR
from .engine import restore
from .estimate import estimate_degradation

__all__ = [
    "Cancelled", "CheckpointError", "cached_bytes", "clear_caches", "InputError", "SwinIR", "SwinIRConfig", "SwinIRError",
    "TaskMismatchError", "convert", "default_model_path", "describe", "infer_config", "load_model",
    "model_from_state_dict", "read_checkpoint", "resolve_model", "restore",
    "save_safetensors",
]
