"""Finds the classes a trace names, in the modules fsm/tracefmt.py trusts and nowhere else."""

from __future__ import annotations

import importlib
from typing import Any

from fsm.tracefmt import TRUSTED


def resolve(path: str) -> Any:
    """`module:QualName` -> the class; ValueError for a module outside the trusted ones."""
    module, _, name = path.partition(":")
    if not module.startswith(TRUSTED) and module != "builtins":
        raise ValueError(f"a trace may not name {path}")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj
