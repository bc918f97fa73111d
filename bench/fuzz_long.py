"""The long fuzz run (issue 14, part 3): thousands of mutated checkpoints and image inputs, counted by outcome.

    nice -n 19 .venv/bin/python -m bench.fuzz_long [--checkpoints 20000] [--images 10000] [--seed 0]
    .venv/bin/python -m bench.fuzz_long --replay checkpoint:1234     # one case again, with its full outcome

The same cases as the short run in tests/test_fuzz.py (testkit/fuzz_mutations.py, run by testkit/fuzz_worker.py:
one worker process on one thread, a deadline per case, an address-space limit), drawn from numbered seeds so any
case can be replayed. Prints the counts by outcome for bench/RESULTS.md; a failing case's file or spec is kept in
out/fuzz-failures/ and the exit status is 1.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from testkit.fuzz_mutations import SEED_NAMES  # noqa: E402
from testkit.fuzz_worker import FuzzSession, new_session  # noqa: E402

FAILURES = ROOT / "out" / "fuzz-failures"
TARGETS = ("restore", "work")


def case_rng(seed: int, what: str, i: int) -> random.Random:
    return random.Random(f"{seed}:{what}:{i}")


def run_checkpoint(session: FuzzSession, seed: int, i: int) -> tuple[dict, Path]:
    rng = case_rng(seed, "checkpoint", i)
    return session.checkpoint_case(rng.choice(SEED_NAMES), rng)


def run_image(session: FuzzSession, seed: int, i: int) -> tuple[dict, dict]:
    rng = case_rng(seed, "image", i)
    return session.image_case(TARGETS[i % 2], rng)


def keep_failure(what: str, i: int, result: dict, case) -> Path:
    FAILURES.mkdir(parents=True, exist_ok=True)
    stem = FAILURES / f"{what}-{i}"
    if isinstance(case, Path):
        shutil.copyfile(case, stem.with_name(stem.name + "-" + case.name))
    else:
        stem.with_suffix(".spec.json").write_text(json.dumps(case, indent=1))
    stem.with_suffix(".result.json").write_text(json.dumps(result, indent=1))
    return stem


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", type=int, default=20000, help="mutated checkpoint files to load")
    ap.add_argument("--images", type=int, default=10000, help="image inputs (half restore, half the work layer)")
    ap.add_argument("--seed", type=int, default=0, help="run number: cases are drawn from (seed, case index)")
    ap.add_argument("--replay", help="one case, as 'checkpoint:N' or 'image:N', printed in full")
    args = ap.parse_args()

    session = new_session()
    started = time.monotonic()
    try:
        if args.replay:
            what, i = args.replay.split(":")
            result, case = (run_checkpoint if what == "checkpoint" else run_image)(session, args.seed, int(i))
            print(json.dumps({"case": str(case) if isinstance(case, Path) else case, "result": result}, indent=1))
            return 0
        counts: dict[str, collections.Counter] = {"checkpoint": collections.Counter(), "image": collections.Counter()}
        by_seed: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        failures = []
        slowest = 0.0
        jobs = [("checkpoint", i) for i in range(args.checkpoints)] + [("image", i) for i in range(args.images)]
        for n, (what, i) in enumerate(jobs, 1):
            result, case = (run_checkpoint if what == "checkpoint" else run_image)(session, args.seed, i)
            counts[what][result["kind"]] += 1
            slowest = max(slowest, result.get("seconds", 0.0))
            if what == "checkpoint":
                by_seed[result["seed"]][result["kind"]] += 1
            if result["kind"].startswith("FAIL"):
                failures.append((what, i, result["kind"], keep_failure(what, i, result, case)))
            if n % 1000 == 0:
                print(f"... {n}/{len(jobs)} cases, {len(failures)} failures, {time.monotonic() - started:.0f} s",
                      file=sys.stderr, flush=True)
    finally:
        session.close()
        shutil.rmtree(session.folder, ignore_errors=True)
    elapsed = time.monotonic() - started

    print(f"fuzz run {args.seed}: {args.checkpoints} checkpoint files, {args.images} image inputs, "
          f"{elapsed:.0f} s, slowest case {slowest:.2f} s, worker starts {session.worker.starts}")
    for what, counter in counts.items():
        total = sum(counter.values())
        print(f"\n{what} outcomes ({total} cases):")
        for kind, count in counter.most_common():
            print(f"  {count:7d}  {kind}")
    print("\ncheckpoint outcomes by seed file:")
    for seed in SEED_NAMES:
        top = ", ".join(f"{k} {v}" for k, v in by_seed[seed].most_common(4))
        print(f"  {seed}: {sum(by_seed[seed].values())} ({top})")
    if failures:
        print(f"\n{len(failures)} FAILURES (kept in {FAILURES}):")
        for what, i, kind, stem in failures[:50]:
            print(f"  {what}:{i}  {kind}  -> --replay {what}:{i}  ({stem.name})")
        return 1
    print("\nno failures: only CheckpointError / InputError or a correct result, no hang, no code run, "
          "memory within bounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
