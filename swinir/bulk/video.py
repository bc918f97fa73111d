"""Videos through PyAV (optional: `pip install av`; ComfyUI installs it): probing, decoding a frame range,
encoding as a stream (frames in, packets out, so memory does not grow with the length), copying the audio, and
joining segments encoded apart. Every file is written to a temporary name and renamed when complete."""

from __future__ import annotations

import heapq
import io
from bisect import bisect_left
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import VideoError
from ..fileutil import atomic_target
from ..imageio import check_pixel_limit
from .plan import WRITABLE_VIDEO

# Segment files of a video split over several workers: QuickTime keeps the encoder's timestamps exactly, negative
# decoding times of B-frames included (NUT and Matroska shift them); NUT for the codecs QuickTime cannot hold.
SEGMENT_FORMAT = "nut"
DEFAULT_CODEC = {"webm": "libvpx-vp9"}  # every other container: libx264
# Constant-quality codecs and their default CRF: visually near-lossless, as restoration outputs should be.
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 24}
CODEC_ALIASES = {"h264": "libx264", "x264": "libx264", "hevc": "libx265", "h265": "libx265", "x265": "libx265",
                 "vp9": "libvpx-vp9", "av1": "libsvtav1"}
# Lossless codecs get an RGB pixel format, so the restored pixels come back exactly.
RGB_FORMATS = ("gbrp", "bgr0", "rgb24")
AUDIO_FALLBACK = {"webm": "libopus"}  # every other container: aac
MIN_SEGMENT_FRAMES = 16


def require_av():
    try:
        import av
    except ImportError:
        raise VideoError("video needs PyAV, which is not installed: pip install av (ComfyUI already has it)") from None
    return av


def _ffmpeg_errors() -> tuple[type[BaseException], ...]:
    av = require_av()
    return (av.FFmpegError, ValueError, IndexError, StopIteration)


@contextmanager
def open_video(path: Path):
    """An input container with at least one video stream; failures are a VideoError naming the file."""
    av = require_av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{path}: not a readable video ({e}); check that the file is complete") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: has no video stream")
        yield container
    finally:
        container.close()


def upright(arr: np.ndarray, rotation: int) -> np.ndarray:
    """The frame as players show it: `rotation` is the counter-clockwise display rotation in degrees."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(arr, turns)) if turns else arr


@dataclass(frozen=True)
class Color:
    """How the source's YUV maps to RGB, kept on the output so colours do not shift."""

    colorspace: int = 0
    color_range: int = 0
    primaries: int = 0
    trc: int = 0


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    rate: Fraction
    time_base: Fraction
    frames: int  # from the container's header, or estimated from its duration; 0 when unknown
    rotation: int
    color: Color


def probe(path: Path) -> VideoInfo:
    """Size, rate, time base, rotation and colour of the first video stream (decodes one frame)."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        # The header's frame size, before a frame is decoded: a video's frames are held to the images' limit.
        check_pixel_limit(path, stream.codec_context.width or 0, stream.codec_context.height or 0)
        try:
            first = next(container.decode(stream))
        except _ffmpeg_errors() as e:
            raise VideoError(f"{path}: no decodable video frame ({e or 'empty stream'})") from None
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        frames = stream.frames
        if not frames and stream.duration and stream.time_base:
            frames = round(stream.duration * stream.time_base * rate)
        elif not frames and container.duration:
            frames = round(container.duration / 1_000_000 * rate)
        color = Color(first.colorspace, first.color_range, first.color_primaries, first.color_trc)
        return VideoInfo(first.width, first.height, Fraction(rate), Fraction(stream.time_base or Fraction(1, 1000)),
                         int(frames or 0), int(getattr(first, "rotation", 0) or 0), color)


@dataclass(frozen=True)
class Segment:
    """Frames with start <= pts < end (None: open) of the first video stream, starting at a keyframe."""

    index: int
    start: int | None
    end: int | None
    first_frame: int  # frames before it, for numbering frame files
    frames: int


def plan_segments(path: Path, parts: int, min_frames: int = MIN_SEGMENT_FRAMES) -> list[Segment]:
    """Splits the video at keyframes into about `parts` ranges of at least `min_frames` frames each. Reads the
    packets only (no decoding). A stream without timestamps stays in one piece."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        pts: list[int] = []
        keys: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    return [Segment(0, None, None, 0, 0)]
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except _ffmpeg_errors() as e:
            raise VideoError(f"{path}: damaged video ({e}); check that the file is complete") from None
    pts.sort()
    if not pts:
        raise VideoError(f"{path}: has no video frames")
    per_part = max(min_frames, -(-len(pts) // max(1, parts)))
    cuts = [0]  # frame positions where a segment starts
    for key in sorted(set(keys)):
        position = bisect_left(pts, key)
        if position - cuts[-1] >= per_part and len(pts) - position >= min_frames:
            cuts.append(position)
    segments = []
    for i, first in enumerate(cuts):
        last = cuts[i + 1] if i + 1 < len(cuts) else len(pts)
        segments.append(Segment(i, pts[first] if i else None, pts[last] if last < len(pts) else None, first,
                                last - first))
    return segments


@dataclass
class Frame:
    rgb: np.ndarray  # HWC uint8, as stored (not rotated)
    pts: int | None
    time_base: Fraction | None


def _decoded(frame) -> Frame:
    rgb = frame.reformat(format="rgb24", src_color_range=frame.color_range or None).to_ndarray()
    return Frame(rgb, frame.pts, frame.time_base)


def decode_frames(path: Path, segment: Segment | None = None) -> Iterator[Frame]:
    """The frames of the first video stream (of one segment), in presentation order, one at a time."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start, end = (segment.start, segment.end) if segment else (None, None)
        try:
            if start is not None:
                container.seek(start, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if start is not None and (frame.pts is None or frame.pts < start):
                    continue  # before the range: a GOP's leading frames, decoded by the previous segment
                if end is not None and frame.pts is not None and frame.pts >= end:
                    break
                yield _decoded(frame)
        except _ffmpeg_errors() as e:
            raise VideoError(f"{path}: damaged video ({e}); check that the file is complete") from None


def demux_interleaved(path: Path) -> Iterator[tuple[str, object]]:
    """("video", Frame) for each decoded frame and ("audio", packet) for each audio packet, in file order, so that
    a writer can copy the sound while the frames stream through."""
    with open_video(path) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        try:
            for packet in container.demux(video, *container.streams.audio):
                if packet.stream.type == "audio":
                    if packet.size and packet.dts is not None:
                        yield "audio", packet
                    continue
                for frame in packet.decode():
                    yield "video", _decoded(frame)
        except _ffmpeg_errors() as e:
            raise VideoError(f"{path}: damaged video ({e}); check that the file is complete") from None


# ------------------------------------------------------------------------------------------------ encoding


def resolve_codec(target: Path, codec: str | None) -> str:
    """The encoder for `target` (its container's default when None), checked to exist and to fit the container."""
    av = require_av()
    container = WRITABLE_VIDEO.get(Path(target).suffix.lower(), SEGMENT_FORMAT)
    name = CODEC_ALIASES.get(codec, codec) if codec else DEFAULT_CODEC.get(container, "libx264")
    try:
        av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        raise VideoError(f"unknown video encoder {name!r}; use libx264 (default), libx265, libvpx-vp9, libsvtav1 "
                         "or ffv1 (lossless)") from None
    if not _holds(container, name):
        raise VideoError(f"{Path(target).suffix} files cannot hold {name} video; choose another --codec or "
                         "another container (.mkv holds any)")
    return name


@lru_cache(maxsize=None)
def _supported(container_format: str) -> frozenset[str]:
    with require_av().open(io.BytesIO(), "w", format=container_format) as probe_out:
        return frozenset(probe_out.supported_codecs)


def _holds(container_format: str, codec: str) -> bool:
    supported = _supported(container_format)
    return codec in supported or require_av().codec.Codec(codec, "w").canonical_name in supported


def segment_suffix(codec: str) -> str:
    return ".mov" if _holds("mov", codec) else "." + SEGMENT_FORMAT


@dataclass(frozen=True)
class Encoding:
    """How restored frames are encoded: everything a segment and the whole video must share."""

    codec: str
    crf: int | None
    width: int
    height: int
    rate: Fraction
    time_base: Fraction
    color: Color = field(default_factory=Color)

    @property
    def pix_fmt(self) -> str:
        av = require_av()
        codec = av.codec.Codec(self.codec, "w")
        formats = [f.name for f in codec.video_formats or ()]
        if codec.lossless or self.codec not in DEFAULT_CRF:
            for name in RGB_FORMATS:
                if name in formats:
                    return name
        odd = self.width % 2 or self.height % 2
        wanted = "yuv444p" if odd else "yuv420p"  # 4:2:0 needs even sides
        if not formats or wanted in formats:
            return wanted
        if odd:
            raise VideoError(f"{self.codec} cannot encode the odd size {self.width}x{self.height}; use --codec libx264 "
                             "or ffv1")
        return formats[0]

    def options(self) -> dict[str, str]:
        if self.codec not in DEFAULT_CRF:
            return {}
        crf = self.crf if self.crf is not None else DEFAULT_CRF[self.codec]
        options = {"crf": str(crf)}
        if self.codec == "libvpx-vp9":
            options["row-mt"] = "1"  # constant quality needs bit rate 0, which PyAV's default already is
        return options


def _add_video_stream(out, encoding: Encoding, rotation: int):
    stream = out.add_stream(encoding.codec, rate=encoding.rate, options=encoding.options())
    stream.width, stream.height = encoding.width, encoding.height
    stream.pix_fmt = encoding.pix_fmt
    stream.codec_context.time_base = encoding.time_base
    stream.thread_type = "AUTO"
    _set_color(stream.codec_context, encoding.color)
    if rotation:
        stream.set_display_rotation(rotation)
    return stream


def _set_color(ctx, color: Color) -> None:
    if color.colorspace:
        ctx.colorspace = color.colorspace
    if color.color_range:
        ctx.color_range = color.color_range
    if color.primaries:
        ctx.color_primaries = color.primaries
    if color.trc:
        ctx.color_trc = color.trc


def keeps_rotation_tag() -> bool:
    """Whether this PyAV can write a display rotation (PyAV 16+); older ones get the frames turned upright."""
    return hasattr(require_av().video.stream.VideoStream, "set_display_rotation")


def _audio_rates(name: str) -> list[int]:
    return list(require_av().codec.Codec(name, "w").audio_rates or [])


class _AudioCopy:
    """The source's audio streams in the output: copied packet for packet where the container takes the codec,
    else re-encoded (AAC, or Opus in WebM)."""

    def __init__(self, out, container_format: str, sources) -> None:
        self.out, self.map, self.encoders = out, {}, {}
        for source in sources:
            codec = source.codec_context
            if codec.name in _supported(container_format) or _holds(container_format, codec.codec.canonical_name):
                self.map[source.index] = out.add_stream_from_template(source)
            else:
                name = AUDIO_FALLBACK.get(container_format, "aac")
                rates = _audio_rates(name)
                rate = codec.sample_rate
                if rates and rate not in rates:  # Opus: 48 kHz and a few lower rates only
                    rate = min(rates, key=lambda r: (r < codec.sample_rate, abs(r - codec.sample_rate)))
                encoder = out.add_stream(name, rate=rate)
                encoder.layout = codec.layout
                self.map[source.index] = encoder
                self.encoders[source.index] = encoder

    def add(self, packet) -> None:
        index = packet.stream.index
        if index not in self.map:
            return
        if index in self.encoders:
            for frame in packet.decode():
                self.out.mux(self.encoders[index].encode(frame))
        else:
            packet.stream = self.map[index]
            self.out.mux(packet)

    def finish(self) -> None:
        for encoder in self.encoders.values():
            self.out.mux(encoder.encode(None))


class VideoWriter:
    """Encodes frames as they come; audio packets of `audio_from` are copied in between."""

    def __init__(self, out, container_format: str, encoding: Encoding, rotation: int, audio_from) -> None:
        self.turns = 0 if keeps_rotation_tag() else rotation
        if round(self.turns / 90) % 2:
            encoding = replace(encoding, width=encoding.height, height=encoding.width)
        self.out, self.encoding = out, encoding
        self.stream = _add_video_stream(out, encoding, rotation if keeps_rotation_tag() else 0)
        self.audio = _AudioCopy(out, container_format, audio_from)
        self.count = 0

    def add_frame(self, rgb: np.ndarray, pts: int | None, time_base: Fraction | None) -> None:
        av = require_av()
        frame = av.VideoFrame.from_ndarray(upright(rgb, self.turns), format="rgb24")
        color = self.encoding.color
        frame = frame.reformat(format=self.encoding.pix_fmt, dst_colorspace=color.colorspace or None,
                               dst_color_range=color.color_range or None)
        if pts is None or time_base is None:  # a stream without timestamps: number the frames at the rate
            pts, time_base = self.count, 1 / self.encoding.rate
        frame.pts, frame.time_base = pts, time_base
        self.out.mux(self.stream.encode(frame))
        self.count += 1

    def add_audio(self, packet) -> None:
        self.audio.add(packet)

    def finish(self) -> None:
        self.out.mux(self.stream.encode(None))
        self.audio.finish()


@contextmanager
def write_video(target: Path, encoding: Encoding, *, rotation: int = 0, note: str | None = None,
                audio_from: Path | None = None, replace: bool = True) -> Iterator[VideoWriter]:
    """A VideoWriter into a temporary file that becomes `target` once every frame is in and the file is closed.
    `audio_from`: a video whose audio streams are added (the caller passes their packets to `add_audio`)."""
    av = require_av()
    target = Path(target)
    container_format = WRITABLE_VIDEO.get(target.suffix.lower(), SEGMENT_FORMAT)
    with atomic_target(target, replace=replace) as tmp, ExitStack() as stack:
        source = stack.enter_context(av.open(str(audio_from))) if audio_from else None
        out = stack.enter_context(_open_output(tmp, container_format, target))
        try:
            if note:
                out.metadata["comment"] = note
            writer = VideoWriter(out, container_format, encoding, rotation, source.streams.audio if source else [])
            yield writer
            writer.finish()
        except av.FFmpegError as e:
            raise VideoError(f"{target}: encoding failed ({e})") from None


def _open_output(tmp: Path, container_format: str, target: Path):
    av = require_av()
    try:
        return av.open(str(tmp), "w", format=container_format)
    except (av.FFmpegError, OSError) as e:
        raise VideoError(f"{target}: cannot write ({e})") from None


def read_video_note(path: Path) -> str | None:
    """The note `write_video` or `join_segments` kept in a video's metadata, or None."""
    av = require_av()
    try:
        with av.open(str(path)) as container:
            metadata = {k.lower(): v for k, v in container.metadata.items()}
    except (av.FFmpegError, OSError, ValueError):
        return None
    return metadata.get("comment")


def _seconds(packet) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float((stamp or 0) * packet.time_base) if packet.time_base else 0.0


def _segment_packets(parts: list[Path]):
    av = require_av()
    for part in parts:
        with av.open(str(part)) as container:
            for packet in container.demux(container.streams.video[0]):
                if packet.size:
                    yield packet


def _audio_packets(container):
    if container is None or not container.streams.audio:
        return
    for packet in container.demux(*container.streams.audio):
        if packet.size and packet.dts is not None:
            yield packet


def join_segments(parts: list[Path], target: Path, *, rotation: int = 0, note: str | None = None,
                  audio_from: Path | None = None, replace: bool = True) -> int:
    """Concatenates segment files (encoded with one Encoding, in order) into `target` with the audio of
    `audio_from`, without re-encoding the video; returns the number of video packets."""
    av = require_av()
    target = Path(target)
    container_format = WRITABLE_VIDEO.get(target.suffix.lower(), SEGMENT_FORMAT)
    count = 0
    with atomic_target(target, replace=replace) as tmp, ExitStack() as stack:
        source = stack.enter_context(av.open(str(audio_from))) if audio_from else None
        first = stack.enter_context(av.open(str(parts[0])))
        out = stack.enter_context(_open_output(tmp, container_format, target))
        try:
            if note:
                out.metadata["comment"] = note
            video = out.add_stream_from_template(first.streams.video[0])
            if rotation and keeps_rotation_tag():
                video.set_display_rotation(rotation)
            audio = _AudioCopy(out, container_format, source.streams.audio if source else [])
            # Both in time order: the segments' packets one after the other, the source's audio packets as they are.
            pictures = ((_seconds(p), 0, i, p) for i, p in enumerate(_segment_packets(parts)))
            sound = ((_seconds(p), 1, i, p) for i, p in enumerate(_audio_packets(source)))
            for _, kind, _, packet in heapq.merge(pictures, sound, key=lambda t: t[:3]):
                if kind == 0:
                    packet.stream = video
                    out.mux(packet)
                    count += 1
                else:
                    audio.add(packet)
            audio.finish()
        except av.FFmpegError as e:
            raise VideoError(f"{target}: joining the restored segments failed ({e})") from None
    return count
