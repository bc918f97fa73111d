"""One loaded model restoring jobs (or segments of a video) into their outputs; the same code runs in the local
runner and in each Ray actor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..devices import default_device, resolve_device
from ..engine import MIN_TILE_WINDOWS, Progress, restore
from ..errors import ImageFileError, SwinIRError, VideoError
from ..fileutil import write_problem
from ..imageio import read_image, read_note, set_max_pixels, to_uint8, write_image
from ..network import SwinIR
from .outputs import Outputs
from .plan import FRAMES_TO_VIDEO, IMAGE, VIDEO, VIDEO_TO_FRAMES, Job, frame_files, frame_path
from .provenance import State
from .settings import DONE, FAILED, SKIPPED, Outcome
from .video import (Segment, decode_frames, demux_interleaved, read_video_note, segment_suffix, upright,
                    write_video)


def tile_note(tile: int | str, window: int) -> str | None:
    """What a --tile size becomes for a model (tiles are whole windows, at least MIN_TILE_WINDOWS of them), said
    once per run; None when it is used as given."""
    if not isinstance(tile, int):
        return None
    used = max(tile // window * window, MIN_TILE_WINDOWS * window)
    if used == tile:
        return None
    return (f"note: --tile {tile} is used as {used}: tiles are whole multiples of this model's {window}-pixel "
            f"window, at least {MIN_TILE_WINDOWS} windows")


def _out_of_memory(job: Job) -> str:
    return (f"{job.source}: ran out of memory restoring it; pass a smaller --tile (e.g. --tile 256), or use a "
            "machine with more memory")


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """HWC float with 1, 3 or 4 channels as 3 (gray replicated, alpha dropped), for video frames."""
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return pixels[..., :3]


class Worker:
    def __init__(self, model: SwinIR, outputs: Outputs) -> None:
        self.outputs, self.settings = outputs, outputs.settings
        set_max_pixels(self.settings.max_pixels)  # a Ray actor's process has only the run's settings to go by
        self.device = resolve_device(self.settings.device, default_device())
        self.model = model.to(self.device)  # once: the engine would otherwise move it for every frame

    # ---------------------------------------------------------------------------------------------- pixels

    def restore_array(self, pixels: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """HWC float in [0, 1] -> HWC float in [0, 1], `scale` times larger."""
        s = self.settings
        x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)[None]
        y = restore(self.model, x, tile=s.tile, overlap=s.overlap, precision=s.precision, device=self.device,
                    progress=progress, gray_mode=s.gray_mode, compile=s.compile)
        return y[0].permute(1, 2, 0).numpy()

    def restore_rgb8(self, rgb: np.ndarray) -> np.ndarray:
        """A uint8 RGB frame restored, as uint8."""
        return to_uint8(self.restore_array(rgb.astype(np.float32) / 255))

    # ------------------------------------------------------------------------------------------------ jobs

    def run(self, job: Job, progress: Progress | None = None, key: str | None = None) -> Outcome:
        """Restores one job whole; its failure (a SwinIRError, an unwritable output) is the outcome, not raised."""
        try:
            key = key or self.outputs.key(job)
            if job.kind != VIDEO_TO_FRAMES and \
                    self.outputs.state(job.target, key, self.outputs.reader(job)) is State.COMPLETE:
                return Outcome(str(job.source), str(job.target), SKIPPED)
            handler = {IMAGE: self._image, VIDEO: self._video, FRAMES_TO_VIDEO: self._frames_to_video,
                       VIDEO_TO_FRAMES: self._video_to_frames}[job.kind]
            status, frames = handler(job, key, progress)
            return Outcome(str(job.source), str(job.target), status, frames=frames)
        except SwinIRError as e:
            return Outcome(str(job.source), str(job.target), FAILED, str(e))
        except OSError as e:
            return Outcome(str(job.source), str(job.target), FAILED, write_problem(e, job.target))
        except MemoryError:
            return Outcome(str(job.source), str(job.target), FAILED, _out_of_memory(job))

    def _image(self, job: Job, key: str, progress) -> tuple[str, int]:
        pixels, bits = read_image(job.source)
        restored = self.restore_array(pixels, progress)
        note = self.outputs.note(job, key)
        return self.outputs.publish(lambda replace: write_image(job.target, restored, bits, note=note, replace=replace),
                                    job.target, key, read_note), 0

    def _video(self, job: Job, key: str, progress) -> tuple[str, int]:
        info = self.outputs.video_info(job)
        encoding = self.outputs.encoding(job, info)
        count = 0

        def write(replace: bool) -> None:
            nonlocal count
            with write_video(job.target, encoding, rotation=info.rotation, note=self.outputs.note(job, key),
                             audio_from=job.source, replace=replace) as writer:
                count = self._encode_stream(job, demux_interleaved(job.source), writer, info, 0, progress)
            if progress is not None:
                progress(count, count)  # the header's frame count is an estimate for some containers

        return self.outputs.publish(write, job.target, key, read_video_note), count

    def _frames_to_video(self, job: Job, key: str, progress) -> tuple[str, int]:
        info = self.outputs.video_info(job)
        encoding = self.outputs.encoding(job, info)
        files = frame_files(job.source)

        def write(replace: bool) -> None:
            with write_video(job.target, encoding, note=self.outputs.note(job, key), replace=replace) as writer:
                self._encode_files(job, files, 0, writer, info, progress)

        return self.outputs.publish(write, job.target, key, read_video_note), len(files)

    def _video_to_frames(self, job: Job, key: str, progress) -> tuple[str, int]:
        info = self.outputs.video_info(job)
        status, count = self._frames_out(job, key, decode_frames(job.source), 0, info, progress)
        if count == 0:
            raise VideoError(f"{job.source}: has no decodable video frames")
        if progress is not None:
            progress(count, count)
        return status, count

    # -------------------------------------------------------------------------------------------- segments

    def run_segment(self, job: Job, key: str, segment: Segment) -> Outcome:
        """One frame range of a video job (Ray): frame files written directly, or a segment file in the job's
        parts folder for the driver to join."""
        part = self.outputs.parts_dir(job, key) / f"seg-{segment.index:06d}"
        try:
            info = self.outputs.video_info(job)
            if job.kind == VIDEO_TO_FRAMES:
                status, count = self._frames_out(job, key, decode_frames(job.source, segment), segment.first_frame,
                                                 info, None)
                return Outcome(str(job.source), str(job.target), status, frames=count)
            encoding = self.outputs.encoding(job, info)
            part = part.with_suffix(segment_suffix(encoding.codec))
            if part.is_file():
                return Outcome(str(job.source), str(part), SKIPPED, frames=segment.frames)
            part.parent.mkdir(parents=True, exist_ok=True)
            with write_video(part, encoding) as writer:
                if job.kind == FRAMES_TO_VIDEO:
                    files = frame_files(job.source)[segment.first_frame: segment.first_frame + segment.frames]
                    count = self._encode_files(job, files, segment.first_frame, writer, info, None)
                else:
                    frames = (("video", frame) for frame in decode_frames(job.source, segment))
                    count = self._encode_stream(job, frames, writer, info, segment.first_frame, None)
            return Outcome(str(job.source), str(part), DONE, frames=count)
        except SwinIRError as e:
            return Outcome(str(job.source), str(job.target), FAILED, str(e))
        except OSError as e:
            return Outcome(str(job.source), str(job.target), FAILED, write_problem(e, job.target))
        except MemoryError:
            return Outcome(str(job.source), str(job.target), FAILED, _out_of_memory(job))

    # ------------------------------------------------------------------------------------------------ parts

    def _encode_stream(self, job: Job, items, writer, info, first: int, progress) -> int:
        """Decoded frames restored into `writer` (audio packets among them copied); returns the frame count."""
        count = 0
        for kind, item in items:
            if kind == "audio":
                writer.add_audio(item)
                continue
            self._check_size(job, item.rgb, info.width, info.height, first + count)
            writer.add_frame(self.restore_rgb8(item.rgb), item.pts, item.time_base)
            count += 1
            if progress is not None:
                progress(count, max(count, info.frames))
        if count == 0:
            raise VideoError(f"{job.source}: has no decodable video frames in this range")
        return count

    def _encode_files(self, job: Job, files: list[Path], first: int, writer, info, progress) -> int:
        rate = self.settings.frame_rate
        for i, path in enumerate(files):
            pixels, _ = read_image(path)
            self._check_size(job, pixels, info.width, info.height, first + i, path)
            writer.add_frame(to_uint8(self.restore_array(_rgb(pixels))), first + i, 1 / rate)
            if progress is not None:
                progress(i + 1, len(files))
        return len(files)

    def _frames_out(self, job: Job, key: str, frames, first: int, info, progress) -> tuple[str, int]:
        """Decoded frames restored into numbered image files (upright), each published like an image; frames
        already complete are not redone."""
        written = count = 0
        for count, frame in enumerate(frames, 1):
            number = first + count
            target = frame_path(job.target, number)
            if self.outputs.state(target, key, read_note) is not State.COMPLETE:
                restored = upright(self.restore_rgb8(frame.rgb), info.rotation)
                note = self.outputs.note(job, key, number)
                status = self.outputs.publish(
                    lambda replace: write_image(target, restored, note=note, replace=replace), target, key, read_note)
                written += status == DONE
            if progress is not None:
                progress(count, max(count, info.frames))
        return (DONE if written else SKIPPED), count

    @staticmethod
    def _check_size(job: Job, pixels: np.ndarray, width: int, height: int, index: int, path: Path | None = None):
        if pixels.shape[1] != width or pixels.shape[0] != height:
            where = path or f"{job.source}, frame {index + 1}"
            raise (ImageFileError if path else VideoError)(
                f"{where}: is {pixels.shape[1]}x{pixels.shape[0]} but the video is {width}x{height}; every frame "
                "of a video must have one size")

