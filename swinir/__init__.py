"""SwinIR image restoration: the network, checkpoint loading, the tiled restoration engine, and the estimates of
which model fits an image.

Plain PyTorch; never imports ComfyUI or Ray (the bulk runners in `swinir.bulk` import Ray only when asked to).
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
    "Cancelled", "CheckpointError", "InputError", "SwinIR", "SwinIRConfig", "SwinIRError", "TaskMismatchError",
    "cached_bytes", "clear_caches", "convert", "default_model_path", "describe", "estimate_degradation",
    "infer_config", "load_model", "model_from_state_dict", "read_checkpoint", "resolve_model", "restore",
    "save_safetensors",
]
