"""Modules of the examples/ folders, imported by file path for the tests that exercise them.

The examples are scripts, not packages: `python examples/agent/agent.py` finds its sibling
`harness.py` by bare name. `load()` imports one file under that same bare name and registers it in
sys.modules, so a sibling loaded first is the very object the next file imports (and dataclasses,
which look their module up there, work). No folder is added to sys.path by the tests; an example
that adds its own folder when run as a script (examples/agent/agent.py does) still does.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from . import EXAMPLES


def load(folder: str, name: str) -> ModuleType:
    """examples/<folder>/<name>.py, executed and registered as `sys.modules[name]`."""
    path = EXAMPLES / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}: is the example still there?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
