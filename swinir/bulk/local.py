"""The local runner: the jobs one after the other on this machine's device, each output streamed and published
whole."""

from __future__ import annotations

from typing import Callable, Protocol

from .outputs import tidy
from .plan import Job
from .settings import Outcome
from .worker import Worker


class Bar(Protocol):
    def update(self, done: int, total: int) -> None: ...

    def close(self) -> None: ...


def run_local(jobs: list[Job], worker: Worker, bar_for: Callable[[int, Job], Bar] | None = None) -> list[Outcome]:
    """Every job's outcome, in order; `bar_for(index, job)` gives the progress display of a job (tiles of an
    image, frames of a video)."""
    tidy(jobs)
    outcomes = []
    for index, job in enumerate(jobs, 1):
        bar = bar_for(index, job) if bar_for else None
        try:
            outcomes.append(worker.run(job, bar.update if bar else None))
        finally:
            if bar is not None:
                bar.close()
    return outcomes
