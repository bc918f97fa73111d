"""The pack imported the way ComfyUI imports it: as a package, so the relative imports of `nodes/` reach the core."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .data import ROOT

PACKAGE = "comfyui_swinir_pack_under_test"


def pack_module(name: str, root: Path = ROOT) -> ModuleType:
    """A module of the pack at `root` (this checkout by default), e.g. 'nodes.work' or 'swinir'; only
    nodes.runtime needs ComfyUI on the path. The first call's root serves the whole process."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, root / "__init__.py",
                                                      submodule_search_locations=[str(root)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{PACKAGE}.{name}")
