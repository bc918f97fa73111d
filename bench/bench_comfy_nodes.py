"""The SwinIR nodes' run in ComfyUI on the CPU: the managed path (model manager, previews) against the path that
freed memory and moved the model by hand around every run, interleaved, medians; and what the previews cost.

ComfyUI 0.3.75's own modules run in this process (.comfyui/ComfyUI, --cpu). The preview hook does what the server
does with a preview (fit it to --preview-size and encode it as a JPEG), so its cost is counted. The hand path is
`hand_run` below: free_memory(weights + estimate + batch), soft_empty_cache, model.to(device), the engine with a
progress bar, model.to(offload device), soft_empty_cache.

    python bench/bench_comfy_nodes.py [--rounds 5] [--size 256] [--tile 128]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch

from testkit.comfy_path import add_comfyui_to_path



def comfy_and_pack():
    add_comfyui_to_path()
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management as mm
    import comfy.utils
    from testkit.comfy_harness import pack_module

    return mm, comfy.utils, pack_module("nodes.runtime"), pack_module("nodes.work"), pack_module("swinir")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=256, help="input side in pixels")
    parser.add_argument("--tile", type=int, default=128, help="tile side (0: whole image)")
    args = parser.parse_args()
    mm, utils, runtime, work, core = comfy_and_pack()
    from PIL import ImageOps

    encoded = {"previews": 0, "seconds": 0.0}

    def hook(value, total, preview, prompt_id=None, node_id=None):
        mm.throw_exception_if_processing_interrupted()
        if preview is not None:  # what the server does with it (server.send_image)
            started = time.perf_counter()
            kind, image, side = preview
            ImageOps.contain(image, (side, side)).save(io.BytesIO(), format=kind, quality=95)
            encoded["previews"] += 1
            encoded["seconds"] += time.perf_counter() - started

    utils.set_progress_bar_global_hook(hook)

    made: list = []

    class Counted(runtime.Previews):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    runtime.Previews = Counted

    def hand_run(model, images, family, *, tile_size, overlap, precision):
        work.check_task(model, family)
        device = mm.get_torch_device()
        required = mm.module_size(model) + runtime._activation_estimate(model, images, tile_size, precision, device)
        mm.free_memory(required + images.nelement() * images.element_size(), device)
        mm.soft_empty_cache()
        pbar = utils.ProgressBar(max(images.shape[0], 1))
        try:
            model.to(device)
            return work.restore_batch(model, images, tile_size=tile_size, overlap=overlap, precision=precision,
                                      device=device, progress=lambda d, t: pbar.update_absolute(d, t),
                                      cancel=mm.processing_interrupted, oom_exceptions=(mm.OOM_EXCEPTION,))
        finally:
            model.to(mm.unet_offload_device())
            mm.soft_empty_cache()

    x = torch.rand(1, args.size, args.size, 3, generator=torch.Generator().manual_seed(0))
    cases = {"upscale x2": ("sr", "sr"), "denoise": ("denoise", "denoise")}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; input {args.size}², tile {args.tile}, "
          f"{args.rounds} interleaved rounds\n")
    print("| node | hand path, median s | managed path, median s | managed / hand | previews sent per run | "
          "preview cost (made + encoded) / run time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, (family, task) in cases.items():
        model = runtime.managed(core.load_model(core.default_model_path(family)))
        times = {"hand": [], "managed": []}
        shares, sent = [], []
        for _ in range(args.rounds + 1):  # the first round warms both paths up and is not counted
            for path, fn in (("hand", hand_run), ("managed", runtime.run)):
                made.clear()
                encoded.update(previews=0, seconds=0.0)
                started = time.perf_counter()
                fn(model, x, task, tile_size=args.tile, overlap=32, precision="fp32")
                times[path].append(time.perf_counter() - started)
                if path == "managed":
                    shares.append((made[0].spent + encoded["seconds"]) / times[path][-1])
                    sent.append(made[0].sent)
        hand, managed = statistics.median(times["hand"][1:]), statistics.median(times["managed"][1:])
        print(f"| {label} | {hand:.2f} | {managed:.2f} | {managed / hand:.3f} | {statistics.median(sent[1:]):g} | "
              f"{100 * statistics.median(shares[1:]):.2f} % (max {100 * max(shares[1:]):.2f} %) |", flush=True)
        mm.unload_all_models()


if __name__ == "__main__":
    main()
