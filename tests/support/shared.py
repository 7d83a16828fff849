"""Where the documents the project came from are: ../shared beside the checkout, else
$XMPPD_SHARED (for a clone made elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    candidates = [ROOT.parent / "shared", os.environ.get("XMPPD_SHARED")]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return ROOT.parent / "shared"  # absent: the tests that need it say so and skip


SHARED = shared_dir()
