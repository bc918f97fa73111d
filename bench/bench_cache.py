"""What the core keeps alive after restoring images of many sizes: tensor bytes still referenced, and the cache's
own count, after each of N sizes; optionally for another checkout of the pack (e.g. another commit), each in a
fresh process.

    python -m bench.bench_cache [--sizes 16] [--root OTHER_CHECKOUT ...]

The default model, CPU, whole images of sides 200-560 px (as in issue 14's report); "alive" counts the storages of
every tensor the garbage collector can reach that is not a parameter, after gc.collect().
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import gc, json, sys, warnings
import torch
import swinir
torch.set_num_threads({threads})

def alive():
    gc.collect()
    seen, total = set(), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    for t in tensors:
        if isinstance(t, torch.nn.Parameter):
            continue
        try:
            s = t.untyped_storage()
        except RuntimeError:
            continue
        if s.data_ptr() not in seen:
            seen.add(s.data_ptr())
            total += s.nbytes()
    return total

model = swinir.load_model({model!r})
base = alive()
rows = []
for i in range({n}):
    side_h, side_w = 200 + (360 * i) // max(1, {n} - 1), 560 - (360 * i) // max(1, {n} - 1)
    with torch.inference_mode():
        swinir.restore(model, torch.rand(1, 3, side_h, side_w), tile=None, memory_budget=1 << 40)
    held = getattr(swinir, "cached_bytes", lambda: {{}})().get("cpu")
    rows.append(dict(sizes=i + 1, alive=alive() - base, cache=held))
after_clear = None
if hasattr(swinir, "clear_caches"):
    swinir.clear_caches()
    after_clear = alive() - base
print(json.dumps(dict(rows=rows, after_clear=after_clear)))
"""


def measure(root: Path, n: int, threads: int) -> dict:
    model = str(ROOT / "swinir" / "models" / "swinir-s-x2-default.safetensors")
    code = CHILD.format(threads=threads, model=model, n=n)
    # Started in `root`: `python -c` puts that checkout first on the path, so the child imports its swinir.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, default=16)
    ap.add_argument("--root", type=Path, nargs="*", default=[], help="other checkouts to measure too")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    mib = 1 << 20
    print("| code | after N sizes | tensors alive MiB | cache holds MiB |")
    print("|---|---|---|---|")
    for root in [ROOT, *args.root]:
        r = measure(root, args.sizes, args.threads)
        label = "this checkout" if root == ROOT else str(root)
        for row in r["rows"]:
            if row["sizes"] in (1, 4, 8, args.sizes):
                cache = "-" if row["cache"] is None else f"{row['cache'] / mib:.1f}"
                print(f"| {label} | {row['sizes']} | {row['alive'] / mib:.1f} | {cache} |", flush=True)
        if r["after_clear"] is not None:
            print(f"| {label} | after clear_caches() | {r['after_clear'] / mib:.1f} | 0 |", flush=True)


if __name__ == "__main__":
    main()
