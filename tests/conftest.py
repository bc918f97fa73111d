"""Shared fixtures for the core tests (the helpers that benchmarks use too are in testkit/)."""

from __future__ import annotations

import signal

import pytest
import torch

# A shell without job control starts background commands (`cmd &`, `nohup cmd &`) with SIGINT ignored, and an
# ignored signal stays ignored across exec: the command-line processes the interrupt tests start would then never
# see their SIGINT and run to the end. A handled signal is reset to the default at exec, so the children get Python's
# own KeyboardInterrupt whatever started the suite.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's models on one CPU thread, then restore the setting.

    The test models are small, so extra threads buy little; on a loaded machine (a shared CI runner, a training
    job beside the tests) OpenMP oversubscription made the same tests several times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
