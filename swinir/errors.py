"""Exceptions raised by the swinir package."""

from __future__ import annotations


class SwinIRError(Exception):
    """Base of every error this package raises; its message names the problem and the fix."""


class CatalogueError(SwinIRError):
    """The model catalogue file is missing or malformed."""


class UnknownModelError(SwinIRError):
    """A model name or file name is not in the catalogue."""


class DownloadError(SwinIRError):
    """A checkpoint could not be downloaded or failed verification; nothing was kept."""


class ImageFileError(SwinIRError):
    """An image file is missing, corrupt or of a kind that cannot be read."""


class CheckpointError(SwinIRError):
    """A checkpoint file is unreadable, unsafe, or not a SwinIR model."""


class TaskMismatchError(SwinIRError):
    """A model was used for a task it was not trained for."""


class InputError(SwinIRError):
    """Images given to the engine are empty, of the wrong layout, or contain NaN/inf."""


class Cancelled(SwinIRError):
    """The caller's cancel callback asked to stop; no output was produced."""


class VideoError(SwinIRError):
    """A video cannot be read or written, or PyAV (needed for video) is not installed."""


class OutputExistsError(SwinIRError):
    """An output already exists and was not made from this input with these settings; it is left as it is."""


class ClusterError(SwinIRError):
    """Ray is not installed, the Ray cluster cannot be reached, or the run on it failed."""
