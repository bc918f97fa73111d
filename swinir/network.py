"""The SwinIR network (Liang et al., ICCV-W 2021) with the official state-dict key names.

Same arithmetic as the official code, organised for speed: tokens stay channels-last, the roll and the window
partition are one cached gather (see `windows.py`), attention adds the relative-position bias (plus one of four
shift patterns) as a mask, and the bias and masks are recomputed instead of being stored, so any input size works
whatever patch size a checkpoint was trained on. At inference each block runs over chunks of windows sized to the
CPU's cache (`memory.block_chunk_tokens`), writing in place; on the CPU in fp32 its attention is batched matmuls of
its own (`WindowAttention.attend_cpu`), elsewhere `scaled_dot_product_attention`.
"""

from __future__ import annotations

import itertools
import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from . import memory, windows
from .cache import cached, forget
from .config import RGB_MEAN, SwinIRConfig

# One switch between the fused attention kernel and the plain matmul-softmax path (kept for verification).
USE_SDPA = True
# Alignment the fused kernels need, by device type: CUDA's memory-efficient and cuDNN SDPA kernels take a float
# mask only with 8-aligned strides, and head dims that are multiples of 8 (fp16/bf16; 4 in fp32). SwinIR's head dims
# are 30 (M, L) and 10 (S), so on CUDA the qkv/proj weights get zero rows and columns up to the next multiple (a
# padded copy cached per device and dtype) and masks get 8-aligned rows; without that every call falls back to the
# math path. The CPU flash kernel takes any head dim, so the CPU runs unpadded.
ALIGN = {"cuda": 8}
# CPU inference (fp32, no autograd) runs attention as batched matmuls of its own instead (see `attend_cpu`): the CPU
# flash kernel is built for long sequences and spends most of its time on bookkeeping for 64-token windows with
# head dims of 10 or 30. Each head's values get one column of ones and zero columns up to a multiple of this many
# (one AVX2 register of fp32): the scores-times-values product is three times faster for head dim 10 than
# with 10 columns (bench/RESULTS.md).
CPU_VALUE_ALIGN = 8
LOG2E = 1 / math.log(2)
LN2 = math.log(2)

_module_ids = itertools.count()


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _value_width(head_dim: int) -> int:
    """Columns of one head's v in `WindowAttention.attend_cpu`: the head's, one of ones, zeros up to alignment."""
    return _round_up(head_dim + 1, CPU_VALUE_ALIGN)


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    # Training on the CPU: SDPA's backward there is its math path plus mask checks, about 10 % slower than plain.
    if USE_SDPA and not (q.requires_grad and q.device.type == "cpu"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    attn = (q * scale) @ k.transpose(-2, -1) + mask
    return attn.softmax(dim=-1) @ v


def aligned(x: torch.Tensor, align: int) -> torch.Tensor:
    """`x` (contiguous) or, when its rows are not `align`-multiples, a view of a zero-padded buffer whose row stride
    is, so a fused kernel can read it in place instead of padding a copy on every call."""
    n = x.shape[-1]
    if align <= 1 or n % align == 0:
        return x.contiguous()
    buffer = x.new_zeros(*x.shape[:-1], _round_up(n, align))
    buffer[..., :n] = x
    return buffer[..., :n]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self._cache_id = next(_module_ids)
        # Entries keyed on these weights go with the module (a model reloaded per prompt would otherwise leave
        # them to fill the cache until evicted).
        weakref.finalize(self, forget, self._cache_id)

    def _weights_key(self, *params: torch.Tensor) -> tuple | None:
        """Identity of the current weights for a cache key; None while they may change under autograd or cannot be
        tracked (inference tensors keep no version counter, so edits could not be noticed)."""
        if torch.is_grad_enabled() or any(p.is_inference() for p in params):
            return None
        return (self._cache_id,) + tuple((p.data_ptr(), p._version) for p in params)

    def relative_bias(self) -> torch.Tensor:
        """(heads, N, N) relative-position bias."""
        table = self.relative_position_bias_table
        n = self.window_size**2
        index = windows.relative_position_index(self.window_size, table.device).long()
        return table[index].view(n, n, -1).permute(2, 0, 1)

    def attention_masks(self, shifted: bool, dtype: torch.dtype, align: int, scale: float = 1.0) -> torch.Tensor:
        """(groups, heads, N, N) additive masks, bias plus each window group's shift pattern (see windows.GROUPS),
        times `scale`, with `align`-multiple strides; cached while the weights are constant."""
        table = self.relative_position_bias_table

        def build() -> torch.Tensor:
            bias = self.relative_bias().unsqueeze(0)
            if shifted:
                w = self.window_size
                patterns = cached(("shift_patterns", w), table.device,
                                  lambda: windows.shift_patterns(w, w // 2).to(table.device))
                bias = bias + patterns.unsqueeze(1)
            return aligned((bias * scale if scale != 1.0 else bias).to(dtype), align)

        key = self._weights_key(table)
        if key is None:
            return build()
        return cached(("masks", key, shifted, dtype, align, scale), table.device, build, owner=self._cache_id)

    def padded_weights(self, head_dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """qkv weight and bias and proj weight with each head's dim zero-padded to `head_dim`: the extra q and k
        columns add nothing to the scores and the extra v columns meet zero proj columns."""
        qw, qb, pw = self.qkv.weight, self.qkv.bias, self.proj.weight
        c, heads = pw.shape[0], self.num_heads
        hd = c // heads

        def build() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            wq = qw.new_zeros(3, heads, head_dim, c)
            wq[:, :, :hd] = qw.view(3, heads, hd, c)
            bq = qb.new_zeros(3, heads, head_dim)
            bq[:, :, :hd] = qb.view(3, heads, hd)
            wp = pw.new_zeros(c, heads, head_dim)
            wp[:, :, :hd] = pw.view(c, heads, hd)
            return (wq.view(-1, c).to(dtype), bq.view(-1).to(dtype), wp.view(c, -1).to(dtype))

        key = self._weights_key(qw, qb, pw)
        if key is None:
            return build()
        return cached(("padded", key, head_dim, dtype), qw.device, build, owner=self._cache_id)

    def cpu_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For `attend_cpu`: the qkv weight and bias with q pre-multiplied by log2(e) / sqrt(head_dim) (scores in
        base 2), and each head's v padded to `_value_width` rows: zeros, except a first extra row of bias 1 (an
        all-ones value column, whose output is the row sum of the scores' powers); cached while the weights are
        constant."""
        qw, qb = self.qkv.weight, self.qkv.bias
        c, heads = qw.shape[1], self.num_heads
        hd = c // heads
        vd = _value_width(hd)

        def build() -> tuple[torch.Tensor, torch.Tensor]:
            scale = hd**-0.5 * LOG2E
            v_w = qw.new_zeros(heads, vd, c)
            v_w[:, :hd] = qw[2 * c :].view(heads, hd, c)
            v_b = qb.new_zeros(heads, vd)
            v_b[:, :hd] = qb[2 * c :].view(heads, hd)
            v_b[:, hd] = 1.0
            weight = torch.cat([qw[:c] * scale, qw[c : 2 * c], v_w.view(-1, c)])
            bias = torch.cat([qb[:c] * scale, qb[c : 2 * c], v_b.view(-1)])
            return weight.contiguous(), bias.contiguous()

        key = self._weights_key(qw, qb)
        if key is None:
            return build()
        return cached(("cpu", key), qw.device, build, owner=self._cache_id)

    def attend_cpu(self, x: torch.Tensor, group: int, shifted: bool) -> torch.Tensor:
        """x: (T, C) normed tokens of whole windows in layout order; returns the attention output before `proj`,
        (T, C), in the official head order.

        Per head, one `baddbmm` over all windows reads q and k in place from the qkv output (row stride = its width)
        and adds the base-2 mask as it writes the scores; `exp2_` turns them into the softmax's numerators in place
        (the softmax is shift-invariant, so the usual subtraction of the row maximum is left out); one `bmm` with
        the padded v gives the unnormalised output and, in the all-ones column, each row's denominator; one
        division for all heads normalises and writes the official layout. exp2 runs at twice the speed of exp here
        and this is one pass over the scores where a softmax makes three. A head whose denominators are not
        positive and finite (scores past fp32's exponent range, where the maximum's subtraction matters) is redone
        with a softmax."""
        weight, bias = self.cpu_weights()
        c, heads = x.shape[1], self.num_heads
        hd = c // heads
        vd = _value_width(hd)
        n = self.window_size**2
        count = x.shape[0] // n
        qkv = F.linear(x, weight, bias).view(count, n, -1)
        masks = self.attention_masks(shifted, x.dtype, 1, LOG2E)[group if shifted else 0]
        scores = x.new_empty(count, n, n)
        out = x.new_empty(heads, count, n, vd)

        def head(h: int, softmax: bool) -> None:
            q = qkv[:, :, h * hd : (h + 1) * hd]
            k = qkv[:, :, c + h * hd : c + (h + 1) * hd]
            torch.baddbmm(masks[h].expand(count, n, n), q, k.transpose(1, 2), out=scores)
            weights = torch.softmax(scores.mul_(LN2), -1, out=scores) if softmax else scores.exp2_()
            torch.bmm(weights, qkv[:, :, 2 * c + h * vd : 2 * c + (h + 1) * vd], out=out[h])

        for h in range(heads):
            head(h, softmax=False)
        sums = out[..., hd]
        low, high = torch.aminmax(sums)
        if not (low > 0 and high < math.inf):
            for h in range(heads):
                if not bool(((sums[h] > 0) & (sums[h] < math.inf)).all()):
                    head(h, softmax=True)
        result = x.new_empty(count, n, heads, hd)
        torch.div(out[..., :hd].permute(1, 2, 0, 3), out[..., hd : hd + 1].permute(1, 2, 0, 3), out=result)
        return result.view(count * n, c)

    def forward(self, x: torch.Tensor, group: int, shifted: bool) -> torch.Tensor:
        """x: (B, L, C) tokens of whole windows in layout order, all of shift pattern `group` (see windows.GROUPS;
        ignored unless `shifted`); returns the same shape and order."""
        b, length, c = x.shape
        n = self.window_size**2
        count = b * (length // n)
        heads, hd = self.num_heads, c // self.num_heads
        align = ALIGN.get(x.device.type, 1)
        hdp = _round_up(hd, align)
        if hdp != hd:
            qkv_w, qkv_b, proj_w = self.padded_weights(hdp, _compute_dtype(x))
            qkv = F.linear(x, qkv_w, qkv_b)
        else:
            qkv = self.qkv(x)
        q, k, v = qkv.view(count, n, 3, heads, hdp).permute(2, 0, 3, 1, 4).unbind(0)  # (count, heads, N, hdp)
        mask = self.attention_masks(shifted, qkv.dtype, align)[group if shifted else 0]
        # A mask of the full 4-D shape (broadcast by strides, not copied) lets the dispatchers pick their fused
        # kernels; a (heads, N, N) mask falls back to the math path on the CPU.
        out = window_attention(q, k, v, mask.expand(count, heads, n, n), hd**-0.5)
        out = out.transpose(1, 2).reshape(b, length, heads * hdp)
        if hdp != hd:
            return F.linear(out, proj_w, self.proj.bias)
        return self.proj(out)


def _cpu_fast_path(x: torch.Tensor) -> bool:
    """Whether a block at inference runs `attend_cpu` in place: fp32 on the CPU, without autocast, and not while
    the padded CUDA path is being verified on the CPU (ALIGN["cpu"] set)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and ALIGN.get("cpu", 1) == 1
            and not torch.is_autocast_enabled("cpu") and x.is_contiguous())


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, layout: windows.WindowLayout) -> torch.Tensor:
        """x: (B, L, C) tokens in `layout` order. Without autograd the block runs in chunks of windows and writes
        its output into `x` (every window and token is independent here): its temporaries (qkv, the MLP's hidden
        layer) stay chunk-sized, in the cache, instead of several times the image's size."""
        n = self.window_size**2
        shifted = layout.shift > 0
        if torch.is_grad_enabled():
            parts = [self._windows(x[:, start * n : stop * n], g, shifted) for g, start, stop in layout.groups]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        tokens = memory.block_chunk_tokens(x.shape[2], x.element_size(), x.device.type)
        per_chunk = max(1, tokens // (x.shape[0] * n))
        fast = _cpu_fast_path(x)
        for g, start, stop in layout.spans(per_chunk):
            part = x[:, start * n : stop * n]
            if fast:
                for image in part:
                    self._windows_in_place(image, g, shifted)
            else:
                part.copy_(self._windows(part, g, shifted))
        return x

    def _windows_in_place(self, x: torch.Tensor, group: int, shifted: bool) -> None:
        """`_windows` on (T, C) contiguous tokens, written into `x`: the two residual sums are accumulated by
        `addmm_` into the stream itself, with no output tensor and no copy back."""
        attn, mlp = self.attn, self.mlp
        x.addmm_(attn.attend_cpu(self.norm1(x), group, shifted), attn.proj.weight.t()).add_(attn.proj.bias)
        hidden = mlp.fc1(self.norm2(x))
        torch._C._nn.gelu_(hidden)
        x.addmm_(hidden, mlp.fc2.weight.t()).add_(mlp.fc2.bias)

    def _windows(self, x: torch.Tensor, group: int, shifted: bool) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), group, shifted)
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio)
            for i in range(depth)
        )


def residual_conv(dim: int, kind: str) -> nn.Module:
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    return nn.Sequential(
        nn.Conv2d(dim, dim // 4, 3, 1, 1),
        nn.LeakyReLU(negative_slope=0.2, inplace=True),
        nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
        nn.LeakyReLU(negative_slope=0.2, inplace=True),
        nn.Conv2d(dim // 4, dim, 3, 1, 1),
    )


def tokens_to_map(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, C) spatial-order tokens to an NCHW view (channels-last strides, no copy)."""
    return x.view(x.shape[0], height, width, x.shape[2]).permute(0, 3, 1, 2)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


class RSTB(nn.Module):
    """Residual Swin Transformer Block: a group of blocks, a convolution, and a skip connection."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float, resi: str) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window_size, mlp_ratio)
        self.conv = residual_conv(dim, resi)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        h = x
        previous = None
        for block in self.residual_group.blocks:
            layout = windows.get_layout(height, width, block.window_size, block.shift_size, x.device)
            h = h.index_select(1, windows.transition(previous, layout))
            h = block(h, layout)
            previous = layout
        h = h.index_select(1, windows.transition(previous, None))
        return map_to_tokens(self.conv(tokens_to_map(h, height, width))) + x


class PatchEmbed(nn.Module):
    """Holds the optional LayerNorm after the first convolution (key `patch_embed.norm`)."""

    def __init__(self, dim: int, norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()


class Upsample(nn.Sequential):
    def __init__(self, scale: int, num_feat: int) -> None:
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"pixelshuffle supports scales 2^n and 3, not {scale}")
        super().__init__(*layers)


def pad_to_window(x: torch.Tensor, window: int) -> torch.Tensor:
    """Pad bottom/right to a window multiple: reflect as the official code does, replicate where too small."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_w:
        x = F.pad(x, (0, pad_w, 0, 0), "reflect" if pad_w < w else "replicate")
    if pad_h:
        x = F.pad(x, (0, 0, 0, pad_h), "reflect" if pad_h < h else "replicate")
    return x


class SwinIR(nn.Module):
    def __init__(self, config: SwinIRConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        dim = c.embed_dim
        self.window_size = c.window_size
        self.conv_first = nn.Conv2d(c.in_chans, dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(dim, c.patch_norm)
        self.layers = nn.ModuleList(
            RSTB(dim, depth, heads, c.window_size, c.mlp_ratio, c.resi_connection)
            for depth, heads in zip(c.depths, c.num_heads)
        )
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = residual_conv(dim, c.resi_connection)
        if c.upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, c.num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True))
            self.upsample = Upsample(c.scale, c.num_feat)
            self.conv_last = nn.Conv2d(c.num_feat, c.in_chans, 3, 1, 1)
        elif c.upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(nn.Conv2d(dim, c.scale**2 * c.in_chans, 3, 1, 1), nn.PixelShuffle(c.scale))
        elif c.upsampler == "nearest+conv":
            if c.scale not in (2, 4, 8):
                raise ValueError(f"nearest+conv supports scales 2, 4 and 8, not {c.scale}")
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, c.num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True))
            for i in range(int(math.log2(c.scale))):
                self.add_module(f"conv_up{i + 1}", nn.Conv2d(c.num_feat, c.num_feat, 3, 1, 1))
            self.conv_hr = nn.Conv2d(c.num_feat, c.num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(c.num_feat, c.in_chans, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        else:
            self.conv_last = nn.Conv2d(dim, c.in_chans, 3, 1, 1)
        mean = torch.tensor(RGB_MEAN if c.in_chans == 3 else (0.0,) * c.in_chans).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        t = self.patch_embed.norm(map_to_tokens(x))
        for layer in self.layers:
            t = layer(t, height, width)
        return tokens_to_map(self.norm(t), height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        height, width = x.shape[-2:]
        x = pad_to_window(x, self.window_size)
        mean = self.mean.to(x.dtype)
        x = (x - mean) * c.img_range
        feat = self.conv_first(x)
        body = self.conv_after_body(self.forward_features(feat)) + feat
        if c.upsampler == "pixelshuffle":
            out = self.conv_last(self.upsample(self.conv_before_upsample(body)))
        elif c.upsampler == "pixelshuffledirect":
            out = self.upsample(body)
        elif c.upsampler == "nearest+conv":
            out = self.conv_before_upsample(body)
            for i in range(int(math.log2(c.scale))):
                conv = getattr(self, f"conv_up{i + 1}")
                out = self.lrelu(conv(F.interpolate(out, scale_factor=2, mode="nearest")))
            out = self.conv_last(self.lrelu(self.conv_hr(out)))
        else:
            out = x + self.conv_last(body)
        out = out / c.img_range + mean
        return out[..., : height * c.scale, : width * c.scale]
