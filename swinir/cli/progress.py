"""A one-line text progress bar on stderr for the command line (no dependency)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    # Not on a terminal (a log file), a line is written at the first and last step and at most this often between.
    LOG_EVERY_S = 10.0

    def __init__(self, label: str, stream=sys.stderr, width: int = 30, unit: str = "tiles",
                 rate_unit: str | None = None) -> None:
        """`unit` names what is counted; `rate_unit` (e.g. "fps") adds the rate since the start."""
        self.label, self.stream, self.width = label, stream, width
        self.unit, self.rate_unit = unit, rate_unit
        self.start = time.monotonic()
        self.logged = self.start
        self.tty = getattr(stream, "isatty", lambda: False)()
        self.last_line = ""

    def update(self, done: int, total: int) -> None:
        frac = done / total if total else 1.0
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        now = time.monotonic()
        line = f"{self.label} [{bar}] {done}/{total} {self.unit} {now - self.start:5.1f}s"
        if self.rate_unit:
            line += f" {done / max(now - self.start, 1e-9):.2f} {self.rate_unit}"
        if self.tty:
            self.stream.write("\r" + line)
        elif done == total or done == 1 or now - self.logged >= self.LOG_EVERY_S:
            self.stream.write(line + "\n")
            self.logged = now
        self.stream.flush()
        self.last_line = line

    def close(self) -> None:
        if self.tty and self.last_line:
            self.stream.write("\n")
            self.stream.flush()
