"""ComfyUI node definitions (V3 API): schemas only; the work is in runtime.py and work.py."""

from __future__ import annotations

from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from . import runtime, work

CATEGORY = "image/SwinIR"

SwinIRModel = io.Custom("SWINIR_MODEL")

_TILE_TOOLTIP = (
    "Tile size in input pixels. 0 = automatic: the whole image in one pass when it fits in memory, "
    "otherwise tiles sized to the free memory (and smaller tiles again after an out-of-memory error). "
    "Smaller tiles use less memory and are slower."
)
_OVERLAP_TOOLTIP = (
    "Overlap between neighbouring tiles, in input pixels; the overlapping borders are blended so no "
    "seams show. Only used when the image is split into tiles."
)
_PRECISION_TOOLTIP = (
    "Arithmetic precision. fp32 is exact and the safe choice on CPU; bf16/fp16 are faster and use less "
    "memory on GPUs that support them, with tiny differences in the result. A CPU without AVX-512 BF16/FP16 or "
    "AMX units emulates them, several times slower than fp32 (the console says so)."
)
_STRENGTH_TOOLTIP = "How much of the restored image to keep: 1 = fully restored, 0 = the input unchanged, in between = a blend."


def _common_inputs():
    return [
        SwinIRModel.Input("model", tooltip="A SwinIR model from 'Load SwinIR Model' (or 'SwinIR From Upscale Model')."),
        io.Image.Input("image", tooltip="The image or batch of images (e.g. video frames) to restore."),
        io.Int.Input("tile_size", default=0, min=0, max=4096, step=8, tooltip=_TILE_TOOLTIP),
        io.Int.Input("overlap", default=32, min=0, max=512, step=1, tooltip=_OVERLAP_TOOLTIP),
        io.Combo.Input("precision", options=list(work.PRECISIONS), default="fp32", tooltip=_PRECISION_TOOLTIP),
    ]


class SwinIRModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        choices = runtime.model_choices()
        return io.Schema(
            node_id="SwinIRModelLoader",
            display_name="Load SwinIR Model",
            category=CATEGORY,
            description=(
                "Loads a SwinIR checkpoint (.safetensors or the official .pth) and detects its task, scale and "
                "window from the weights. Lists the pack's own models ('(default) ...': x2 upscale, blind denoise, "
                "blind JPEG cleanup), models/swinir/ and models/upscale_models/, then every official SwinIR model "
                "not on disk yet under its official file name: those are downloaded into models/swinir/ when first "
                "run (checked against the published sha256; Cancel stops the download)."
            ),
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=choices,
                    default=choices[0],
                    tooltip=(
                        "The checkpoint to load. '(default) ...' are the small models that ship with this pack; "
                        "other files come from models/swinir/ and models/upscale_models/. "
                        + runtime.downloads_tooltip()
                    ),
                ),
            ],
            outputs=[
                SwinIRModel.Output(display_name="model", tooltip="The loaded SwinIR model, for the SwinIR nodes."),
                io.String.Output(display_name="info", tooltip="What the model is: task, scale, window, noise level or JPEG quality."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, model_name):
        # Load again when the file behind the name changes (ComfyUI otherwise reuses the cached model).
        return runtime.model_fingerprint(model_name)

    @classmethod
    def execute(cls, model_name) -> io.NodeOutput:
        model, info = runtime.load_model(model_name)
        return io.NodeOutput(model, info)


class SwinIRFromUpscaleModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SwinIRFromUpscaleModel",
            display_name="SwinIR From Upscale Model",
            category=CATEGORY,
            description=(
                "Turns a SwinIR loaded with the built-in 'Load Upscale Model' node into a SwinIR model for this "
                "pack's nodes (tiling, interrupt, precision, denoise/JPEG tasks). Other architectures are refused."
            ),
            inputs=[
                io.UpscaleModel.Input("upscale_model", tooltip="An UPSCALE_MODEL from 'Load Upscale Model' that is a SwinIR."),
            ],
            outputs=[
                SwinIRModel.Output(display_name="model", tooltip="The same weights as a SwinIR model."),
                io.String.Output(display_name="info", tooltip="What the model is: task, scale, window."),
            ],
        )

    @classmethod
    def execute(cls, upscale_model) -> io.NodeOutput:
        model, info = runtime.from_upscale_model(upscale_model)
        return io.NodeOutput(model, info)


class SwinIRUpscale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SwinIRUpscale",
            display_name="SwinIR Upscale",
            category=CATEGORY,
            description=(
                "Super-resolution with a SwinIR SR model (classical, lightweight or real-world): the output is the "
                "model's scale (x2, x3, x4, x8) times the input, or scale_by times the input when set."
            ),
            inputs=_common_inputs()
            + [
                io.Float.Input(
                    "scale_by",
                    default=0.0,
                    min=0.0,
                    max=8.0,
                    step=0.05,
                    optional=True,
                    tooltip=(
                        "Final size as a factor of the input. 0 (or the model's scale) = the model's native size; "
                        "e.g. 1.5 with a x2 model upscales x2 and then downsizes with an antialiased bicubic filter."
                    ),
                ),
            ],
            outputs=[io.Image.Output(tooltip="The upscaled image(s).")],
        )

    @classmethod
    def execute(cls, model, image, tile_size, overlap, precision, scale_by=0.0) -> io.NodeOutput:
        out = runtime.run(model, image, "sr", tile_size=tile_size, overlap=overlap, precision=precision)
        h, w = work.output_size(image.shape[1], image.shape[2], int(model.config.scale), scale_by)
        return io.NodeOutput(work.resize(out, h, w))


class SwinIRDenoise(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SwinIRDenoise",
            display_name="SwinIR Denoise",
            category=CATEGORY,
            description=(
                "Removes Gaussian-like noise with a SwinIR denoising model (gray or color; each model is trained "
                "for one noise level, e.g. 15, 25 or 50). A grayscale model on a color image denoises brightness "
                "and keeps the colors. The output has the input's size."
            ),
            inputs=_common_inputs()
            + [io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.05, tooltip=_STRENGTH_TOOLTIP)],
            outputs=[io.Image.Output(tooltip="The denoised image(s).")],
        )

    @classmethod
    def execute(cls, model, image, tile_size, overlap, precision, strength) -> io.NodeOutput:
        out = runtime.run(model, image, "denoise", tile_size=tile_size, overlap=overlap, precision=precision)
        return io.NodeOutput(work.blend(image, out, strength))


class SwinIRJPEGCleanup(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SwinIRJPEGCleanup",
            display_name="SwinIR JPEG Cleanup",
            category=CATEGORY,
            description=(
                "Removes JPEG compression artifacts (blocks, ringing) with a SwinIR JPEG model (gray or color; "
                "each trained for one JPEG quality, e.g. 10, 20, 30 or 40). The output has the input's size."
            ),
            inputs=_common_inputs()
            + [io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.05, tooltip=_STRENGTH_TOOLTIP)],
            outputs=[io.Image.Output(tooltip="The cleaned image(s).")],
        )

    @classmethod
    def execute(cls, model, image, tile_size, overlap, precision, strength) -> io.NodeOutput:
        out = runtime.run(model, image, "jpeg", tile_size=tile_size, overlap=overlap, precision=precision)
        return io.NodeOutput(work.blend(image, out, strength))




class SwinIRAnalyzeImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SwinIRAnalyzeImage",
            display_name="SwinIR Analyze Image",
            category=CATEGORY,
            description=(
                "Measures an image's noise level (sigma on the 0-255 scale) and whether it carries a JPEG 8x8 block "
                "grid, with the JPEG quality (IJG 1-100) it was saved at, from the pixels alone (also after a crop). "
                "Use it to pick the denoise or JPEG model of the right level, or let 'SwinIR Auto Restore' do it."
            ),
            inputs=[io.Image.Input("image", tooltip="The image or batch of images to measure.")],
            outputs=[
                io.Float.Output(display_name="noise_sigma", tooltip=(
                    "Noise standard deviation on the 0-255 scale (0 for a flat or tiny image). For a batch: the "
                    "median over the images.")),
                io.Int.Output(display_name="jpeg_quality", tooltip=(
                    "IJG JPEG quality the image was saved at, 0 when no JPEG grid is found. For a batch: the most "
                    "common value.")),
                io.String.Output(display_name="info", tooltip="One line per image: what was measured, with notes."),
            ],
        )

    @classmethod
    def execute(cls, image) -> io.NodeOutput:
        found = work.analyse_images(image)
        sigma, quality = work.batch_levels(found)
        return io.NodeOutput(sigma, quality, work.analysis_text(found))


class SwinIRAutoRestore(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SwinIRAutoRestore",
            display_name="SwinIR Auto Restore",
            category=CATEGORY,
            description=(
                "Measures each image (noise level, JPEG quality) and restores it with the models that fit: JPEG "
                "cleanup when a JPEG grid is found, denoising when the noise is above the threshold, then the "
                "upscale to the target scale. Each step takes the official model of the nearest level when it is on "
                "disk (or may be downloaded), else the pack's blind defaults; 'info' says what was found, what ran "
                "and why. Images of a batch are decided one by one."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The image or batch of images to restore."),
                io.Float.Input("scale", default=2.0, min=1.0, max=8.0, step=0.05, tooltip=(
                    "Final size as a factor of the input. 1 = no upscale (cleanup only); the best super-resolution "
                    "model available is used, then an antialiased resize to the exact factor.")),
                io.Float.Input("denoise_threshold", default=5.0, min=0.0, max=50.0, step=0.5, tooltip=(
                    "Denoise only when the measured noise sigma (0-255 scale) is above this. Clean photos measure "
                    "about 0.5-3.")),
                io.Boolean.Input("allow_download", default=False, tooltip=(
                    "Also choose official models that are not on disk yet; they are downloaded into models/swinir/ "
                    "when first needed (checked against the published sha256).")),
                *_common_inputs()[2:],  # tile_size, overlap, precision
                SwinIRModel.Input("jpeg_model", optional=True, tooltip=(
                    "Optional: a JPEG-artifact removal model to use whenever an image needs JPEG cleanup, instead of "
                    "the automatic choice.")),
                SwinIRModel.Input("denoise_model", optional=True, tooltip=(
                    "Optional: a denoising model to use whenever an image needs denoising.")),
                SwinIRModel.Input("upscale_model", optional=True, tooltip=(
                    "Optional: a super-resolution model for the upscale (run as often as needed to reach the "
                    "scale).")),
            ],
            outputs=[
                io.Image.Output(tooltip="The restored image(s), scale times the input size."),
                io.String.Output(display_name="info", tooltip=(
                    "Per image: the noise and JPEG quality found, each model run and why, and notes (e.g. a model "
                    "worth downloading).")),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, allow_download=False, **kwargs):
        # Decide again when the models on disk change (ComfyUI otherwise reuses the last result).
        return tuple(runtime.auto_available(bool(allow_download)))

    @classmethod
    def execute(cls, image, scale, denoise_threshold, allow_download, tile_size, overlap, precision,
                jpeg_model=None, denoise_model=None, upscale_model=None) -> io.NodeOutput:
        out, info = runtime.auto_restore(
            image, scale=scale, threshold=denoise_threshold, allow_download=allow_download,
            overrides={"jpeg": jpeg_model, "denoise": denoise_model, "upscale": upscale_model},
            tile_size=tile_size, overlap=overlap, precision=precision,
        )
        return io.NodeOutput(out, info)


NODES = [
    SwinIRModelLoader,
    SwinIRFromUpscaleModel,
    SwinIRUpscale,
    SwinIRDenoise,
    SwinIRJPEGCleanup,
    SwinIRAnalyzeImage,
    SwinIRAutoRestore,
]


class SwinIRExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        runtime.register_model_folder()
        runtime.add_routes()
        return list(NODES)
