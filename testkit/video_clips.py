"""Short synthetic clips for the video tests and the bulk benchmark, made with PyAV, and what restoring them frame by frame must give."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

import swinir

AUDIO_RATE = 44100


def frame_rgb(index: int, width: int, height: int) -> np.ndarray:
    """Smooth gradients with a moving square and a little texture: like video, unlike noise, so that lossy
    codecs behave as they do on real footage."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / max(1, width - 1)
    g = 255 * y / max(1, height - 1)
    b = 128 + 100 * np.sin((x + 2 * y + 3 * index) / 4)
    rgb = np.stack([r, g, b], axis=-1)
    side = max(2, min(width, height) // 3)
    x0, y0 = (index * 2) % max(1, width - side), (index) % max(1, height - side)
    rgb[y0: y0 + side, x0: x0 + side] = (240, 40, 40)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def make_clip(path: Path, *, width: int, height: int, frames: int, rate: Fraction = Fraction(25), gop: int = 12,
              audio: str | None = "aac", rotation: int | None = None, codec: str = "libx264",
              pix_fmt: str = "yuv420p") -> Path:
    """A clip of `frames` frames at `rate`, a keyframe every `gop` frames, with a sine tone as long as the video
    (AAC, FLAC or none) and optionally a display rotation."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=rate, options={"crf": "12"} if codec == "libx264" else {})
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.codec_context.gop_size = gop
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=AUDIO_RATE)
            sound.layout = "mono"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_rgb(i, width, height), format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            total = int(AUDIO_RATE * frames / rate)
            t = np.arange(total) / AUDIO_RATE
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            fmt = "fltp" if audio == "aac" else "s16"
            for start in range(0, total, 1024):
                chunk = samples[None, start: start + 1024]
                if fmt == "s16":
                    chunk = (chunk * 32767).astype(np.int16)
                block = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
                block.sample_rate, block.pts = AUDIO_RATE, start
                out.mux(sound.encode(block))
            out.mux(sound.encode(None))
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.pts * f.time_base) for f in container.decode(container.streams.video[0])]


def video_facts(path: Path) -> dict:
    """What must survive restoring: frame count, rate, rotation, audio samples (decoded) and audio codec."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rotations = {f.rotation for f in container.decode(stream)}
        assert len(rotations) == 1, rotations
        facts = {"frames": len(frame_times(path)), "rate": stream.average_rate, "rotation": rotations.pop(),
                 "width": stream.width, "height": stream.height, "audio_samples": 0, "audio_codec": None,
                 "audio_rate": None}
    with av.open(str(path)) as container:
        if container.streams.audio:
            sound = container.streams.audio[0]
            facts["audio_codec"] = sound.codec_context.name
            facts["audio_rate"] = sound.codec_context.sample_rate
            facts["audio_samples"] = sum(f.samples for f in container.decode(sound))
    return facts


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def restore_frame(model: swinir.SwinIR, rgb: np.ndarray) -> np.ndarray:
    """One decoded frame restored on its own, rounded to 8 bits as every 8-bit output is."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    y = swinir.restore(model, x)[0].permute(1, 2, 0).numpy()
    return np.floor(np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)
