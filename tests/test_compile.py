"""restore(compile=True): torch.compile made once per model, same output, one clear error when it fails."""

from __future__ import annotations

import pytest
import torch

import swinir


def _tiny():
    torch.manual_seed(0)
    return swinir.SwinIR(swinir.SwinIRConfig(task="lightweight_sr", scale=2, embed_dim=8, depths=(2,), num_heads=(2,),
                                             upsampler="pixelshuffledirect")).eval()


def test_compile_option_runs_the_compiled_model_once_made(monkeypatch) -> None:
    """compile=True goes through torch.compile (here its 'eager' backend: inductor's C++ build takes minutes on this
    CPU; bench/bench_tiles.py --compile measures the real one), made once per model, same output, and the state
    dict does not gain the compiled wrapper."""
    made = []
    real = torch.compile

    def spy(model, **kw):
        made.append(kw)
        return real(model, backend="eager", **kw)

    monkeypatch.setattr(torch, "compile", spy)
    model = _tiny()
    keys = list(model.state_dict())
    x = torch.rand(1, 3, 40, 48)
    eager = swinir.restore(model, x)
    for _ in range(2):
        assert torch.allclose(swinir.restore(model, x, compile=True), eager, atol=1e-6)
    assert made == [{"dynamic": False}]
    assert list(model.state_dict()) == keys


def test_compile_failure_is_one_clear_error(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("InductorError: CppCompileError: C++ compile error\nlong trace")

    monkeypatch.setattr(torch, "compile", lambda model, **kw: broken)
    with pytest.raises(swinir.SwinIRError, match="torch.compile failed .*CppCompileError.*without compile"):
        swinir.restore(_tiny(), torch.rand(1, 3, 16, 16), compile=True)
