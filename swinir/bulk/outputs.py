"""A run's outputs: their keys and notes, whether they are done, and publishing them without clobbering another
job's. Needs no model, so a Ray driver plans with it while its workers restore."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

from ..errors import ImageFileError, OutputExistsError
from ..fileutil import remove_stale_parts
from ..imageio import open_image, read_note
from .plan import FRAMES_TO_VIDEO, VIDEO, Job, frame_files, frame_path
from .provenance import (NOTE_FIELD, Recipe, State, check_output, fingerprint, folder_fingerprint, make_note,
                         parse_note)
from .settings import DONE, SKIPPED, Settings
from .video import Color, Encoding, VideoInfo, probe, read_video_note, resolve_codec


@dataclass(frozen=True)
class Outputs:
    settings: Settings
    model_name: str
    model_sha256: str
    scale: int

    def recipe(self, job: Job) -> Recipe:
        s = self.settings
        video_out = job.kind in (VIDEO, FRAMES_TO_VIDEO)
        return Recipe(
            model_sha256=self.model_sha256, tile=str(s.tile), overlap=s.overlap, precision=s.precision,
            gray_mode=s.gray_mode, codec=resolve_codec(job.target, s.codec) if video_out else None,
            crf=s.crf if video_out else None, fps=str(s.frame_rate) if job.kind == FRAMES_TO_VIDEO else None,
        )

    def key(self, job: Job) -> str:
        if job.kind == FRAMES_TO_VIDEO:
            source = folder_fingerprint(frame_files(job.source))
        else:
            try:
                source = fingerprint(job.source)
            except OSError as e:
                raise ImageFileError(f"{job.source}: cannot read ({e.strerror or e})") from None
        return self.recipe(job).key(source)

    def note(self, job: Job, key: str, frame: int | None = None) -> str:
        return make_note(key, job.source, self.model_name, frame)

    @staticmethod
    def reader(job: Job) -> Callable[[Path], str | None]:
        return read_video_note if job.kind in (VIDEO, FRAMES_TO_VIDEO) else read_note

    def state(self, target: Path, key: str, reader) -> State:
        """ABSENT or COMPLETE; an output that is not this job's is an OutputExistsError unless --overwrite."""
        existing = check_output(target, key, reader)
        if existing.state is State.FOREIGN and not self.settings.overwrite:
            raise OutputExistsError(f"{target}: already exists and {existing.why}; it was left as it is (pass "
                                    "--overwrite to replace it, or choose another output)")
        return existing.state

    def publish(self, write: Callable[[bool], object], target: Path, key: str, reader) -> str:
        """Runs write(replace), which publishes `target` whole. Without --overwrite an output that appeared
        meanwhile (another run writing the same folder) is never replaced: if it is this very job's, the work is
        done; otherwise this job fails and says so."""
        try:
            write(self.settings.overwrite)
        except FileExistsError:
            existing = check_output(target, key, reader)
            if existing.state is State.COMPLETE:
                return SKIPPED
            raise OutputExistsError(f"{target}: was written by another run meanwhile, and {existing.why}; it was "
                                    "left as it is (pass --overwrite to replace it, or choose another output)") from None
        return DONE

    def video_info(self, job: Job) -> VideoInfo:
        """The input's size, rate and orientation (for a frame folder: its first image and --fps)."""
        if job.kind != FRAMES_TO_VIDEO:
            return probe(job.source)
        first = frame_files(job.source)[0]
        with open_image(first, load=False) as img:
            width, height = img.size
        rate = self.settings.frame_rate
        return VideoInfo(width, height, rate, 1 / rate, len(frame_files(job.source)), 0, Color())

    def encoding(self, job: Job, info: VideoInfo) -> Encoding:
        return Encoding(resolve_codec(job.target, self.settings.codec), self.settings.crf, info.width * self.scale,
                        info.height * self.scale, Fraction(info.rate), Fraction(info.time_base), info.color)

    @staticmethod
    def parts_dir(job: Job, key: str) -> Path:
        """Where the segments of a video restored in pieces wait to be joined; one per job and key, so a rerun
        finds its finished segments and never mixes in another run's."""
        return job.target.parent / f".{job.target.name}.{key[:12]}.parts"

    def frames_complete(self, job: Job, key: str, count: int) -> bool:
        return all(check_output(frame_path(job.target, n), key, read_note).state is State.COMPLETE
                   for n in range(1, count + 1))


def tidy(jobs: list[Job]) -> None:
    """Removes what killed processes of this host left in the output folders (temporary files), and the segment
    folders of videos that are complete."""
    for folder in {job.target.parent for job in jobs}:
        remove_stale_parts(folder)
        for parts in folder.glob(".*.parts"):
            remove_stale_parts(parts)
    for job in jobs:
        if job.kind not in (VIDEO, FRAMES_TO_VIDEO):
            continue
        key = parse_note(read_video_note(job.target)).get(NOTE_FIELD, "") if job.target.is_file() else ""
        if key:
            shutil.rmtree(Outputs.parts_dir(job, key), ignore_errors=True)
