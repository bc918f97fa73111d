"""bench/gpu_check.py: the CPU rehearsal of the GPU check (every section, tiny models, one thread) and, where CUDA
is available, the GPU sections themselves.

The quick CPU run happens once per module in a subprocess (as the lead would run it); the tests then read its JSON
record. The kernel classifier is also tested in-process on the paths that are not fused (the plain matmul-softmax
path, and SDPA forced onto its math backend), so "every call fused" is a finding the check can contradict.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import swinir.network
from bench import gpu_check

ROOT = Path(__file__).resolve().parents[1]

# A whole run of the GPU check's CPU rehearsal in a subprocess: the full suite's.
pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.full]


def run_check(out: Path, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--out", str(out), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)
    assert out.is_file(), f"no record written (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc, json.loads(out.read_text())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    out = tmp_path_factory.mktemp("gpu_check") / "record.json"
    md = out.with_suffix(".md")
    # A budget far above the ~20 s it takes, so a loaded machine cannot make sections skip cases (no timing luck).
    proc, record = run_check(out, "--device", "cpu", "--quick", "--threads", "1", "--budget-s", "900",
                             "--markdown", str(md))
    return proc, record, md


@pytest.fixture
def quick(quick_run) -> tuple[subprocess.CompletedProcess, dict]:
    return quick_run[:2]


def sections_ok(record: dict, names) -> None:
    for name in names:
        entry = record["sections"][name]
        assert entry["status"] == "ok", f"{name}: {entry.get('error')}\n{entry.get('traceback', '')}"


def test_quick_cpu_run_completes_every_section(quick):
    proc, record = quick
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(record["sections"]) == list(gpu_check.SECTIONS)
    sections_ok(record, gpu_check.SECTIONS)
    meta = record["meta"]
    assert meta["quick"] is True and meta["device"] == "cpu" and meta["threads"] == 1
    assert meta["spandrel"] and meta["torch"] == torch.__version__
    assert not [n for n, e in record["sections"].items() if "skipped_for_time" in e["result"]]
    assert set(record["targets"]) == {
        "fused_kernel_every_call_after_padding", "bf16_psnr_vs_fp32_cpu", "speedup_vs_spandrel_M_x4_fp32",
        "speedup_vs_spandrel_M_x4_bf16", "oom_recovered_by_shrinking",
    }


def test_markdown_summary_is_printed_and_written(quick_run):
    proc, _, path = quick_run
    md = path.read_text()
    assert md in proc.stdout
    for heading in ("SDPA backend per attention call", "Outputs against fp32", "Time against spandrel",
                    "Batch of frames", "Peak memory by tile size", "Out of memory on purpose", "Targets"):
        assert heading in md
    assert "error" not in md.lower()


def test_kernel_section_profiles_every_model_precision_and_alignment(quick):
    _, record = quick
    result = record["sections"]["kernels"]["result"]
    cases = {(c["model"], c["precision"], c["align"]): c for c in result["cases"]}
    assert set(cases) == {(m, p, a) for m in ("M_x4", "S_x2", "JPEG_w7") for p in ("fp32", "bf16", "fp16")
                          for a in (1, 8)}
    for (model, _, align), c in cases.items():
        assert "error" not in c, c
        assert c["head_dim"] == {"M_x4": 30, "S_x2": 10, "JPEG_w7": 30}[model]
        assert c["padded_head_dim"] == (c["head_dim"] if align == 1 else {30: 32, 10: 16}[c["head_dim"]])
        # Two stages of two blocks: the shifted blocks run up to four window groups, each one attention call.
        assert c["calls"] >= 4 and sum(c["backends"].values()) == c["calls"]
        # The CPU runs its fused flash kernel on every call, padded or not, and copies nothing inside a call.
        assert c["backends"] == {"flash_cpu": c["calls"]} and c["all_fused"]
        assert c["copies_per_call"] == 0
        sig = c["signatures"][0]
        assert sig["q_shape"][-1] == c["padded_head_dim"] and sig["mask_shape"][-1] == sig["mask_shape"][-2]
        assert sig["can_use"]["efficient"]["ok"] is False  # the CUDA checks ran, and refused CPU tensors
    assert result["after_all_fused"] is True and result["after_fused_share"] == 1.0


def test_parity_section_compares_precisions_with_cpu_fp32(quick):
    _, record = quick
    rows = record["sections"]["parity"]["result"]["rows"]
    assert [r["model"] for r in rows] == ["M_x4", "S_x2", "JPEG_w7"]
    for row in rows:
        p = row["precisions"]
        assert p["fp32"]["identical"] is True  # same device, same arithmetic
        assert p["bf16"]["psnr_db"] > 40 and p["fp16"]["psnr_db"] > p["bf16"]["psnr_db"]
        assert 0 < p["bf16"]["max_abs_diff"] < 0.1
        assert p["fp16"]["guard_fired"] is False and p["fp16"]["raw_forward_finite"] is True
        ref = row["reference"]  # random weights give a real image, not a constant or a clamped one
        assert ref["std"] > 0.05 and ref["clamped"] < 0.6
    target = record["targets"]["bf16_psnr_vs_fp32_cpu"]
    assert target["value"] == min(r["precisions"]["bf16"]["psnr_db"] for r in rows)


def test_timing_section_times_ours_against_spandrel_on_the_same_weights(quick):
    _, record = quick
    cases = record["sections"]["timing"]["result"]["cases"]
    assert [(c["model"], c["precision"]) for c in cases] == [
        (m, p) for m in ("M_x4", "S_x2", "JPEG_w7") for p in ("fp32", "bf16")]
    for c in cases:
        assert "error" not in c, c
        assert set(c["median_s"]) >= {"ours", "ours_restore", "spandrel"}
        assert all(v > 0 for v in c["median_s"].values())
        assert all(n >= 1 for n in c["samples"].values())
        assert c["cache_while_timing"]["evictions"] == 0  # nothing rebuilt per forward
        assert c["speedup"] == pytest.approx(c["spandrel_best_s"] / c["median_s"]["ours"])
        # Same weights: the outputs agree (fp32 to float rounding; bf16 to its precision).
        assert c["max_abs_diff_vs_spandrel"] < (1e-4 if c["precision"] == "fp32" else 0.1)
        if c["precision"] == "bf16":
            # spandrel's bf16 weights either ran (then timed) or failed (then the error is kept, not lost).
            assert ("spandrel_cast_weights" in c["median_s"]) != ("spandrel_cast_weights" in c.get("errors", {}))


def test_batch_section_runs_several_tiles_per_forward(quick):
    _, record = quick
    cases = record["sections"]["batch"]["result"]["cases"]
    assert [c["precision"] for c in cases] == ["fp32", "bf16"]
    for c in cases:
        assert c["frames"] == 8 and c["tiles_per_frame"] > 1
        assert set(c["median_s"]) == {"tile_batch_1", "tile_batch_8", "whole_frames", "spandrel_per_frame"}
        assert c["max_abs_diff_tile_batch_8_vs_1"] < (1e-5 if c["precision"] == "fp32" else 1e-2)


def test_memory_section_measures_peaks_by_tile(quick):
    _, record = quick
    result = record["sections"]["memory"]["result"]
    rows = result["rows"]
    assert [(r["precision"], r["tile"]) for r in rows] == [
        (p, t) for p in ("fp32", "bf16") for t in (32, 64, 96, "auto")]
    for r in rows:
        assert r["peak_bytes"] is not None and r["peak_bytes"] >= 0 and r["estimate_bytes"] > 0
    tiles = {r["tile"]: r["tiles"] for r in rows if r["precision"] == "fp32"}
    assert tiles[32] > tiles[64] > tiles[96] == 1


def test_oom_section_recovers_by_shrinking(quick):
    _, record = quick
    r = record["sections"]["oom"]["result"]
    assert r["mode"].startswith("simulated")
    assert r["shrinks"] and r["shrinks"][0][0] == 96 and r["final_tile"] < 96
    assert r["final_tile"] ** 2 <= r["limit_pixels"]
    assert r["max_abs_diff_vs_unconstrained_same_tile"] <= r["tolerance"] and r["recovered"] is True
    assert r["psnr_vs_whole_db"] is None or r["psnr_vs_whole_db"] > 30
    assert record["targets"]["oom_recovered_by_shrinking"]["met"] is True


def run_in_process(out: Path, capsys, *args: str) -> tuple[int, dict, str]:
    rc = gpu_check.main(["--out", str(out), *args])
    return rc, json.loads(out.read_text()), capsys.readouterr().out


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path, capsys):
    rc, record, stdout = run_in_process(tmp_path / "r.json", capsys, "--device", "cpu", "--quick",
                                        "--sections", "parity", "oom", "--inject-error", "parity")
    assert rc == 1
    assert record["sections"]["parity"]["status"] == "error"
    assert "InjectedError" in record["sections"]["parity"]["error"]
    assert record["sections"]["oom"]["status"] == "ok"
    assert record["targets"]["bf16_psnr_vs_fp32_cpu"]["met"] is None
    assert "parity: error" in stdout


def test_a_spent_budget_skips_sections_but_writes_the_record(tmp_path, capsys):
    rc, record, stdout = run_in_process(tmp_path / "r.json", capsys, "--device", "cpu", "--quick", "--budget-s", "0",
                                        "--sections", "kernels", "timing")
    assert rc == 0 and "kernels: skipped" in stdout
    assert {n: e["status"] for n, e in record["sections"].items()} == {"kernels": "skipped", "timing": "skipped"}
    assert all(t["met"] is None for t in record["targets"].values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so --device cuda would run")
def test_cuda_requested_without_cuda_is_one_clear_error_and_a_record(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert gpu_check.main(["--out", str(out), "--device", "cuda"]) == 2
    message = capsys.readouterr().err
    assert "CUDA is not available" in message and "--device cpu" in message
    assert "CUDA is not available" in json.loads(out.read_text())["fatal"]


def _context(device: str = "cpu") -> gpu_check.Context:
    return gpu_check.Context(argparse.Namespace(repeats=0), torch.device(device), gpu_check.QUICK,
                             gpu_check.Models(gpu_check.QUICK_MODELS, torch.device(device)))


def test_kernel_check_reports_calls_that_are_not_fused(monkeypatch):
    ctx = _context()
    monkeypatch.setattr(swinir.network, "USE_SDPA", False)
    plain = gpu_check.profile_case(ctx, "S_x2", "fp32", 1)
    assert plain["calls"] >= 4 and plain["backends"] == {"plain": plain["calls"]} and not plain["all_fused"]
    monkeypatch.undo()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        math = gpu_check.profile_case(ctx, "S_x2", "fp32", 1)
    assert math["backends"] == {"math": math["calls"]} and math["fused_calls"] == 0
    fused = gpu_check.profile_case(ctx, "S_x2", "fp32", 1)
    assert fused["backends"] == {"flash_cpu": fused["calls"]} == {"flash_cpu": math["calls"]}
    assert fused["copies_per_call"] == 0


def test_kernel_check_reports_mask_copies_inside_attention_calls(monkeypatch):
    real = swinir.network.window_attention

    def copying(q, k, v, mask, scale):  # what a per-call pad to an aligned buffer would do
        return real(q, k, v, mask.contiguous(), scale)  # the mask is broadcast over windows: a real copy

    monkeypatch.setattr(swinir.network, "window_attention", copying)
    case = gpu_check.profile_case(_context(), "S_x2", "fp32", 1)
    assert case["copies_per_call"] >= 1 and case["copy_ops"]["aten::copy_"] == case["calls"]


@pytest.mark.parametrize("name, backend", [
    ("fmha_cutlassF_f32_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel<float, cutlass::arch::Sm80, "
     "true, 64, 64, 64, true, true>::Params)", "efficient"),
    ("void attention_kernel_batched_impl<AttentionKernel<cutlass::bfloat16_t, cutlass::arch::Sm80, true, 64, 64, "
     "64, true, true>>(AttentionKernel<cutlass::bfloat16_t, cutlass::arch::Sm80, true, 64, 64, 64, true, "
     "true>::Params)", "efficient"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x128_4x1x1_kernel0_0", "cudnn"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<32, 128, 128, 4, false, false, "
     "cutlass::bfloat16_t>, false, false, false, false, true, true, false, false>(pytorch_flash::Flash_fwd_params)",
     "flash"),
    ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float, float, float, "
     "at::native::(anonymous namespace)::SoftMaxForwardEpilogue>(float*, float const*, int)", None),
    ("sm90_xmma_gemm_f32f32_tf32f32_f32_tn_n_tilesize128x128x32_warpgroupsize1x1x1_execute_segment_k_off_kernel__"
     "5x_cublas", None),
])
def test_kernel_names_are_classified(name, backend):
    assert gpu_check.kernel_backend(name) == backend


GPU_SECTIONS = ("kernels", "parity", "batch", "memory", "oom")


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA device here (CI never has one): on a GPU, run `python -m bench.gpu_check`")
def test_gpu_check_on_cuda(tmp_path):
    """The GPU sections for real (timing is recorded by the script, not asserted: no test on timing luck).

    With SWINIR_GPU_CHECK_RECORD naming the JSON of a full `bench/gpu_check.py` run on this machine, that record is
    checked instead of running the sections again (device time is scarce)."""
    given = os.environ.get("SWINIR_GPU_CHECK_RECORD")
    if given:
        record = json.loads(Path(given).read_text())
        assert record["meta"]["device"].startswith("cuda") and not record["meta"]["quick"], record["meta"]
    else:
        proc, record = run_check(tmp_path / "r.json", "--device", "cuda", "--budget-s", "240",
                                 "--sections", *GPU_SECTIONS, timeout=420)
        assert proc.returncode == 0, proc.stderr[-3000:]
    sections_ok(record, GPU_SECTIONS)
    assert not [n for n in GPU_SECTIONS if "skipped_for_time" in record["sections"][n]["result"]]
    kernels = record["sections"]["kernels"]["result"]
    assert kernels["after_all_fused"], [(c["model"], c["precision"], c.get("backends"))
                                        for c in kernels["cases"] if c["align"] == 8 and not c.get("all_fused")]
    for c in kernels["cases"]:
        if c["align"] == 8:
            assert c["copies_per_call"] == 0, (c["model"], c["precision"], c["copy_ops"])  # no per-call mask pad
    for row in record["sections"]["parity"]["result"]["rows"]:
        fp32, bf16 = row["precisions"]["fp32"]["psnr_db"], row["precisions"]["bf16"]["psnr_db"]
        assert bf16 >= 45, row  # the target
        assert fp32 is None or fp32 > bf16, row  # (fp32 convolutions may run in TF32 on CUDA)
    for c in record["sections"]["batch"]["result"]["cases"]:
        assert c["max_abs_diff_tile_batch_8_vs_1"] < (1e-3 if c["precision"] == "fp32" else 2e-2)
    rows = [r for r in record["sections"]["memory"]["result"]["rows"] if r["precision"] == "fp32"]
    assert rows[0]["peak_bytes"] < rows[-2]["peak_bytes"]  # smallest tile against the whole image
    oom = record["sections"]["oom"]["result"]
    assert oom["mode"].startswith("real") and oom["recovered"], oom
