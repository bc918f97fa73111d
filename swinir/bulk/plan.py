"""What to restore into what: the jobs of a run, from the inputs and the output a user names."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SwinIRError
from ..imageio import IMAGE_SUFFIXES

# Containers we read (anything FFmpeg opens would do; these are the names we recognise in folders)...
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".flv", ".wmv"}
# ...and those we write, with FFmpeg's muxer name (the temporary file's name tells FFmpeg nothing).
WRITABLE_VIDEO = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm"}
_FRAME_FIELD = re.compile(r"%0?\d*d")

# Job kinds: what the source is and what the target is.
IMAGE = "image"  # an image file -> an image file
VIDEO = "video"  # a video -> a video, with its audio
VIDEO_TO_FRAMES = "video-to-frames"  # a video -> numbered images (`-o frames/%06d.png`)
FRAMES_TO_VIDEO = "frames-to-video"  # a folder of images, in natural order -> a video


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path  # for VIDEO_TO_FRAMES a pattern with one %d field, numbered from 1
    kind: str

    @property
    def is_video(self) -> bool:
        return self.kind != IMAGE


def is_frame_pattern(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and len(_FRAME_FIELD.findall(path.name)) == 1


def frame_path(pattern: Path, number: int) -> Path:
    return pattern.with_name(_FRAME_FIELD.sub(lambda m: m.group(0) % number, pattern.name))


def natural_key(path: Path) -> list:
    """frame2 before frame10: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    found = sorted((f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    if not found:
        raise SwinIRError(f"{folder}: folder has no images to make a video of ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def collect_inputs(inputs: list[Path]) -> list[Path]:
    """Image and video files, with the images and videos directly inside each folder, in order."""
    known = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            try:
                found = sorted(f for f in item.iterdir() if f.is_file() and f.suffix.lower() in known)
            except OSError as e:
                raise SwinIRError(f"{item}: cannot read the folder ({e.strerror or e}); check its permissions") from None
            if not found:
                raise SwinIRError(f"{item}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))}) or videos "
                                  f"({', '.join(sorted(VIDEO_SUFFIXES))})")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise SwinIRError(f"{item}: no such file or folder")
    return files


def _single_source(inputs: list[Path], output: Path, wants: str) -> Path:
    if len(inputs) != 1:
        raise SwinIRError(f"-o {output} makes one {wants}; give exactly one input (got {len(inputs)}), or -o a folder")
    source = inputs[0]
    if not source.exists():
        raise SwinIRError(f"{source}: no such file or folder")
    return source


def _folder_targets(files: list[Path], output: Path, ext: str) -> dict[Path, Path]:
    """Where each input goes in the output folder. Images that would share a name (photo.png and photo.jpg) keep
    their extension in the name (photo_png.png, photo_jpg.png) instead of overwriting each other; videos keep
    their container where we can write it, else become .mp4."""
    ext = ext if ext.startswith(".") else "." + ext
    groups: dict[tuple[bool, str], int] = {}
    for f in files:
        groups[(_is_video(f), f.stem)] = groups.get((_is_video(f), f.stem), 0) + 1
    targets: dict[Path, Path] = {}
    for f in files:
        video = _is_video(f)
        suffix = (f.suffix.lower() if f.suffix.lower() in WRITABLE_VIDEO else ".mp4") if video else ext
        name = f.stem if groups[(video, f.stem)] == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}"
        target = output / (name + suffix)
        n = 1
        while target in targets.values():
            target = output / f"{name}_{n}{suffix}"
            n += 1
        targets[f] = target
    return targets


def check_output_folder(output: Path, folder: Path) -> None:
    """That `folder` (where the outputs of `-o output` go) exists or can be made, and can be written to; nothing
    is created here: the writers make the folder with their first output."""
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if probe.is_dir():
        if not os.access(probe, os.W_OK | os.X_OK):
            try:
                read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
            except (OSError, AttributeError):
                read_only = False
            why = "it is on a read-only filesystem" if read_only else "permission denied"
            raise SwinIRError(f"-o {output}: cannot write into {probe} ({why}); choose an output folder you can "
                              "write to")
        return
    if probe == folder == output:
        raise SwinIRError(f"-o {output}: {probe} is a file, not a folder; choose a folder name, or a file name "
                          "such as out.png for a single image")
    raise SwinIRError(f"-o {output}: {probe} is a file, so nothing can be written under it; choose an output "
                      "that is not inside a file")


def plan_jobs(inputs: list[Path], output: Path, ext: str = ".png") -> list[Job]:
    """The jobs for `restore INPUT... -o OUTPUT`; checks that the output can be written but creates nothing
    (the output folder appears with its first file). OUTPUT is a folder (one output per input), an image file name
    (one image in), a video file name (one video, or one folder of frames, in) or a frame pattern such as
    frames/%06d.png (one video in)."""
    suffix = output.suffix.lower()
    if suffix in WRITABLE_VIDEO:
        source = _single_source(inputs, output, "video")
        if source.is_dir():
            frame_files(source)
            kind = FRAMES_TO_VIDEO
        elif _is_video(source):
            kind = VIDEO
        else:
            raise SwinIRError(f"{source}: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}); -o {output.name} takes "
                              "one video or one folder of frames")
        check_output_folder(output, output.parent)
        return [Job(source, output, kind)]
    if is_frame_pattern(output):
        source = _single_source(inputs, output, "frame folder")
        if not (source.is_file() and _is_video(source)):
            raise SwinIRError(f"{source}: not a video; a frame pattern ({output.name}) takes one video")
        check_output_folder(output, output.parent)
        return [Job(source, output, VIDEO_TO_FRAMES)]
    if suffix in VIDEO_SUFFIXES:
        raise SwinIRError(f"-o {output.name}: cannot write {suffix} videos; use {', '.join(sorted(WRITABLE_VIDEO))}")
    files = collect_inputs(inputs)
    if len(files) == 1 and suffix in IMAGE_SUFFIXES:
        if _is_video(files[0]):
            raise SwinIRError(f"{files[0]} is a video: -o takes a video name (clip.mp4), a frame pattern "
                              f"({output.parent / '%06d.png'}) or a folder, not {output.name}")
        check_output_folder(output, output.parent)
        return [Job(files[0], output, IMAGE)]
    check_output_folder(output, output)
    return [Job(f, t, VIDEO if _is_video(f) else IMAGE) for f, t in _folder_targets(files, output, ext).items()]
