"""The command line run in the background, for tests that act on a run while it works (interrupt it, kill one of
its workers), waiting on what the run shows (a progress line, a file) rather than on time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def background_cli(*args: object, err: Path) -> Iterator[subprocess.Popen]:
    """`python -m swinir ARGS` with its stderr in `err`; killed on the way out if still running."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    with open(err, "w") as stream:
        proc = subprocess.Popen([sys.executable, "-m", "swinir", *map(str, args)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=stream)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen | None = None,
             timeout: float = 240) -> None:
    """Polls `condition` until it holds; fails if `proc` ends first or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)
