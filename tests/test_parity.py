"""Output parity of our SwinIR with the official network (spandrel's faithful port) and config inference.

Every official configuration, randomised configurations, every small input size, both attention paths and
batching. Reference weights are fully random so the body, the bias tables and every branch matter.
"""

from __future__ import annotations

import copy

import math
import random
import zlib
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import swinir
import swinir.network
from swinir import SwinIRConfig
from testkit.reference import (
    TOL,
    build_reference,
    max_diff,
    our_output,
    reference_output,
    save_official,
    small_reference,
)

pytestmark = pytest.mark.usefixtures("single_thread")

# Odd sizes that need padding on both sides and span several windows in each direction.
ODD_SIZES = ((19, 23), (13, 29))

M = dict(embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6, mlp_ratio=2.0, resi_connection="1conv")
S = dict(embed_dim=60, depths=(6,) * 4, num_heads=(6,) * 4, mlp_ratio=2.0, resi_connection="1conv")
L = dict(embed_dim=240, depths=(6,) * 9, num_heads=(8,) * 9, mlp_ratio=2.0, resi_connection="3conv")


@dataclass(frozen=True)
class Official:
    """One official model: the arguments of the authors' main_test_swinir.py, its file name and param key."""

    id: str
    file: str
    key: str
    task: str
    scale: int
    in_chans: int
    img_size: int
    window: int
    img_range: float
    arch: dict
    upsampler: str
    noise_level: int | None = None
    jpeg_quality: int | None = None


OFFICIAL = [
    *(
        Official(f"classical-M-x{s}", f"001_classicalSR_DF2K_s64w8_SwinIR-M_x{s}.pth", "params", "classical_sr", s,
                 3, 64, 8, 1.0, M, "pixelshuffle")
        for s in (2, 3, 4, 8)
    ),
    Official("classical-M-x2-DIV2K-s48", "001_classicalSR_DIV2K_s48w8_SwinIR-M_x2.pth", "params", "classical_sr",
             2, 3, 48, 8, 1.0, M, "pixelshuffle"),
    *(
        Official(f"lightweight-S-x{s}", f"002_lightweightSR_DIV2K_s64w8_SwinIR-S_x{s}.pth", "params",
                 "lightweight_sr", s, 3, 64, 8, 1.0, S, "pixelshuffledirect")
        for s in (2, 3, 4)
    ),
    Official("real-M-x2-GAN", "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x2_GAN.pth", "params_ema", "real_sr", 2, 3,
             64, 8, 1.0, M, "nearest+conv"),
    Official("real-M-x4-GAN", "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth", "params_ema", "real_sr", 4, 3,
             64, 8, 1.0, M, "nearest+conv"),
    Official("real-L-x4-PSNR", "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_PSNR.pth", "params_ema", "real_sr", 4,
             3, 64, 8, 1.0, L, "nearest+conv"),
    Official("gray-denoise-noise25", "004_grayDN_DFWB_s128w8_SwinIR-M_noise25.pth", "params", "gray_denoise", 1, 1,
             128, 8, 1.0, M, "", noise_level=25),
    Official("color-denoise-noise50", "005_colorDN_DFWB_s128w8_SwinIR-M_noise50.pth", "params", "color_denoise", 1,
             3, 128, 8, 1.0, M, "", noise_level=50),
    Official("gray-jpeg-q10", "006_CAR_DFWB_s126w7_SwinIR-M_jpeg10.pth", "params", "gray_jpeg", 1, 1, 126, 7, 255.0,
             M, "", jpeg_quality=10),
    Official("color-jpeg-q40", "006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg40.pth", "params", "color_jpeg", 1, 3, 126, 7,
             255.0, M, "", jpeg_quality=40),
]


def expected_config(o: Official) -> SwinIRConfig:
    return SwinIRConfig(
        task=o.task, scale=o.scale, in_chans=o.in_chans, window_size=o.window, img_range=o.img_range,
        upsampler=o.upsampler, noise_level=o.noise_level, jpeg_quality=o.jpeg_quality, **o.arch,
    )


def _nan_fill(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return tensor.fill_(float("nan"))


@pytest.mark.parametrize("o", OFFICIAL, ids=[o.id for o in OFFICIAL])
def test_official_configuration_parity(o: Official, tmp_path, monkeypatch):
    ref = build_reference(
        upscale=o.scale, in_chans=o.in_chans, img_size=o.img_size, window_size=o.window, img_range=o.img_range,
        depths=list(o.arch["depths"]), embed_dim=o.arch["embed_dim"], num_heads=list(o.arch["num_heads"]),
        mlp_ratio=o.arch["mlp_ratio"], upsampler=o.upsampler, resi_connection=o.arch["resi_connection"],
        seed=zlib.crc32(o.id.encode()) % 1000,
    )
    path = save_official(ref, tmp_path / o.file, o.key)
    # The slow truncated-normal init of the big models is replaced by NaN: every value it would have written
    # must be overwritten by the checkpoint, or the outputs below are NaN and the test fails.
    monkeypatch.setattr(torch.nn.init, "trunc_normal_", _nan_fill)
    model = swinir.load_model(path)
    monkeypatch.undo()

    assert model.config == expected_config(o)
    assert model.config.source == o.file

    gen = torch.Generator().manual_seed(1)
    padded_calls = []
    original = swinir.network.WindowAttention.padded_weights

    def spy(self, *args, **kwargs):
        padded_calls.append(args)
        return original(self, *args, **kwargs)

    for h, w in ODD_SIZES:
        x = torch.rand(1, o.in_chans, h, w, generator=gen)
        expected = reference_output(ref, x)
        got = our_output(model, x)
        assert got.shape == (1, o.in_chans, h * o.scale, w * o.scale)
        assert max_diff(got, expected) <= TOL, f"{h}x{w}"
        # The CUDA path (head dims padded to a multiple of 8, 8-aligned mask rows), run on the CPU.
        monkeypatch.setitem(swinir.network.ALIGN, "cpu", 8)
        monkeypatch.setattr(swinir.network.WindowAttention, "padded_weights", spy)
        padded = our_output(model, x)
        monkeypatch.undo()
        assert max_diff(padded, expected) <= TOL, f"{h}x{w} padded"
    head_dim = o.arch["embed_dim"] // o.arch["num_heads"][0]
    assert padded_calls and {a[0] for a in padded_calls} == {-(-head_dim // 8) * 8}

    # The comparison is meaningful only if the body matters: one shifted block's attention changes the output.
    with torch.no_grad():
        model.layers[-1].residual_group.blocks[1].attn.qkv.weight.zero_()
    assert max_diff(our_output(model, x), got) > 100 * TOL


# --- randomised configurations ---------------------------------------------------------------------------------

SCALES = {"pixelshuffle": (8, 3, 2, 4), "pixelshuffledirect": (3, 4, 2), "nearest+conv": (4, 2), "": (1,)}
UPSAMPLER_ORDER = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")
TASK_OF = {"pixelshuffle": "classical_sr", "pixelshuffledirect": "lightweight_sr", "nearest+conv": "real_sr"}
SEEDS = range(12)


def random_case(seed: int) -> dict:
    rng = random.Random(seed)
    upsampler = UPSAMPLER_ORDER[seed % 4]
    scale = SCALES[upsampler][(seed // 4) % len(SCALES[upsampler])]
    n_layers = rng.randint(1, 3)
    heads = [rng.randint(1, 4) for _ in range(n_layers)]
    lcm = math.lcm(*heads)
    embed = lcm * rng.randint(max(1, -(-8 // lcm)), max(1, 40 // lcm))
    window = rng.randint(4, 8)
    if upsampler == "":  # cover both scale-1 families of the window heuristic
        window = 7 if seed % 8 == 3 else rng.choice((4, 5, 6, 8))
    in_chans = rng.choice((1, 3))
    if upsampler == "":
        color = "gray" if in_chans == 1 else "color"
        task = f"{color}_jpeg" if window == 7 else f"{color}_denoise"
        img_range = 255.0 if window == 7 else 1.0
    else:
        task, img_range = TASK_OF[upsampler], 1.0
    return dict(
        task=task, scale=scale, in_chans=in_chans, window=window, img_range=img_range, embed_dim=embed,
        depths=[rng.randint(1, 4) for _ in range(n_layers)], num_heads=heads, mlp_ratio=rng.choice((1.0, 2.0, 4.0)),
        upsampler=upsampler, resi=rng.choice(("1conv", "3conv")),
        sizes=[(rng.randint(window // 2 + 1, 3 * window), rng.randint(window // 2 + 1, 3 * window)) for _ in range(2)],
    )


def _case_id(seed: int) -> str:
    c = random_case(seed)
    up = c["upsampler"] or "none"
    return f"seed{seed}-{up}-x{c['scale']}-w{c['window']}-c{c['in_chans']}-d{c['embed_dim']}-{c['resi']}"


@pytest.mark.parametrize("seed", SEEDS, ids=[_case_id(s) for s in SEEDS])
def test_random_configuration_round_trip(seed: int, tmp_path):
    c = random_case(seed)
    ref = build_reference(
        upscale=c["scale"], in_chans=c["in_chans"], img_size=8 * c["window"], window_size=c["window"],
        img_range=c["img_range"], depths=c["depths"], embed_dim=c["embed_dim"], num_heads=c["num_heads"],
        mlp_ratio=c["mlp_ratio"], upsampler=c["upsampler"], resi_connection=c["resi"], seed=seed,
    )
    path = save_official(ref, tmp_path / f"random_model_{seed}.pth")
    model = swinir.load_model(path)
    assert model.config == SwinIRConfig(
        task=c["task"], scale=c["scale"], in_chans=c["in_chans"], window_size=c["window"], img_range=c["img_range"],
        embed_dim=c["embed_dim"], depths=c["depths"], num_heads=c["num_heads"], mlp_ratio=c["mlp_ratio"],
        upsampler=c["upsampler"], resi_connection=c["resi"],
    )
    gen = torch.Generator().manual_seed(seed)
    for h, w in c["sizes"]:
        x = torch.rand(2, c["in_chans"], h, w, generator=gen)
        assert max_diff(our_output(model, x), reference_output(ref, x)) <= TOL, f"{h}x{w}"


# --- every small input size -----------------------------------------------------------------------------------

SQUARES = [(n, n) for n in range(1, 21)]
NON_SQUARE = [
    (1, 2), (2, 1), (1, 7), (7, 1), (1, 8), (8, 1), (1, 9), (9, 1), (1, 20), (20, 1), (2, 13), (13, 2),
    (3, 16), (16, 3), (4, 11), (11, 4), (5, 8), (8, 5), (6, 15), (15, 6), (7, 14), (14, 7), (7, 9), (9, 7),
    (8, 17), (17, 8), (10, 19), (19, 10), (12, 20), (20, 12), (15, 16), (16, 15), (17, 20), (20, 17),
    (18, 5), (5, 18), (19, 20), (20, 19),
]
SIZES = SQUARES + NON_SQUARE


@pytest.fixture(scope="module")
def size_models(tmp_path_factory):
    """Window-8 lightweight x2 (RGB) and window-7 JPEG (gray, img_range 255) small models, with references."""
    out = {}
    tmp = tmp_path_factory.mktemp("sizes")
    specs = {
        8: dict(window=8, upscale=2, upsampler="pixelshuffledirect", in_chans=3, img_range=1.0),
        7: dict(window=7, upscale=1, upsampler="", in_chans=1, img_range=255.0),
    }
    for window, spec in specs.items():
        ref = small_reference(**spec, depths=(2, 2), num_heads=(2, 4), embed_dim=16, seed=window)
        model = swinir.load_model(save_official(ref, tmp / f"small_w{window}.pth"))
        assert model.config.window_size == window
        out[window] = ref, model
    return out


@pytest.mark.parametrize("window", (8, 7), ids=("w8", "w7"))
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_every_small_input_size(size_models, window, size):
    ref, model = size_models[window]
    h, w = size
    s = model.config.scale
    x = torch.rand(1, model.config.in_chans, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
    got = our_output(model, x)
    assert got.shape == (1, model.config.in_chans, h * s, w * s)
    padded = swinir.network.pad_to_window(x, window)
    assert padded.shape[-2:] == (-(-h // window) * window, -(-w // window) * window)
    assert torch.equal(padded[..., :h, :w], x)
    assert max_diff(got, reference_output(ref, padded)[..., : h * s, : w * s]) <= TOL
    if (-h) % window < h and (-w) % window < w:  # the official reflect padding is possible
        assert max_diff(got, reference_output(ref, x)) <= TOL


def test_pad_to_window_reflects_like_the_official_code():
    x = torch.rand(1, 3, 11, 5)
    assert torch.equal(swinir.network.pad_to_window(x, 8), F.pad(x, (0, 3, 0, 5), "reflect"))
    y = torch.rand(1, 1, 3, 2)  # pads of 5 and 6 exceed the sides: replicate
    assert torch.equal(swinir.network.pad_to_window(y, 8), F.pad(y, (0, 6, 0, 5), "replicate"))


# --- attention paths, batching, weight updates -------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_window(tmp_path_factory):
    """A window-4 model whose inputs span several windows in each direction (plain and edge-masked ones)."""
    ref = small_reference(window=4, upscale=2, upsampler="pixelshuffle", depths=(2, 3), num_heads=(2, 4),
                          embed_dim=16, seed=5)
    path = save_official(ref, tmp_path_factory.mktemp("multi") / "multi_window.pth")
    return ref, swinir.load_model(path)


def test_plain_matmul_attention_matches_sdpa(multi_window, monkeypatch):
    """The paths autograd, autocast and the CUDA kernels take (CPU inference has its own, below)."""
    ref, model = multi_window
    x = torch.rand(1, 3, 15, 18, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(swinir.network, "_cpu_fast_path", lambda x: False)
    fused = our_output(model, x)

    def forbidden(*args, **kwargs):
        raise AssertionError("scaled_dot_product_attention called with USE_SDPA = False")

    monkeypatch.setattr(swinir.network, "USE_SDPA", False)
    monkeypatch.setattr(swinir.network.F, "scaled_dot_product_attention", forbidden)
    plain = our_output(model, x)
    monkeypatch.undo()

    assert swinir.network.USE_SDPA is True
    assert max_diff(plain, fused) <= TOL
    assert max_diff(plain, reference_output(ref, x)) <= TOL


def test_cpu_inference_runs_its_own_attention(multi_window, monkeypatch):
    """fp32 inference on the CPU runs `attend_cpu` (batched matmuls, exp2, one division), never the fused kernel,
    and matches both the fused-kernel path and the official network."""
    ref, model = multi_window
    x = torch.rand(2, 3, 15, 18, generator=torch.Generator().manual_seed(13))
    monkeypatch.setattr(swinir.network, "_cpu_fast_path", lambda x: False)
    fused = our_output(model, x)
    monkeypatch.undo()

    calls = []
    original = swinir.network.WindowAttention.attend_cpu

    def spy(self, *args):
        calls.append(args[1:])
        return original(self, *args)

    def forbidden(*args, **kwargs):
        raise AssertionError("scaled_dot_product_attention called on the CPU inference path")

    monkeypatch.setattr(swinir.network.WindowAttention, "attend_cpu", spy)
    monkeypatch.setattr(swinir.network.F, "scaled_dot_product_attention", forbidden)
    own = our_output(model, x)
    monkeypatch.undo()
    assert {shifted for _, shifted in calls} == {False, True}
    assert {group for group, shifted in calls if shifted} == {0, 1, 2, 3}  # every shift pattern's mask
    assert max_diff(own, fused) <= TOL
    assert max_diff(own, reference_output(ref, x)) <= TOL


def test_scores_past_the_exponent_range_fall_back_to_a_softmax(multi_window, monkeypatch):
    """`attend_cpu` leaves out the softmax's subtraction of the row maximum; scores whose powers of two overflow
    or underflow fp32 are redone with a softmax, and the output still matches the official network's."""
    ref, loaded = multi_window
    model = swinir.SwinIR(loaded.config).eval()
    model.load_state_dict(loaded.state_dict())
    other = copy.deepcopy(ref)
    c = model.config.embed_dim
    for net in (model, other):
        qkv = net.layers[0].residual_group.blocks[1].attn.qkv
        with torch.no_grad():
            qkv.weight[:c].mul_(60.0)  # q: scores of several hundred
    x = torch.rand(1, 3, 15, 18, generator=torch.Generator().manual_seed(14))
    softmaxes = []
    real_softmax = torch.softmax

    def counted(*args, **kwargs):
        softmaxes.append(args[0].shape)
        return real_softmax(*args, **kwargs)

    monkeypatch.setattr(torch, "softmax", counted)
    got = our_output(model, x)
    monkeypatch.undo()
    expected = reference_output(other, x)
    assert softmaxes, "no head was redone with a softmax: the scores did not leave fp32's exponent range"
    assert torch.isfinite(got).all()
    assert max_diff(got, expected) <= 10 * TOL
    assert max_diff(got, reference_output(ref, x)) > 1000 * TOL  # the scaled scores change the output


def test_batch_equals_images_one_by_one(multi_window):
    ref, model = multi_window
    x = torch.rand(3, 3, 13, 17, generator=torch.Generator().manual_seed(4))
    batch = our_output(model, x)
    assert batch.shape == (3, 3, 26, 34)
    for i in range(3):
        assert max_diff(batch[i : i + 1], our_output(model, x[i : i + 1])) <= TOL
    assert max_diff(batch, reference_output(ref, x)) <= TOL
    assert max_diff(batch[0], batch[1]) > 100 * TOL  # different images give different outputs


# Bytes of one chunk for the window-4, width-16 model on a batch of 2: one window of both images, or six.
@pytest.mark.parametrize("chunk_bytes", [1, 6 * 2 * 16 * 16 * 4], ids=["one-window", "six-windows"])
def test_blocks_run_in_chunks_give_the_same_output(multi_window, chunk_bytes, monkeypatch):
    """Inference runs each block over chunks of windows, in place; chunks that cut the shift groups anywhere, over a
    batch, give the whole-image result (and the official one)."""
    ref, model = multi_window
    x = torch.rand(2, 3, 21, 26, generator=torch.Generator().manual_seed(8))
    whole = our_output(model, x)
    chunked_runs = []
    real_tokens = swinir.memory.block_chunk_tokens

    def small_chunks(width, itemsize, device_type):
        chunked_runs.append(real_tokens(width, itemsize, device_type))
        return max(1, chunk_bytes // (width * itemsize))

    monkeypatch.setattr(swinir.memory, "block_chunk_tokens", small_chunks)
    chunked = our_output(model, x)
    assert chunked_runs, "the blocks did not ask for a chunk size"
    assert max_diff(chunked, whole) <= TOL
    assert max_diff(chunked, reference_output(ref, x)) <= TOL


@pytest.mark.parametrize("align", [1, 8], ids=["cpu-path", "padded-path"])
def test_weights_changed_after_a_forward_are_used(multi_window, align, monkeypatch):
    """The mask and padded-weight caches must not outlive a reload or an in-place update of the weights."""
    monkeypatch.setitem(swinir.network.ALIGN, "cpu", align)
    ref, loaded = multi_window
    model = swinir.SwinIR(loaded.config).eval()
    model.load_state_dict(loaded.state_dict())
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(6))
    assert max_diff(our_output(model, x), reference_output(ref, x)) <= TOL  # fills the caches

    other = small_reference(window=4, upscale=2, upsampler="pixelshuffle", depths=(2, 3), num_heads=(2, 4),
                            embed_dim=16, seed=99)
    model.load_state_dict(swinir.model_from_state_dict(other.state_dict()).state_dict())
    assert max_diff(our_output(model, x), reference_output(other, x)) <= TOL

    before = our_output(model, x)
    table = model.layers[0].residual_group.blocks[1].attn.relative_position_bias_table
    with torch.no_grad():
        table.add_(torch.arange(table.numel(), dtype=table.dtype).view_as(table) % 3)
        other.layers[0].residual_group.blocks[1].attn.relative_position_bias_table.copy_(table)
    after = our_output(model, x)
    assert max_diff(after, reference_output(other, x)) <= TOL
    assert max_diff(after, before) > 100 * TOL

    qkv = model.layers[1].residual_group.blocks[0].attn.qkv
    with torch.no_grad():
        qkv.weight.mul_(1.5)
        other.layers[1].residual_group.blocks[0].attn.qkv.weight.copy_(qkv.weight)
    assert max_diff(our_output(model, x), reference_output(other, x)) <= TOL


@pytest.mark.parametrize("align", [1, 8], ids=["cpu-path", "padded-path"])
def test_gradient_forward_after_inference_mode_forward(multi_window, align, monkeypatch):
    """Training after an inference-mode pass (e.g. a validation step) on the same size must still backpropagate."""
    monkeypatch.setitem(swinir.network.ALIGN, "cpu", align)
    _, loaded = multi_window
    model = swinir.SwinIR(loaded.config)
    model.load_state_dict(loaded.state_dict())
    # A size no other test uses, so the first pass over it (which builds the cached window layouts) is this one.
    x = torch.rand(1, 3, 37, 42, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        expected = model(x)
    out = model(x)
    out.mean().backward()
    attn = model.layers[0].residual_group.blocks[1].attn
    assert attn.relative_position_bias_table.grad is not None
    assert attn.qkv.weight.grad is not None and attn.qkv.weight.grad.abs().sum() > 0
    assert max_diff(out.detach(), expected) <= TOL
