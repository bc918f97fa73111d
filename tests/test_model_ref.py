"""`swinir.model_ref.locate_model`: the one reading of a model name, shared by the command line and the nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

import swinir
from swinir.model_ref import DEFAULT_MODELS, DEFAULT_PREFIX, default_choices, default_model_path, locate_model

OFFICIAL = "001_classicalSR_DF2K_s64w8_SwinIR-M_x2.pth"


def test_the_command_line_and_node_names_of_a_default_are_one_file() -> None:
    for family, file in DEFAULT_MODELS.items():
        node_name = DEFAULT_PREFIX + file
        assert default_choices()[node_name] == default_model_path(family)
        assert locate_model(node_name).path == locate_model(f"default-{family}").path == default_model_path(family)
        assert locate_model(node_name).entry is None
    assert locate_model(None).path == locate_model("default").path == default_model_path("sr")


def test_official_names_are_found_with_the_hosts_lookup_or_in_the_folder(tmp_path: Path) -> None:
    asked: list[str] = []

    def find(name: str) -> str | None:
        asked.append(name)
        return str(tmp_path / name) if name == OFFICIAL else None

    found = locate_model(OFFICIAL, find=find)
    assert found.path == tmp_path / OFFICIAL and found.entry is not None and found.entry.file == OFFICIAL
    assert asked == [OFFICIAL]
    # The catalogue name means the same file; not on disk, the entry says what to fetch.
    entry = locate_model(OFFICIAL).entry
    missing = locate_model(entry.name, tmp_path)
    assert missing.path is None and missing.entry == entry
    (tmp_path / OFFICIAL).write_bytes(b"x")
    assert locate_model(entry.name, tmp_path).path == tmp_path / OFFICIAL
    # A host lookup is asked about the defaults never: the core resolves them.
    asked.clear()
    locate_model(DEFAULT_PREFIX + DEFAULT_MODELS["jpeg"], find=find)
    assert asked == []


def test_other_names_are_paths_on_the_command_line_only(tmp_path: Path) -> None:
    own = tmp_path / "mine.safetensors"
    own.write_bytes(b"x")
    assert locate_model(str(own)).path == own and locate_model(str(own)).entry is None
    assert locate_model(str(own), find=lambda name: None).path is None  # the nodes list names, not paths
    with pytest.raises(swinir.SwinIRError, match="neither a file nor a catalogue name"):
        swinir.resolve_model(str(tmp_path / "absent.pth"), tmp_path)
