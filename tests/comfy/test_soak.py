"""A light soak of the real server (issue 14, part 2; `bench/bench_soak.py` is the full one): 40 random prompts of
every task, size (1-160 px), batch, tiling and precision, with wrong-task models and interruptions. Each ends as
it must, the server's memory after them is within 10 % of what it was after a warm-up of the same mix, and no
temporary file is left in the models, input, output or temp folders or the pack."""

from __future__ import annotations

from testkit.comfy_harness import DEFAULT_ENTRY, SR_NAME
from testkit.soak import SoakConfig, run_soak

LIGHT = SoakConfig(prompts=40, warmup=20, max_side=160, sr_model=SR_NAME, interrupt_model=DEFAULT_ENTRY,
                   interrupt_side=160, seed=14)


def test_light_soak(comfy):
    report = run_soak(comfy, LIGHT, log=print)
    print(report.text())
    assert not report.failures, report.text()
    assert report.prompts == LIGHT.prompts
    for kind in ("sr ok", "denoise ok", "jpeg ok", "wrong-task (clear message)", "interrupted"):
        assert report.outcomes[kind] > 0, report.outcomes
    assert sum(report.outcomes.values()) == LIGHT.prompts
    assert not report.temp_files, report.text()
    assert report.rss_after <= 1.10 * report.rss_warm, report.text()
