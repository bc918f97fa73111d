"""`python -m swinir convert`: official checkpoint to the pack's safetensors format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checkpoint import convert, load_model
from ..describe import describe


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a SwinIR checkpoint (.pth) to safetensors with its settings recorded",
        description="Write weights without the recomputable buffers (attn_mask, relative_position_index) and "
        "with the config, task, level, source file name and source sha256 in the safetensors metadata.",
    )
    p.add_argument("input", type=Path, help="official .pth/.pt/.ckpt or .safetensors SwinIR checkpoint")
    p.add_argument("output", type=Path, help="output .safetensors file")
    p.add_argument("--interop", action="store_true",
                   help="keep the buffers so ComfyUI's built-in 'Load Upscale Model' (spandrel) can read the file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.output.suffix != ".safetensors":
        print(f"error: {args.output}: the output must end in .safetensors", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    convert(args.input, args.output, interop=args.interop)
    print(f"{args.output}: {describe(load_model(args.output).config)}", file=sys.stderr)
    return 0
