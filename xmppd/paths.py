"""Default locations shared by `xmppd` and `xmppctl`, so both find the same data directory."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/xmppd`, else `~/.local/share/xmppd` (XDG Base Directory spec).

    A relative or empty XDG_DATA_HOME is ignored, as the spec asks."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "xmppd"
