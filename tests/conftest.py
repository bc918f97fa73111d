"""Shared fixtures for the core tests (the helpers themselves are in swinir_reference.py)."""

from __future__ import annotations

import pytest
import torch


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
