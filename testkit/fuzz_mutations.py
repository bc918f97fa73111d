"""What the fuzzer feeds the checkpoint readers, `swinir.restore` and the nodes' work layer (issue 14, part 3).

Every decision of a case is drawn from one `random.Random`, so hypothesis can shrink a failing case through its
`st.randoms()` (tests/test_fuzz.py) and the long run (`python -m bench.fuzz_long`) can replay case N exactly.

- Seeds: real small checkpoints written by the library itself (our safetensors, official-style `.pth` zips
  `{'params': sd}`, a legacy pre-zip `.pth`) and two canaries: `.pth` files whose pickle REDUCEs `exec` of code
  that creates a marker file and sets a flag, so a case that ran code is seen.
- Mutations: bytes (flips, interesting integers, inserts, cuts, splices), the safetensors header as JSON (shapes,
  dtypes, offsets, metadata, nesting, 100 GB claims), the zip container (members rewritten, removed, compressed,
  directory fields), the pickle stream opcode by opcode (integer and string arguments, dangerous globals,
  injected calls), and the weights themselves (keys, shapes, dtypes, extra entries, wrappers) saved properly.
- Images: a valid input with zero to four facets made bad or extreme (dimensions, empty or terabyte sizes held as
  stride-0 views, dtypes, sparse/meta, NaN/inf, not a tensor, bad options).
"""

from __future__ import annotations

import io
import json
import pickletools
import random
import struct
import zipfile
from pathlib import Path

CANARY_FLAG = "FUZZ_CANARY_RAN"

# Official-style names: for scale-1 models the name decides the task, as for real downloads.
SEED_FORMATS = {
    "sr.safetensors": "safetensors",
    "dn_interop.safetensors": "safetensors",
    "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x2.pth": "zip",
    "005_colorDN_DFWB_s128w8_SwinIR-M_noise15.pth": "zip",
    "legacy_x2.pth": "legacy",
    "canary.pth": "zip",
    "canary_legacy.pth": "legacy",
}
SEED_NAMES = tuple(SEED_FORMATS)


# --------------------------------------------------------------------------------------------------- seed files


def canary_code(marker: Path) -> str:
    """Python that, if it ever ran, leaves a marker file and sets a flag in the worker."""
    return f"import sys; setattr(sys.modules['__main__'], {CANARY_FLAG!r}, True); open({str(marker)!r}, 'w').close()"


class _Canary:
    """Unpickling this runs `exec(code)`: the stand-in for a malicious checkpoint's payload."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def tiny_models():
    """A lightweight x2 SR model and a colour denoise model, small enough to load in milliseconds."""
    import torch

    import swinir

    torch.manual_seed(0)
    sr = swinir.SwinIR(swinir.SwinIRConfig(
        task="lightweight_sr", scale=2, window_size=4, embed_dim=12, depths=(2,), num_heads=(2,),
        upsampler="pixelshuffledirect",
    )).eval()
    dn = swinir.SwinIR(swinir.SwinIRConfig(
        task="color_denoise", scale=1, window_size=4, embed_dim=12, depths=(2, 1), num_heads=(2, 3), upsampler="",
        resi_connection="3conv", noise_level=15,
    )).eval()
    return sr, dn


def seed_weights() -> dict[str, tuple[dict, dict[str, str]]]:
    """Each seed's state dict and safetensors metadata, for the mutations that edit the weights themselves."""
    from swinir.checkpoint import FORMAT_TAG, interop_buffers

    sr, dn = tiny_models()
    sr_sd, dn_sd = dict(sr.state_dict()), dict(dn.state_dict())
    sr_meta = {"format": FORMAT_TAG, **sr.config.to_metadata()}
    dn_meta = {"format": FORMAT_TAG, **dn.config.to_metadata()}
    out = {name: (sr_sd, {}) for name in SEED_NAMES}
    out["sr.safetensors"] = (sr_sd, sr_meta)
    out["dn_interop.safetensors"] = ({**dn_sd, **interop_buffers(dn.config)}, dn_meta)
    out["005_colorDN_DFWB_s128w8_SwinIR-M_noise15.pth"] = (dn_sd, {})
    return out


def make_seeds(folder: Path, marker: Path) -> dict[str, Path]:
    """Write the seed checkpoints into `folder`; the canaries' payload would create `marker`."""
    import torch

    import swinir

    folder.mkdir(parents=True, exist_ok=True)
    sr, dn = tiny_models()
    sr_sd, dn_sd = sr.state_dict(), dn.state_dict()
    names = iter(SEED_NAMES)
    paths = {name: folder / name for name in SEED_NAMES}
    swinir.save_safetensors(sr, paths[next(names)])
    swinir.save_safetensors(dn, paths[next(names)], interop=True)
    torch.save({"params": sr_sd}, paths[next(names)])
    torch.save({"params": dn_sd, "params_ema": dn_sd}, paths[next(names)])
    torch.save({"params": sr_sd}, paths[next(names)], _use_new_zipfile_serialization=False)
    evil = {"params": {**sr_sd, "payload": _Canary(canary_code(marker))}}
    torch.save(evil, paths[next(names)])
    torch.save(evil, paths[next(names)], _use_new_zipfile_serialization=False)
    return paths


# ---------------------------------------------------------------------------------------------------- mutations

INTERESTING_INTS = (
    0, 1, 2, 3, 4, 7, 8, 16, 64, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
    0xFFFFFFFF, 1 << 32, 1 << 40, 100_000_000_000, (1 << 63) - 1, (1 << 64) - 1, -1, -2, -(1 << 31), -(1 << 63),
)
HUGE_DIMS = (1 << 17, 1_000_000, 1 << 31, 1 << 40, 25_000_000_000)
ST_DTYPES = ("F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "C64", "F8_E4M3", "F8_E5M2",
             "F4", "XX", "", 7, None)
META_FIELDS = ("task", "scale", "in_chans", "window_size", "img_range", "embed_dim", "depths", "num_heads",
               "mlp_ratio", "upsampler", "resi_connection", "num_feat", "patch_norm", "noise_level",
               "jpeg_quality", "level_range")
META_VALUES = ("0", "-1", "1", "2", "7", "8", "1e309", "nan", "inf", "", "2,,3", "0,0", "x", "9" * 5000,
               "pixelshuffle", "color_jpeg", "real_sr", "3conv", "True", "1,2,3,4,5,6,7,8", "180", "1000000")
PICKLE_STRINGS = (
    "storage", "module", "FloatStorage", "HalfStorage", "LongStorage", "BoolStorage", "ComplexFloatStorage",
    "QInt8Storage", "UntypedStorage", "params", "params_ema", "state_dict", "model", "module.conv_first.weight",
    "conv_first.weight", "attn_mask", "relative_position_index", "cpu", "cuda", "meta", "0", "1", "99", "",
    "x" * 300,
)
PICKLE_GLOBALS = (
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_sparse_tensor"), ("torch._utils", "_rebuild_qtensor"),
    ("torch._utils", "_rebuild_meta_tensor_no_storage"), ("torch", "FloatStorage"), ("torch", "ByteStorage"),
    ("collections", "OrderedDict"), ("builtins", "exec"), ("builtins", "eval"), ("builtins", "getattr"),
    ("os", "system"), ("posix", "system"), ("subprocess", "Popen"), ("builtins", "open"), ("torch", "load"),
    ("numpy.core.multiarray", "_reconstruct"), ("__builtin__", "set"), ("builtins", "bytearray"),
)


def _pick_position(data: bytes, rng: random.Random) -> int:
    """Mostly where the parsers look: the headers at the front and the zip directory at the end."""
    n = len(data)
    if n == 0:
        return 0
    r = rng.random()
    if r < 0.55:
        return rng.randrange(min(n, 8192))
    if r < 0.8:
        return max(0, n - 1 - rng.randrange(min(n, 2048)))
    return rng.randrange(n)


def _encode_int(value: int, width: int) -> bytes:
    return (value % (1 << (8 * width))).to_bytes(width, "little")


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    op = rng.randrange(9)
    p = _pick_position(data, rng)
    if op == 0 and b:  # flip bits
        for _ in range(rng.randint(1, 4)):
            q = min(len(b) - 1, p + rng.randrange(8))
            b[q] ^= 1 << rng.randrange(8)
    elif op == 1 and b:  # interesting byte
        b[min(p, len(b) - 1)] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x01, rng.randrange(256)))
    elif op == 2:  # interesting integer, little-endian
        width = rng.choice((1, 2, 4, 8))
        b[p : p + width] = _encode_int(rng.choice(INTERESTING_INTS), width)
    elif op == 3:  # insert
        b[p:p] = rng.randbytes(rng.randint(1, 16))
    elif op == 4:  # cut a range
        del b[p : p + rng.randint(1, 64)]
    elif op == 5:  # truncate
        del b[p:]
    elif op == 6 and b:  # copy a chunk elsewhere
        q, k = rng.randrange(len(b)), rng.randint(1, 256)
        b[p:p] = b[q : q + k]
    elif op == 7:  # append garbage
        b += rng.randbytes(rng.randint(1, 64))
    else:  # overwrite a run with one value
        b[p : p + rng.randint(1, 32)] = bytes([rng.choice((0, 0xFF, 0x20, 0x7B))]) * rng.randint(1, 32)
    return bytes(b)


# -- safetensors


def _split_safetensors(data: bytes):
    if len(data) < 8:
        return None
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + n])
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return (header, data[8 + n :]) if isinstance(header, dict) else None


def mutate_safetensors(data: bytes, rng: random.Random) -> bytes:
    split = _split_safetensors(data)
    if split is None:
        return mutate_bytes(data, rng)
    header, body = split
    tensors = [k for k in header if k != "__metadata__"]
    key = rng.choice(tensors) if tensors else None
    entry = header.get(key) if key else None
    op = rng.randrange(11)
    if op == 0 and isinstance(entry, dict):  # one dimension changed, added or removed
        shape = list(entry.get("shape") or [1])
        i = rng.randrange(len(shape))
        choice = rng.randrange(4)
        if choice == 0:
            shape[i] = rng.choice((0, 1, -1, 2, *HUGE_DIMS, 1 << 64))
        elif choice == 1:
            shape.insert(i, rng.choice((0, 1, 2, *HUGE_DIMS)))
        elif choice == 2:
            del shape[i]
        else:
            shape = [shape[i] * rng.choice((2, 3)), *shape[:i], *shape[i + 1 :]]  # same bytes, other layout
        entry["shape"] = shape
    elif op == 1 and isinstance(entry, dict):
        entry["dtype"] = rng.choice(ST_DTYPES)
    elif op == 2 and isinstance(entry, dict):
        start, end = (entry.get("data_offsets") or [0, 0])[:2]
        entry["data_offsets"] = rng.choice((
            [end, start], [0, 100_000_000_000], [-1, end], [start, start], [start + 1, end + 1],
            [start, end + rng.randint(1, 64)], [start, 1 << 64], [float(start), end], [str(start), end], [start],
            None, [start, end, 0],
        ))
    elif op == 3 and key:  # 100 GB claimed by one tensor
        header[key] = {"dtype": "F32", "shape": [25_000_000_000], "data_offsets": [0, 100_000_000_000]}
    elif op == 4 and key:  # delete, duplicate or rename an entry
        what = rng.randrange(3)
        if what == 0:
            del header[key]
        else:
            new = rng.choice(("module." + key, key + "x", "attn_mask", "params", "", key.replace("0", "1", 1)))
            header[new] = header[key] if what == 1 else header.pop(key)
    elif op == 5:  # our metadata with edited fields
        meta = header.setdefault("__metadata__", {})
        if isinstance(meta, dict):
            meta["format"] = "comfyui-swinir/1"
            for _ in range(rng.randint(1, 3)):
                meta[rng.choice(META_FIELDS)] = rng.choice(META_VALUES)
    elif op == 6:
        header["__metadata__"] = rng.choice(([1, 2], "text", 5, None, {"format": 1}, {"a": {"b": "c"}}))
    elif op == 7 and key:  # a wrong type where a tensor entry should be
        header[key] = rng.choice((None, [], 3, "F32", {"dtype": "F32"}, {"shape": [1]}, 1e308))
    elif op == 8 and key:  # deep nesting (a recursion bomb for JSON parsers)
        depth = rng.choice((50, 200, 5000, 100_000))
        raw = json.dumps(header, separators=(",", ":"))
        nested = '{"deep":' + "[" * depth + "1" + "]" * depth + ","
        text = nested + raw[1:]
        return struct.pack("<Q", len(text)) + text.encode() + body
    elif op == 9:  # header length field that disagrees with the header
        raw = json.dumps(header).encode()
        n = rng.choice((len(raw) + rng.randint(1, 64), max(1, len(raw) - rng.randint(1, 64)), 99_999_999, 1 << 40))
        return struct.pack("<Q", n) + raw + body
    else:
        return mutate_bytes(data, rng)
    raw = json.dumps(header, separators=(",", ":")).encode()
    if rng.random() < 0.3:
        raw += b" " * rng.randrange(8)  # the format allows trailing padding
    return struct.pack("<Q", len(raw)) + raw + body


# -- pickle streams (zip data.pkl, and the legacy file's concatenated pickles)


def _pickle_ops(data: bytes) -> list[tuple[int, int, object]]:
    """(start, end, arg) of each opcode of the successive pickles at the front of `data` (a legacy file holds five
    of them before its raw storage bytes)."""
    ops = []
    pos = 0
    while pos < len(data) and data[pos : pos + 1] == b"\x80":
        stream = io.BytesIO(data)
        stream.seek(pos)
        try:
            items = list(pickletools.genops(stream))
        except Exception:  # a damaged stream: keep what parsed
            break
        for i, (opcode, arg, start) in enumerate(items):
            end = items[i + 1][2] if i + 1 < len(items) else start + 1
            ops.append((start, end, opcode, arg))
        pos = items[-1][2] + 1 if items else len(data)
    return ops


def _encode_pickle_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    if -(1 << 31) <= value < (1 << 31):
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _encode_pickle_str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def mutate_pickle(data: bytes, rng: random.Random, code: str) -> bytes:
    ops = _pickle_ops(data)
    if not ops:
        return mutate_bytes(data, rng)
    start, end, opcode, arg = rng.choice(ops)
    op = rng.randrange(8)
    ints = [o for o in ops if isinstance(o[3], int) and o[2].name in ("BININT1", "BININT2", "BININT", "LONG1", "INT")]
    strs = [o for o in ops if isinstance(o[3], str) and o[2].name in ("BINUNICODE", "SHORT_BINUNICODE", "BINSTRING",
                                                                      "SHORT_BINSTRING", "UNICODE")]
    globs = [o for o in ops if o[2].name in ("GLOBAL", "STACK_GLOBAL")]
    if op == 0 and ints:
        start, end, _, _ = rng.choice(ints)
        new = _encode_pickle_int(rng.choice(INTERESTING_INTS + HUGE_DIMS))
    elif op == 1 and strs:
        start, end, _, _ = rng.choice(strs)
        new = _encode_pickle_str(rng.choice(PICKLE_STRINGS))
    elif op == 2 and globs and globs[0][2].name == "GLOBAL":
        start, end, _, _ = rng.choice(globs)
        new = _global(*rng.choice(PICKLE_GLOBALS))
    elif op == 3:  # delete an opcode
        new = b""
    elif op == 4:  # duplicate it
        new = data[start:end] * 2
    elif op == 5 and len(ops) > 1:  # swap with the next one
        i = next(i for i, o in enumerate(ops) if o[0] == start)
        if i + 1 < len(ops):
            n_start, n_end = ops[i + 1][0], ops[i + 1][1]
            return data[:start] + data[n_start:n_end] + data[start:n_start] + data[n_end:]
        new = b""
    elif op == 6:  # inject a call of a dangerous global on the canary's code, right here
        module, name = rng.choice((("builtins", "exec"), ("builtins", "eval"), ("os", "system"),
                                   ("posix", "system"), ("builtins", "exec")))
        return data[:start] + _global(module, name) + b"(" + _encode_pickle_str(code) + b"tR" + data[start:]
    else:  # a random opcode byte before this one
        return data[:start] + bytes([rng.randrange(256)]) + data[start:]
    return data[:start] + new + data[end:]


# -- zip container


def _zip_members(data: bytes):
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return [(info.filename, z.read(info.filename)) for info in z.infolist()]
    except Exception:  # not a readable zip any more (an earlier mutation): mutate its bytes instead
        return None


def _rezip(members, rng: random.Random, compress: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, content in members:
            method = zipfile.ZIP_DEFLATED if name == compress else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(name, date_time=(2021, 1, 1, 0, 0, 0)), content, compress_type=method)
    return buf.getvalue()


def _edit_zip_directory(data: bytes, rng: random.Random) -> bytes:
    """Change one field of a local or central directory record: method, sizes, offset or CRC."""
    b = bytearray(data)
    sig = rng.choice((b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"))
    spots, i = [], b.find(sig)
    while i >= 0:
        spots.append(i)
        i = b.find(sig, i + 1)
    if not spots:
        return mutate_bytes(data, rng)
    i = rng.choice(spots)
    fields = {  # offset: width, per record type
        b"PK\x03\x04": ((8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)),
        b"PK\x01\x02": ((10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (42, 4)),
        b"PK\x05\x06": ((8, 2), (10, 2), (12, 4), (16, 4), (20, 2)),
    }[sig]
    off, width = rng.choice(fields)
    value = rng.choice((0, 8, 12, 14, 1, 0xFFFF, 0xFFFFFFFF, 1 << 30, len(b), len(b) + 1, rng.randrange(1 << 16)))
    b[i + off : i + off + width] = _encode_int(value, width)
    return bytes(b)


def mutate_zip(data: bytes, rng: random.Random, code: str) -> bytes:
    op = rng.randrange(7)
    if op == 0:
        return _edit_zip_directory(data, rng)
    members = _zip_members(data)
    if not members:  # unreadable, or emptied by an earlier removal: mutate its bytes instead
        return mutate_bytes(data, rng)
    names = [n for n, _ in members]
    pkl = next((i for i, n in enumerate(names) if n.endswith("data.pkl")), None)
    if op in (1, 2) and pkl is not None:  # the pickle itself, in a well-formed container
        name, content = members[pkl]
        members[pkl] = (name, mutate_pickle(content, rng, code))
        return _rezip(members, rng)
    i = rng.randrange(len(members))
    name, content = members[i]
    if op == 3:  # a storage record or a small file changed
        members[i] = (name, rng.choice((content[: len(content) // 2], content + content, b"", b"big",
                                        mutate_bytes(content, rng))))
    elif op == 4:  # removed or renamed
        if rng.random() < 0.5:
            del members[i]
        else:
            members[i] = (name.replace("data/", "data/9") if "data/" in name else name + "x", content)
    elif op == 5:  # compressed, as no torch.save writes it; sometimes a bomb of zeros
        if rng.random() < 0.3:
            members[i] = (name, bytes(rng.choice((1 << 20, 16 << 20))))
        return _rezip(members, rng, compress=members[i][0])
    else:
        return mutate_bytes(data, rng)
    return _rezip(members, rng)


# -- the weights themselves: a plausible state dict edited, then saved properly (reaches unwrapping and inference)


def _edit_tensor(t, rng: random.Random):
    import torch

    op = rng.randrange(9)
    if op == 0:
        return t.flatten()
    if op == 1:
        return t.unsqueeze(rng.randrange(t.dim() + 1))
    if op == 2 and t.dim() >= 2:
        return t.transpose(0, 1)
    if op == 3 and t.shape[0] > 1:
        return t[: t.shape[0] // 2]
    if op == 4:
        return torch.cat([t, t])
    if op == 5:
        return t.new_zeros((0, *t.shape[1:]))
    if op == 6:
        dtype = rng.choice((torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int8, torch.bool,
                            torch.complex64, torch.float8_e4m3fn))
        return t.to(dtype)
    if op == 7:
        return t.clone().fill_(rng.choice((float("nan"), float("inf"), 1e30, 0.0)))
    return t.reshape(-1, *t.shape[2:]) if t.dim() >= 2 else t.view(1, -1)


def mutate_weights(sd: dict, meta: dict[str, str], fmt: str, rng: random.Random, code: str) -> bytes:
    """A state dict with one to three edits (keys, shapes, dtypes, extra entries, wrappers), saved in `fmt`."""
    import torch

    sd = dict(sd)
    meta = dict(meta)
    wrap = None
    for _ in range(rng.randint(1, 3)):
        keys = [k for k in sd if isinstance(k, str) and isinstance(sd[k], torch.Tensor)]  # earlier edits add others
        key = rng.choice(keys) if keys else "conv_first.weight"
        op = rng.randrange(10)
        if op == 0 and keys:
            for k in rng.sample(keys, rng.randint(1, min(3, len(keys)))):
                del sd[k]
        elif op == 1 and keys:
            new = rng.choice(("module." + key, key.replace("layers.0", "layers.3"), key.replace("blocks.1", "blocks.7"),
                              key.replace(".weight", ".bias"), "absolute_pos_embed", "conv_up1.weight",
                              "conv_before_upsample.0.weight", "upsample.0.weight", "conv_after_body.weight"))
            sd[new] = sd.pop(key)
        elif op == 2 and keys:
            sd[key] = _edit_tensor(sd[key], rng)
        elif op == 3:
            sd["extra." + str(rng.randrange(9))] = torch.randn(rng.choice(((3,), (0,), (2, 2), (1000, 0))))
        elif op == 4 and fmt != "safetensors":  # things a pickle can hold and a state dict should not
            sd[rng.choice((key, "epoch"))] = rng.choice((7, "text", [1, 2], {"a": torch.zeros(1)}, None,
                                                         torch.zeros(1).expand(100_000, 27),
                                                         torch.eye(3).to_sparse(),
                                                         _Canary(code)))
        elif op == 5 and fmt != "safetensors":
            sd[rng.choice((0, 1.5, None, ("a",)))] = torch.zeros(1)
        elif op == 6 and fmt != "safetensors":
            wrap = rng.choice(("params", "params_ema", "state_dict", "model", "both", "nested", "list", "tensor"))
        elif op == 7 and fmt == "safetensors":
            meta["format"] = "comfyui-swinir/1"
            meta[rng.choice(META_FIELDS)] = rng.choice(META_VALUES)
        elif op == 8 and keys and sd[key].dim():  # more output channels than the layout has
            t = sd[key]
            rows = max(1, min(t.shape[0] * rng.choice((2, 50)), (1 << 20) // max(1, t[0].numel())))
            sd[key] = torch.zeros(rows, *t.shape[1:])
        elif keys:
            sd[key] = torch.zeros(())
    if fmt == "safetensors":
        from safetensors.torch import save

        try:
            return save({k: v.contiguous() for k, v in sd.items()}, metadata=meta)
        except Exception:  # a dtype or shape safetensors cannot store: keep the weights as they were
            return save({k: v.contiguous() for k, v in dict(sd).items() if v.dtype != torch.float8_e4m3fn
                         and v.layout == torch.strided}, metadata=meta)
    obj = {"nested": {"params": {"params": sd}}, "both": {"params": sd, "params_ema": {}}, "list": [sd],
           "tensor": torch.zeros(3)}.get(wrap, {wrap: sd} if wrap else sd)
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=fmt == "zip")
    return buf.getvalue()


def mutate(data: bytes, fmt: str, rng: random.Random, code: str) -> bytes:
    """One fuzzed file from a seed's bytes: one to four mutations, structure-aware ones most of the time."""
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        r = rng.random()
        if r < 0.3:
            data = mutate_bytes(data, rng)
        elif fmt == "safetensors":
            data = mutate_safetensors(data, rng)
        elif fmt == "zip":
            data = mutate_zip(data, rng, code)
        else:
            data = mutate_pickle(data, rng, code)
    return data


# ------------------------------------------------------------------------------------------------- image inputs

VALID_DTYPES = ("float32", "float32", "float16", "bfloat16", "float64")
BAD_DTYPES = ("uint8", "int64", "bool", "complex64", "float8_e4m3fn")
VALID_LAYOUTS = ("contiguous", "contiguous", "channels_last", "transposed", "sliced", "expanded")
BAD_LAYOUTS = ("sparse", "meta")


def claimed_elements(shape) -> int:
    """The element count torch computes for `shape` (overflowing int64 past 2**63)."""
    out = 1
    for s in shape:
        out *= max(s, 1)  # torch multiplies every size, zeros included last, so a zero does not save an overflow
    return out


def _perturb(spec: dict, rng: random.Random) -> None:
    """One facet of a valid spec made bad or extreme."""
    shape, kinds = spec["shape"], spec["kinds"]
    op = rng.randrange(9)
    if op == 0:  # a dimension too many or too few
        if rng.random() < 0.5 and shape:
            i = rng.randrange(len(shape))
            del shape[i], kinds[i]
        else:
            shape.insert(0, rng.choice((1, 2)))
            kinds.insert(0, "batch")
    elif op == 1 and shape:  # empty
        shape[rng.randrange(len(shape))] = 0
    elif op == 2 and shape:  # huge: one dimension, or (mostly) both sides, a terabyte claimed by a stride-0 view
        i = rng.randrange(len(shape))
        shape[i] = rng.choice(HUGE_DIMS)
        if rng.random() < 0.7:
            for j, k in enumerate(kinds):
                if k == "side":
                    shape[j] = max(shape[j], rng.choice(HUGE_DIMS[1:]))
    elif op == 3 and "channels" in kinds:
        shape[kinds.index("channels")] = rng.choice((0, 5, 8, 48))
    elif op == 4:
        spec["dtype"] = rng.choice(BAD_DTYPES)
    elif op == 5:
        spec["layout"] = rng.choice(BAD_LAYOUTS)
    elif op == 6:
        spec["special"] = rng.choice(("nan", "inf", "-inf"))
    elif op == 7:
        spec["container"] = rng.choice(("numpy", "list", "none"))
    else:  # an option the engine must refuse
        bad = {"tile": ("big", -5), "precision": ("fp8", "FP32"), "gray_mode": ("average",), "device": ("cuda", "tpu")}
        kw = spec["kwargs"]
        key = rng.choice([k for k in kw if k in bad])
        kw[key] = rng.choice(bad[key])


# A side of a valid image that the worker still restores (several tiles at every tile size the generator picks);
# one in ten images has a side between 49 and this.
LARGE_SIDE = 320


def image_spec(rng: random.Random, target: str) -> dict:
    """A random image input: a valid one (shape, dtype, memory layout, values, options) with zero to four facets
    made bad or extreme (dimensions, empty or terabyte sizes, dtypes, sparse/meta, NaN/inf, not a tensor)."""
    if target == "work":  # ComfyUI IMAGE: [B, H, W, C], or one [H, W, C]
        kinds = ["batch", "side", "side", "channels"] if rng.random() < 0.85 else ["side", "side", "channels"]
    else:  # NCHW
        kinds = ["batch", "channels", "side", "side"]
    sizes = {"batch": lambda: rng.choice((1, 1, 2, 3)), "channels": lambda: rng.choice((1, 2, 3, 3, 4)),
             "side": lambda: rng.randint(1, 48) if rng.random() < 0.9 else rng.randint(49, LARGE_SIDE)}
    spec = {
        "target": target,
        "container": "tensor",
        "kinds": kinds,
        "shape": [sizes[k]() for k in kinds],
        "dtype": rng.choice(VALID_DTYPES),
        "layout": rng.choice(VALID_LAYOUTS),
        "special": rng.choice(("none", "none", "out_of_range")),
        "requires_grad": rng.random() < 0.1,
        "model": rng.choice(("sr", "dn")),
        "seed": rng.randrange(1 << 30),
    }
    if target == "restore":
        spec["kwargs"] = {"tile": rng.choice((None, "auto", 0, 16, 32, 64)), "overlap": rng.choice((None, 0, 8, 32)),
                          "precision": rng.choice(("fp32", "fp32", "bf16", "fp16")),
                          "gray_mode": rng.choice(("luma", "luma", "per_channel")),
                          "device": rng.choice((None, None, "cpu"))}
    else:
        spec["kwargs"] = {"tile_size": rng.choice((0, 0, 16, 32)), "overlap": rng.choice((0, 8, 32)),
                          "precision": rng.choice(("fp32", "fp32", "bf16", "fp16"))}
    for _ in range(rng.choices((0, 1, 2, 3, 4), (30, 40, 15, 10, 5))[0]):
        _perturb(spec, rng)
    shape = spec["shape"]
    while claimed_elements(shape) >= 1 << 60:  # no tensor, not even a view, can claim more elements than int64 counts
        i = shape.index(max(shape))
        shape[i] >>= 10
    return spec


