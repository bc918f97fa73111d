"""Checkpoint files: safe reading of safetensors and official .pth files, loading, and writing our format.

A checkpoint never runs code: `.pth` files go through `torch.load(weights_only=True)` only, and the format is
sniffed from the bytes, not trusted from the extension.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import torch

from . import windows
from .config import SwinIRConfig
from .errors import CheckpointError
from .fileutil import atomic_target, sha256_of
from .infer import infer_config
from .network import SwinIR

FORMAT_TAG = "comfyui-swinir/1"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
# Buffers the official network stores but that we recompute for every input size.
RECOMPUTED = ("attn_mask", "relative_position_index")
# What a training state may wrap the weights in. The official test script takes `params_ema` for real-world SR
# and `params` for every other task, so a file holding both is resolved by its upsampler (see `_pick_wrapped`).
WRAPPER_KEYS = ("params", "params_ema", "state_dict", "model")


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); download it again")
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80":
        return "torch-legacy"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < n < 100_000_000:
            return "safetensors"
    raise CheckpointError(
        f"{path}: not a checkpoint (neither safetensors nor a PyTorch file; first bytes {head[:8].hex()}); "
        "check that the download completed and that this is a model file"
    )


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    size = path.stat().st_size
    corrupt = f"{path}: corrupt safetensors header; the file is damaged, download it again"
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if 8 + n > size:
            raise CheckpointError(
                f"{path}: truncated safetensors file ({size} bytes, its header alone claims {8 + n}); "
                "download or convert it again"
            )
        try:
            header = json.loads(f.read(n))
        # RecursionError: a header of deeply nested brackets.
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise CheckpointError(corrupt) from None
    try:
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (KeyError, TypeError, IndexError, ValueError, AttributeError, OverflowError):  # Overflow: Infinity
        raise CheckpointError(corrupt) from None
    if 8 + n + max(ends, default=0) > size:
        raise CheckpointError(
            f"{path}: truncated safetensors file ({size} bytes, the header describes {8 + n + max(ends)}); "
            "download or convert it again"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({e}); download or convert it again") from None


def _check_zip_records(path: Path, fix: str = "download it again") -> None:
    """Refuse compressed or oversized zip entries before torch.load reads them: torch.save never compresses, and
    PyTorch's reader allocates an entry's claimed uncompressed size up front (a few KB could claim 100 GB)."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, OverflowError, NotImplementedError):
        raise CheckpointError(
            f"{path}: corrupt or truncated PyTorch file (unreadable zip directory); {fix}"
        ) from None
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"{path}: refused to load: entry {info.filename!r} is compressed ({info.compress_size} bytes, "
                f"{info.file_size} unpacked), which PyTorch checkpoints never are; the file is damaged or not a "
                f"checkpoint, {fix}"
            )
        if info.compress_size != info.file_size:
            raise CheckpointError(
                f"{path}: corrupt PyTorch file (entry {info.filename!r} is stored as {info.compress_size} bytes but "
                f"claims {info.file_size}); {fix}"
            )
        if info.header_offset + info.file_size > size:
            raise CheckpointError(
                f"{path}: truncated PyTorch file (entry {info.filename!r} ends past the file's {size} bytes); "
                f"{fix}"
            )


def _legacy_storage_bytes(f) -> int:
    """Bytes a legacy (pre-zip) torch file's pickle claims for its storages, found without allocating them: the
    legacy loader allocates each claimed size before it reads the data. -1 when this torch has no fake tensors."""
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
    except ImportError:
        return -1
    with FakeTensorMode():
        obj = torch.load(f, map_location="cpu", weights_only=True)
    storages, seen, todo = {}, set(), [obj]
    while todo:  # iterative: a crafted pickle can nest far deeper than the recursion limit
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            storages[id(storage)] = storage.nbytes()
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            todo.extend(item)
    return sum(storages.values())


def _read_torch(path: Path, kind: str, fix: str = "download it again") -> dict:
    size = path.stat().st_size
    try:
        # A file object, not the path: torch.load would hand a file named *.safetensors to safetensors itself.
        with open(path, "rb") as f:
            if kind == "torch-zip":
                _check_zip_records(path, fix)
            else:
                claimed = _legacy_storage_bytes(f)
                if claimed > size:
                    raise CheckpointError(
                        f"{path}: corrupt PyTorch file (its tensors claim {claimed} bytes of data, the file has "
                        f"{size}); {fix}"
                    )
            f.seek(0)
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: the file contains Python objects other than tensors, which could run code "
            f"({str(e).splitlines()[-1][:200] if str(e) else type(e).__name__}). Only plain weight files are "
            "accepted; convert it in a trusted environment with `swinir convert`"
        ) from None
    # torch.load's restricted unpickler calls its allowed functions with whatever arguments a damaged stream holds, so
    # such a file raises any type of exception (the fuzzer, tests/test_fuzz.py, met TypeError, IndexError,
    # AttributeError and KeyError besides the RuntimeError and EOFError of a truncated file): all mean "unreadable".
    except Exception as e:  # noqa: BLE001
        first = str(e).splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: corrupt or truncated PyTorch file ({first}); {fix}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    return obj


def read_torch_file(path: str | os.PathLike, fix: str) -> dict:
    """A dict that `torch.save` wrote (a training state, say), read within the limits a checkpoint is read with:
    tensors only, no compressed or oversized zip entries, no legacy storages claiming more than the file. Every
    failure is a CheckpointError naming the file and ending with `fix`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); {fix}")
    kind = _sniff(path)
    if kind == "safetensors":
        raise CheckpointError(f"{path}: a safetensors file, not one that torch.save wrote; {fix}")
    return _read_torch(path, kind, fix)


def _pick_wrapped(obj: dict) -> dict:
    if isinstance(obj.get("params"), dict) and isinstance(obj.get("params_ema"), dict):
        real_sr = any(isinstance(k, str) and k.removeprefix("module.") == "conv_up1.weight" for k in obj["params_ema"])
        return obj["params_ema"] if real_sr else obj["params"]
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def unwrap_state_dict(obj: dict, name: str) -> dict[str, torch.Tensor]:
    """The network's tensors: unwrap training wrappers, strip `module.`, drop buffers we recompute."""
    obj = _pick_wrapped(obj)
    sd: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{name}: entry {key!r} is a {type(value).__name__}, not a tensor; this is not a plain state dict"
            )
        if not isinstance(key, str):
            raise CheckpointError(
                f"{name}: has a tensor named by a {type(key).__name__} ({key!r}); this is not a plain state dict"
            )
        key = key.removeprefix("module.")
        if key.rsplit(".", 1)[-1] in RECOMPUTED:
            continue
        if value.layout != torch.strided or not value.is_floating_point() or value.is_meta:
            raise CheckpointError(
                f"{name}: entry {key!r} is a {value.layout} {value.dtype} tensor; SwinIR weights are dense floating "
                "point, so the file is damaged or not a SwinIR model"
            )
        sd[key] = value
    return sd


def _check_data_size(sd: dict[str, torch.Tensor], path: Path) -> None:
    """Weights claiming more bytes than the file holds (a stride-0 view of a tiny storage, say) are refused before a
    network of their claimed size is allocated."""
    claimed = sum(v.numel() * v.element_size() for v in sd.values())
    size = path.stat().st_size
    if claimed > size:
        raise CheckpointError(
            f"{path}: corrupt checkpoint (its tensors claim {claimed} bytes of weights, the file holds {size}); "
            "download or convert it again"
        )


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, safetensors metadata) of a file; every failure is a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    kind = _sniff(path)
    if kind == "safetensors":
        raw, meta = _read_safetensors(path)
    else:
        raw, meta = _read_torch(path, kind), {}
    sd = unwrap_state_dict(raw, path.name)
    _check_data_size(sd, path)
    return sd, meta


ARCH_FIELDS = (
    "scale", "in_chans", "window_size", "embed_dim", "depths", "num_heads", "mlp_ratio", "upsampler",
    "resi_connection", "num_feat", "patch_norm",
)


def config_from(sd: dict[str, torch.Tensor], meta: dict[str, str], name: str | None) -> SwinIRConfig:
    try:
        inferred = infer_config(sd, name)
    except (KeyError, IndexError, ValueError, ZeroDivisionError, OverflowError) as e:
        # Shapes of a damaged file: a missing block, a 1-D bias table, a head count of zero, ...
        raise CheckpointError(
            f"{name or 'state dict'}: the tensor shapes do not form a SwinIR network ({type(e).__name__}: {e}); "
            "the file is damaged or not a SwinIR model"
        ) from None
    if meta.get("format") != FORMAT_TAG:
        return inferred
    try:
        stored = SwinIRConfig.from_metadata(meta)
    except (ValueError, TypeError, ZeroDivisionError) as e:
        raise CheckpointError(f"{name}: malformed SwinIR metadata ({e}); convert the file again") from None
    if stored.is_sr != inferred.is_sr:
        raise CheckpointError(
            f"{name}: metadata says task {stored.task} but the weights are a {inferred.task} network; "
            "the file was edited or damaged, convert it again"
        )
    for field in ARCH_FIELDS:
        if getattr(stored, field) != getattr(inferred, field):
            raise CheckpointError(
                f"{name}: metadata says {field}={getattr(stored, field)} but the weights have "
                f"{getattr(inferred, field)}; the file was edited or damaged, convert it again"
            )
    return stored


def model_from_state_dict(
    sd: dict[str, torch.Tensor], name: str | None = None, meta: dict[str, str] | None = None
) -> SwinIR:
    """A ready (eval, no-grad) SwinIR from a state dict with official key names."""
    return _build(unwrap_state_dict(dict(sd), name or "state dict"), name, meta or {})


def _check_layout(sd: dict[str, torch.Tensor], config: SwinIRConfig, label: str) -> None:
    """Every tensor has the shape the inferred network needs, checked on a network without storage (meta device):
    a damaged tensor table cannot make us allocate a network of the size it claims (1e6 channels, say)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in SwinIR(config).state_dict().items()}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{label}: does not match the SwinIR layout inferred from it "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); the file may be damaged"
        )
    for key, shape in expected.items():
        if tuple(sd[key].shape) != shape:
            raise CheckpointError(
                f"{label}: weights do not fit the SwinIR layout inferred from them ({key} has shape "
                f"{tuple(sd[key].shape)}, the layout needs {shape}); the file may be damaged"
            )


def _build(sd: dict[str, torch.Tensor], name: str | None, meta: dict[str, str]) -> SwinIR:
    """The model of an already unwrapped state dict."""
    label = name or "state dict"
    config = config_from(sd, meta, name)
    _check_layout(sd, config, label)
    model = SwinIR(config)
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise CheckpointError(
            f"{label}: weights do not fit the SwinIR layout inferred from them "
            f"({str(e).strip().splitlines()[-1].strip()[:200] if str(e).strip() else type(e).__name__}); "
            "the file may be damaged"
        ) from None
    return model.eval().requires_grad_(False)


def load_model(path: str | os.PathLike) -> SwinIR:
    """Load any SwinIR checkpoint (official .pth or our safetensors) with its config inferred; see `infer.py`."""
    path = Path(path)
    sd, meta = read_checkpoint(path)  # already unwrapped
    return _build(sd, path.name, meta)


def interop_buffers(config: SwinIRConfig) -> dict[str, torch.Tensor]:
    """The buffers official-layout readers (spandrel, ComfyUI's Load Upscale Model) expect to find."""
    w = config.window_size
    size = 64 if w == 8 else 18 * w  # the official training patch sizes (64 for window 8, 126 for window 7)
    index = windows.relative_position_index(w).view(w * w, w * w)
    mask = windows.official_shift_mask(size, size, w, w // 2)
    out = {}
    for i, depth in enumerate(config.depths):
        for j in range(depth):
            prefix = f"layers.{i}.residual_group.blocks.{j}."
            out[prefix + "attn.relative_position_index"] = index.clone()
            if j % 2:
                out[prefix + "attn_mask"] = mask.clone()
    return out


def save_safetensors(
    model: SwinIR, path: str | os.PathLike, *, interop: bool = False, extra: dict[str, str] | None = None
) -> Path:
    """Write weights plus config metadata, atomically. `interop` keeps the recomputable buffers."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if interop:
        tensors.update(interop_buffers(model.config))
    meta = {"format": FORMAT_TAG, **model.config.to_metadata(), **(extra or {})}
    with atomic_target(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, interop: bool = False) -> Path:
    """Official (or any readable) checkpoint to our safetensors, recording the source name and sha256."""
    src = Path(src)
    model = load_model(src)
    return save_safetensors(
        model, dst, interop=interop, extra={"source_file": src.name, "source_sha256": sha256_of(src)}
    )
