"""A one-line text progress bar on stderr for the command line (no dependency)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, label: str, stream=sys.stderr, width: int = 30) -> None:
        self.label, self.stream, self.width = label, stream, width
        self.start = time.monotonic()
        self.tty = getattr(stream, "isatty", lambda: False)()
        self.last_line = ""

    def update(self, done: int, total: int) -> None:
        frac = done / total if total else 1.0
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"{self.label} [{bar}] {done}/{total} tiles {time.monotonic() - self.start:5.1f}s"
        if self.tty:
            self.stream.write("\r" + line)
        elif done == total or done == 1:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last_line = line

    def close(self) -> None:
        if self.tty and self.last_line:
            self.stream.write("\n")
            self.stream.flush()
