"""Fuzzed inputs (issue 14): mutated checkpoints give only CheckpointError, images of every shape, dtype, layout
and size give only InputError or a correct result; nothing hangs, no code runs, memory stays bounded.

The short run of the fuzzer in testkit/fuzz_mutations.py and testkit/fuzz_worker.py, driven by hypothesis
(derandomized, so CI runs the same cases each time; `python -m bench.fuzz_long` runs thousands more). Every case
runs in the fuzzer's worker process, under an address-space limit and a deadline. The harness's own checks are
shown to catch what they claim to catch (a hang, a huge allocation, memory growth, code that runs), and the cases
the fuzzer found are kept as plain tests.
"""

from __future__ import annotations

import random
import struct
import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import swinir
from testkit.fuzz_mutations import SEED_NAMES, _Canary, canary_code, tiny_models
from testkit.fuzz_worker import CHECKPOINT_GROWTH_LIMIT, new_session, work_module

# Every case in the fuzzer's worker process: the full suite's.
pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.full]

FUZZ = settings(
    deadline=None,  # the worker's own deadline bounds each case; hypothesis's would only flag a slow machine
    database=None,  # nothing written into the checkout
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    session = new_session(tmp_path_factory.mktemp("fuzz"))
    yield session
    session.close()


def _explain(result: dict, extra) -> str:
    return f"{result['kind']}: {result.get('message', '')}\n{result.get('traceback', '')}\ncase: {extra}"


# --------------------------------------------------------------------------------------------- the properties


@settings(FUZZ, max_examples=600)
@given(seed=st.sampled_from(SEED_NAMES), rng=st.randoms(use_true_random=False))
def test_fuzzed_checkpoints_give_only_checkpoint_errors(fuzz, seed, rng):
    result, path = fuzz.checkpoint_case(seed, rng)
    assert not result["kind"].startswith("FAIL"), _explain(result, (seed, path))


@settings(FUZZ, max_examples=300)
@given(rng=st.randoms(use_true_random=False))
def test_fuzzed_images_to_restore(fuzz, rng):
    result, spec = fuzz.image_case("restore", rng)
    assert not result["kind"].startswith("FAIL"), _explain(result, spec)


@settings(FUZZ, max_examples=200)
@given(rng=st.randoms(use_true_random=False))
def test_fuzzed_images_to_the_work_layer(fuzz, rng):
    result, spec = fuzz.image_case("work", rng)
    assert not result["kind"].startswith("FAIL"), _explain(result, spec)


def test_the_fuzzer_reaches_every_layer(fuzz):
    """The mutations get past the container into the pickle, the header, unwrapping and shape inference."""
    kinds = set()
    for i in range(300):
        rng = random.Random(i)
        kinds.add(fuzz.checkpoint_case(rng.choice(SEED_NAMES), rng)[0]["kind"])
    for needed in ("loaded", "refused pickle (code)", "corrupt torch file", "corrupt safetensors header",
                   "corrupt safetensors data", "layout mismatch", "not a state dict", "refused oversized claim"):
        assert needed in kinds, (needed, kinds)
    images = {fuzz.image_case("restore", random.Random(i))[0]["kind"] for i in range(60)}
    assert {"restored", "InputError"} <= images, images


def test_the_fuzzer_restores_images_larger_than_48_pixels(fuzz):
    """Valid images with a side of 49-320 pixels (several tiles at each tile size) are restored and checked, not
    skipped: the cases the property tests draw include them."""
    large = {"restore": 0, "work": 0}
    for target in large:
        for i in range(400):
            result, spec = fuzz.image_case(target, random.Random(i))
            sides = [n for n, kind in zip(spec["shape"], spec["kinds"]) if kind == "side"]
            assert not result["kind"].startswith("FAIL"), _explain(result, spec)
            if result["kind"] == "restored" and max(sides) > 48:
                large[target] += 1
                if large[target] == 3:
                    break
    assert large == {"restore": 3, "work": 3}, large


# ---------------------------------------------------------------------------- the harness catches what it claims


def test_a_hang_is_caught_and_the_worker_restarts(fuzz):
    assert fuzz.selftest("selftest-hang", timeout=3)["kind"] == "FAIL hang"
    assert fuzz.selftest("selftest-grow")["kind"] == "FAIL memory growth"  # a fresh worker answers again


def test_a_huge_allocation_fails_inside_the_limit(fuzz):
    result = fuzz.selftest("selftest-alloc")
    assert result["kind"] == "FAIL RuntimeError" and "allocate" in result["message"], result


def test_code_that_runs_is_seen(fuzz):
    assert fuzz.selftest("selftest-code")["kind"] == "FAIL code ran"
    assert not fuzz.marker.exists()


def test_the_canary_is_live_and_the_loader_refuses_it(fuzz, tmp_path):
    """Unpickled without the safe loader, a canary runs its code; the seeds' canaries are refused untouched."""
    marker = tmp_path / "control-ran"
    control = tmp_path / "control.pth"
    torch.save({"params": {"x": _Canary(canary_code(marker))}}, control)
    torch.load(control, weights_only=False)
    assert marker.exists()
    for name in ("canary.pth", "canary_legacy.pth"):
        result = fuzz.worker.run({"what": "checkpoint", "path": str(fuzz.seeds[name])})
        assert result["kind"] == "refused pickle (code)" and not result["canary"], result
    assert not fuzz.marker.exists()


# ------------------------------------------------------------------------------ cases the fuzzer found, kept


def _load_in_worker(fuzz, path) -> dict:
    result = fuzz.worker.run({"what": "checkpoint", "path": str(path)})
    assert result["growth"] <= CHECKPOINT_GROWTH_LIMIT, result
    return result


def test_deeply_nested_safetensors_header(fuzz, tmp_path):
    text = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    assert _load_in_worker(fuzz, path)["kind"] == "corrupt safetensors header"


def test_safetensors_header_claiming_more_than_the_file(fuzz, tmp_path):
    data = fuzz.seed_bytes["sr.safetensors"]
    path = tmp_path / "claims.safetensors"
    path.write_bytes(struct.pack("<Q", 99_999_999) + data[8:])
    assert _load_in_worker(fuzz, path)["kind"] == "truncated safetensors"


def test_safetensors_tensor_claiming_100_gb(fuzz, tmp_path):
    from safetensors.torch import save

    data = save({"conv_first.weight": torch.zeros(4)})
    (n,) = struct.unpack("<Q", data[:8])
    header = data[8 : 8 + n].replace(b"[4]", b"[25000000000]").replace(b"[0,16]", b"[0,100000000000]")
    path = tmp_path / "100gb.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + data[8 + n :])
    assert _load_in_worker(fuzz, path)["kind"] == "truncated safetensors"


def test_empty_tensor_with_huge_dimensions_is_refused_before_the_network_is_built(fuzz, tmp_path):
    from safetensors.torch import save_file

    sd = dict(tiny_models()[0].state_dict())
    sd["conv_first.weight"] = torch.zeros(1_000_000, 3, 3, 0)  # would infer a 1e6-channel network (terabytes)
    path = tmp_path / "zero.safetensors"
    save_file(sd, str(path))
    result = _load_in_worker(fuzz, path)
    assert result["kind"] == "layout mismatch" and "conv_first.weight" in result["message"], result


def _with_member(src, dst, name_end: str, content: bytes | None = None, compress: bool = False):
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for info in z.infolist():
            data = z.read(info.filename)
            if info.filename.endswith(name_end):
                data = data if content is None else content
                out.writestr(info.filename, data, zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
            else:
                out.writestr(info.filename, data, zipfile.ZIP_STORED)
    return dst


def test_zip_bomb_in_a_pth_is_refused_unread(fuzz, tmp_path):
    src = fuzz.seeds["002_lightweightSR_DIV2K_s64w8_SwinIR-S_x2.pth"]
    bomb = _with_member(src, tmp_path / "bomb.pth", "data/0", bytes(256 << 20), compress=True)
    assert bomb.stat().st_size < 2 << 20
    assert _load_in_worker(fuzz, bomb)["kind"] == "refused compressed zip"


def test_zip_directory_claiming_64_gb_is_refused(fuzz, tmp_path):
    data = bytearray(fuzz.seed_bytes["002_lightweightSR_DIV2K_s64w8_SwinIR-S_x2.pth"])
    i = data.find(b"PK\x01\x02")
    struct.pack_into("<HI", data, i + 10, 8, 0)  # method deflate
    struct.pack_into("<I", data, i + 24, 0xFFFFFFFF)  # uncompressed size
    path = tmp_path / "claims.pth"
    path.write_bytes(bytes(data))
    assert _load_in_worker(fuzz, path)["kind"] == "refused compressed zip"


def _patched_pickle_int(data: bytes, old: int, new: int) -> bytes:
    """The first BININT2 `old` after the first storage type, re-encoded as `new` (LONG1)."""
    at = data.find(b"M" + struct.pack("<H", old), data.find(b"Storage"))
    raw = new.to_bytes((new.bit_length() + 8) // 8, "little", signed=True)
    return data[:at] + b"\x8a" + bytes([len(raw)]) + raw + data[at + 3 :]


@pytest.mark.parametrize("numel", [1_500_000_000, 25_000_000_000], ids=["6GB", "100GB"])
def test_legacy_pth_storage_claims_are_refused_before_allocating(fuzz, tmp_path, numel):
    """The legacy loader allocates each storage's claimed size before reading it; under the worker's address-space
    limit an attempt would show as an allocation failure, not as this refusal."""
    first = next(iter(tiny_models()[0].state_dict().values())).numel()
    path = tmp_path / "legacy_claims.pth"
    path.write_bytes(_patched_pickle_int(fuzz.seed_bytes["legacy_x2.pth"], first, numel))
    result = _load_in_worker(fuzz, path)
    assert result["kind"] == "refused oversized claim", result


def test_stride_zero_tensor_claiming_a_huge_network(fuzz, tmp_path):
    sd = dict(tiny_models()[0].state_dict())
    sd["conv_first.weight"] = torch.zeros(1).expand(100_000, 3, 3, 3)  # 4 bytes on disk
    path = tmp_path / "stride0.pth"
    torch.save({"params": sd}, path)
    assert _load_in_worker(fuzz, path)["kind"] == "refused oversized claim"


@pytest.mark.parametrize("entry, phrase", [
    (torch.eye(3).to_sparse(), "dense floating"),
    (torch.zeros(3, dtype=torch.int64), "dense floating"),
], ids=["sparse", "int64"])
def test_entries_that_are_not_dense_float_weights(tmp_path, entry, phrase):
    sd = dict(tiny_models()[0].state_dict())
    sd["conv_first.bias"] = entry
    path = tmp_path / "odd.pth"
    torch.save({"params": sd}, path)
    with pytest.raises(swinir.CheckpointError, match=phrase):
        swinir.load_model(path)


def test_tensor_under_a_non_string_key(tmp_path):
    sd = dict(tiny_models()[0].state_dict())
    sd[7] = torch.zeros(1)
    path = tmp_path / "intkey.pth"
    torch.save(sd, path)
    with pytest.raises(swinir.CheckpointError, match="named by a int"):
        swinir.load_model(path)


def test_missing_block_is_a_checkpoint_error(tmp_path):
    _, dn = tiny_models()
    sd = {k: v for k, v in dn.state_dict().items() if not k.startswith("layers.1.residual_group.blocks")}
    path = tmp_path / "005_colorDN_DFWB_s128w8_SwinIR-M_noise15.pth"
    torch.save({"params": sd}, path)
    with pytest.raises(swinir.CheckpointError, match="do not form a SwinIR network"):
        swinir.load_model(path)


@pytest.mark.parametrize("make, phrase", [
    (lambda: torch.zeros(1, 1, 1, 1).expand(1, 3, 1 << 20, 1 << 20), "GiB"),  # 12 TiB of pixels, held in 4 bytes
    (lambda: torch.zeros(1, 1, 1, 1).expand(1 << 31, 3, 8, 8), "GiB"),
    (lambda: torch.rand(1, 3, 8, 8).to_sparse(), "dense"),
    (lambda: torch.empty(1, 3, 8, 8, device="meta"), "meta"),
    (lambda: torch.rand(1, 3, 8, 8).to(torch.float8_e4m3fn), "float"),
    (lambda: torch.rand(1, 3, 8, 8).to(torch.complex64), "float"),
    (lambda: torch.full((1, 3, 8, 8), float("nan"), dtype=torch.float16), "NaN"),
], ids=["terabyte-view", "billion-batch", "sparse", "meta", "float8", "complex", "nan-fp16"])
def test_bad_images_found_by_the_fuzzer(make, phrase):
    model = tiny_models()[0]
    with pytest.raises(swinir.InputError, match=phrase):
        swinir.restore(model, make())


@pytest.mark.parametrize("images, phrase", [
    (torch.rand(1, 8, 8, 5), r"\[B, H, W, C\]"),
    (torch.rand(8, 8), r"\[B, H, W, C\]"),
    ([[0.5]], "list"),
], ids=["five-channels", "2d", "list"])
def test_work_layer_refuses_bad_image_batches(images, phrase):
    work = work_module()
    with pytest.raises(work.swinir.InputError, match=phrase):
        work.restore_batch(tiny_models()[0], images)


def test_work_layer_refuses_a_bad_precision():
    work = work_module()
    with pytest.raises(work.swinir.InputError, match="precision"):
        work.restore_batch(tiny_models()[0], torch.rand(1, 8, 8, 3), precision="fp8")
