"""The shared test data beside the checkout (../shared/data, ../shared/weights) and what a test does without it.

On a developer's machine a test whose data is missing skips with the reason. In CI it fails instead: CI sets `CI`
(and .ci/run sets SWINIR_REQUIRE_COMFY=1), so a CI run never passes without re-scoring the default models.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testkit.data import DATA, SHARED, WEIGHTS  # noqa: F401  (the tests' names for them)

REQUIRED = os.environ.get("SWINIR_REQUIRE_COMFY") == "1" or os.environ.get("CI", "").lower() not in ("", "0", "false")


def missing(reason: str) -> None:
    """Skip with the reason, or fail in CI (where every test must run)."""
    if REQUIRED:
        pytest.fail(f"{reason} (CI runs every test: CI or SWINIR_REQUIRE_COMFY=1 is set)", pytrace=False)
    pytest.skip(reason)


def need(path: Path, what: str) -> Path:
    """`path` when it exists; else skip (fail in CI), naming the path and what needs it."""
    if not path.exists():
        missing(f"{path} is absent (no ../shared beside this checkout); {what}")
    return path
