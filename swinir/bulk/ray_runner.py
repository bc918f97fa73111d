"""The Ray runner: the same jobs over a Ray cluster with Ray Data (`pip install -r requirements-ray.txt`).

A dataset of tasks (an image, or a keyframe-aligned frame range of a video) goes through `map_batches` on a fixed
pool of actors; each actor holds the model once (on one GPU where the cluster has GPUs, else on CPU threads),
writes its outputs itself (temporary file, then rename: Ray's own writers cannot keep file names) and returns an
outcome per task. Ray restarts a killed actor and retries its task; since outputs appear only whole and a task
skips what is already complete, every output appears exactly once. The driver plans (skipping finished outputs),
collects the outcomes, joins each video's segments in order with its audio, and reports the failures at the end.

Imported only for `--ray`: the core and the ComfyUI nodes never import Ray.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..checkpoint import model_from_state_dict, read_checkpoint
from ..describe import describe
from ..errors import ClusterError, SwinIRError
from ..fileutil import sha256_of
from .outputs import Outputs, tidy
from .plan import FRAMES_TO_VIDEO, IMAGE, VIDEO, VIDEO_TO_FRAMES, Job, frame_files
from .provenance import State
from .settings import DONE, FAILED, SKIPPED, Outcome, Settings
from .video import MIN_SEGMENT_FRAMES, Segment, join_segments, plan_segments
from .worker import Worker, tile_note

LOCAL = "local"
# Shipped to the cluster, so that nodes run this very code (they still need torch, numpy, pillow and PyAV).
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CPUS_PER_ACTOR = 4  # CPU clusters: one model copy per this many CPUs, each with that many threads
CONNECT_TIMEOUT_S = 10
SEGMENTS_PER_ACTOR = 4  # a video is cut into about this many pieces per actor, so the pool stays busy to the end


def _import_ray(local: bool):
    if local:
        # A cluster of this machine only: Ray then listens on 127.0.0.1, not on the network's address.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        import ray.data  # noqa: F401  (ray[data]: pyarrow and pandas)
    except ImportError as e:
        raise ClusterError(f"--ray needs Ray Data, which is not installed ({e}): pip install -r requirements-ray.txt "
                           "(or pip install 'ray[data]')") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fails at once on an address nothing listens at: Ray itself retries for many minutes."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ClusterError(f"--ray {address}: expected HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379), 'auto', "
                           "or nothing for a local cluster")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start one with "
                           "`ray start --head`, or check the address") from None


def _connect(ray, address: str) -> bool:
    """Connects (or starts a local cluster); True when this call did, so the caller disconnects."""
    if ray.is_initialized():
        return False
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                   runtime_env={"py_modules": [str(PACKAGE_DIR)]})
    if address not in (LOCAL, "auto") and not address.startswith("ray://"):
        _check_reachable(address)
    try:
        if address == LOCAL:
            ray.init(num_cpus=os.cpu_count(), **options)
        else:
            options.pop("include_dashboard")
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = "a local Ray cluster could not start" if address == LOCAL else f"cannot reach the Ray cluster at {address}"
        raise ClusterError(f"{where} ({str(e).splitlines()[0][:300]}); start one with `ray start --head`, or check "
                           "the address") from None
    return True


def _quiet(ray) -> None:
    """Ray Data's own progress bars and execution logs off: the command line reports progress and errors."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


@dataclasses.dataclass(frozen=True)
class Pool:
    actors: int
    gpus_per_actor: int
    cpus_per_actor: int

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_actor else "cpu"


def plan_pool(resources: dict, settings: Settings, actors: int | None) -> Pool:
    """One actor per GPU (with one or two CPUs for decoding and encoding) where the cluster has GPUs and no other
    device was asked for, else one per CPUS_PER_ACTOR CPUs, the CPUs shared out as torch threads; never more
    actors than the cluster can hold at once."""
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    if settings.device and settings.device.startswith("cuda") and not gpus:
        raise ClusterError(f"--device {settings.device} asked for, but the Ray cluster has no GPU; leave --device out "
                           "to run on its CPUs")
    if gpus and (settings.device is None or settings.device.startswith("cuda")):
        count = min(actors or gpus, gpus)
        return Pool(count, 1, max(1, min(2, cpus // count)))
    count = min(actors or max(1, cpus // CPUS_PER_ACTOR), cpus)
    return Pool(count, 0, max(1, cpus // count))


class RestoreActor:
    """A Ray Data actor: holds the model once, restores each task of its batches into its outputs."""

    def __init__(self, model_box: list, outputs: Outputs, pool: Pool) -> None:
        import ray

        torch.set_num_threads(pool.cpus_per_actor)
        sd, meta, name = ray.get(model_box[0])
        outputs = dataclasses.replace(outputs, settings=dataclasses.replace(outputs.settings, device=pool.device))
        self.worker = Worker(model_from_state_dict(sd, name, meta), outputs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        with torch.inference_mode():
            for text in batch["task"]:
                task = json.loads(str(text))
                job = Job(Path(task["source"]), Path(task["target"]), task["kind"])
                if task.get("segment") is None:
                    outcome = self.worker.run(job, key=task["key"])
                else:
                    outcome = self.worker.run_segment(job, task["key"], Segment(**task["segment"]))
                results.append(outcome.to_json())
        return {"task": np.asarray(batch["task"], dtype=object), "outcome": np.asarray(results, dtype=object)}


@dataclasses.dataclass
class _VideoPlan:
    job: Job
    key: str
    rotation: int
    segments: int
    outcomes: list[Outcome] = dataclasses.field(default_factory=list)


def _frame_segments(count: int, parts: int) -> list[Segment]:
    per = max(MIN_SEGMENT_FRAMES, -(-count // max(1, parts)))
    return [Segment(i, None, None, first, min(per, count - first)) for i, first in enumerate(range(0, count, per))]


def _plan(jobs: list[Job], outputs: Outputs, parts: int) -> tuple[list[dict], dict[int, Outcome], dict[int, _VideoPlan]]:
    """The tasks to run; the outcomes known already (complete, or failed before starting); the videos to join."""
    tasks: list[dict] = []
    known: dict[int, Outcome] = {}
    videos: dict[int, _VideoPlan] = {}
    for index, job in enumerate(jobs):
        base = {"job": index, "source": str(job.source), "target": str(job.target), "kind": job.kind}
        try:
            key = outputs.key(job)
            if job.kind == IMAGE:
                if outputs.state(job.target, key, outputs.reader(job)) is State.COMPLETE:
                    known[index] = Outcome(str(job.source), str(job.target), SKIPPED)
                else:
                    tasks.append({**base, "key": key, "segment": None})
                continue
            info = outputs.video_info(job)
            if job.kind == FRAMES_TO_VIDEO:
                segments = _frame_segments(len(frame_files(job.source)), parts)
            else:
                segments = plan_segments(job.source, parts)
            if job.kind == VIDEO_TO_FRAMES:
                total = sum(s.frames for s in segments)
                if total and outputs.frames_complete(job, key, total):
                    known[index] = Outcome(str(job.source), str(job.target), SKIPPED)
                    continue
            elif outputs.state(job.target, key, outputs.reader(job)) is State.COMPLETE:
                known[index] = Outcome(str(job.source), str(job.target), SKIPPED)
                continue
            videos[index] = _VideoPlan(job, key, info.rotation, len(segments))
            tasks += [{**base, "key": key, "segment": dataclasses.asdict(s)} for s in segments]
        except SwinIRError as e:
            known[index] = Outcome(str(job.source), str(job.target), FAILED, str(e))
        except OSError as e:
            known[index] = Outcome(str(job.source), str(job.target), FAILED, f"{e.filename or job.source}: {e.strerror or e}")
    return tasks, known, videos


def _finish_video(plan: _VideoPlan, outputs: Outputs) -> Outcome:
    """A video job's outcome from its segments' outcomes: frames written directly, or segments joined."""
    job = plan.job
    failed = [o for o in plan.outcomes if o.status == FAILED]
    frames = sum(o.frames for o in plan.outcomes)
    if failed:
        return Outcome(str(job.source), str(job.target), FAILED, failed[0].message)
    if len(plan.outcomes) != plan.segments:
        return Outcome(str(job.source), str(job.target), FAILED,
                       f"{job.source}: {plan.segments - len(plan.outcomes)} segments were not restored; run again")
    if job.kind == VIDEO_TO_FRAMES:
        status = DONE if any(o.status == DONE for o in plan.outcomes) else SKIPPED
        return Outcome(str(job.source), str(job.target), status, frames=frames)
    folder = outputs.parts_dir(job, plan.key)
    parts = [Path(o.target) for o in sorted(plan.outcomes, key=lambda o: o.target)]
    try:
        status = outputs.publish(
            lambda replace: join_segments(parts, job.target, rotation=plan.rotation, note=outputs.note(job, plan.key),
                                          audio_from=job.source if job.kind == VIDEO else None, replace=replace),
            job.target, plan.key, outputs.reader(job))
    except SwinIRError as e:
        return Outcome(str(job.source), str(job.target), FAILED, str(e))
    except OSError as e:
        return Outcome(str(job.source), str(job.target), FAILED, f"{job.target}: cannot write ({e.strerror or e})")
    for part in parts:
        part.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass
    return Outcome(str(job.source), str(job.target), status, frames=frames)


def run_on_ray(jobs: list[Job], model_path: Path, settings: Settings, *, address: str = LOCAL,
               actors: int | None = None, progress=None, log: Callable[[str], None] | None = None) -> list[Outcome]:
    """Every job's outcome, in job order. `address`: a cluster's address, or LOCAL to start one on this machine.
    `progress.update(done, total)` follows the tasks; `log` receives a few lines about the cluster."""
    ray = _import_ray(address == LOCAL)
    sd, meta = read_checkpoint(model_path)
    model = model_from_state_dict(sd, model_path.name, meta)  # checked here, before any actor starts
    outputs = Outputs(settings, model_path.name, sha256_of(model_path), model.config.scale)
    tidy(jobs)
    started = _connect(ray, address)
    _quiet(ray)
    try:
        pool = plan_pool(ray.cluster_resources(), settings, actors)
        if log:
            where = "a local cluster" if address == LOCAL else address
            kind = f"1 GPU, {pool.cpus_per_actor} CPU" if pool.gpus_per_actor else f"{pool.cpus_per_actor} CPU threads"
            log(f"model: {describe(model.config)}")
            if note := tile_note(settings.tile, model.config.window_size):
                log(note)
            log(f"ray: {where}, {pool.actors} actor{'s' if pool.actors > 1 else ''} ({kind} each)")
        tasks, known, videos = _plan(jobs, outputs, pool.actors * SEGMENTS_PER_ACTOR)
        if log:
            for plan in videos.values():
                log(f"{plan.job.source.name}: restored in {plan.segments} segment{'s' if plan.segments > 1 else ''}")
        if tasks:
            _execute(ray, tasks, outputs, pool, (sd, meta, model_path.name), videos, known, progress)
    finally:
        if started:
            ray.shutdown()
        tidy(jobs)
    for index, plan in videos.items():
        known[index] = _finish_video(plan, outputs)
    return [known[i] for i in range(len(jobs))]


def _execute(ray, tasks, outputs, pool, model, videos, known, progress) -> None:
    model_box = [ray.put(model)]
    ds = ray.data.from_items([{"task": json.dumps(t)} for t in tasks], override_num_blocks=len(tasks))
    ds = ds.map_batches(
        RestoreActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=pool.actors),
        fn_constructor_kwargs={"model_box": model_box, "outputs": outputs, "pool": pool},
        num_cpus=pool.cpus_per_actor, num_gpus=pool.gpus_per_actor,
    )
    done = 0
    try:
        for row in ds.iter_rows():
            task, outcome = json.loads(row["task"]), Outcome.from_json(row["outcome"])
            if task["segment"] is None:
                known[task["job"]] = outcome
            else:
                videos[task["job"]].outcomes.append(outcome)
            done += 1
            if progress is not None:
                progress.update(done, len(tasks))
    except ray.exceptions.RayError as e:
        raise ClusterError(f"the run on the Ray cluster failed ({str(e).splitlines()[0][:300]}); outputs already "
                           "written are complete and kept: run the same command again to do the rest") from None
    finally:
        if progress is not None:
            progress.close()
