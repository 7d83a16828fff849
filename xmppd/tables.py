"""Readable tables for xmppctl's default (non-JSON) output."""

from __future__ import annotations

import time
from typing import Any

SESSION_COLUMNS = (
    "id", "node", "state", "jid", "user", "peer", "tls", "sasl", "idle_s", "since",
)  # fmt: skip
NODE_COLUMNS = ("node", "alive", "lease_left_s", "sessions", "relay_backlog", "version", "up")


def render(path: tuple[str, ...], result: Any) -> str:
    if path == ("sessions",):
        return table([_row(r) for r in result], SESSION_COLUMNS) or "no connections"
    if path == ("session",):
        head = "\n".join(f"{k:12} {_cell(v)}" for k, v in _row(result).items())
        steps = [
            {"at": _clock(t["at"]), "from": t["from"], "event": t["event"], "to": t["to"]}
            for t in result.get("transitions", [])
        ]
        return head + "\n\n" + table(steps, ("at", "from", "event", "to"))
    if path == ("nodes",):
        rows = [{**r, "node": r["node"] + (" (this)" if r.get("this") else ""),
                 "up": duration(time.time() - r["started"]) if r.get("started") else None}
                for r in result]  # fmt: skip
        return table(rows, NODE_COLUMNS)
    if path == ("status",):
        shown = dict(result)
        shown["started"] = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(result["started"]))
        shown["uptime"] = duration(shown.pop("uptime_s", time.time() - result["started"]))
        return "\n".join(f"{k:12} {_cell(v)}" for k, v in shown.items())
    if isinstance(result, dict):
        return "\n".join(f"{k:12} {_cell(v)}" for k, v in result.items())
    return str(result)


def duration(seconds: float) -> str:
    """3d 4h 5m 6s, leaving out the leading zero parts."""
    left = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size or parts:
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join([*parts, f"{left}s"])


def _row(info: dict) -> dict:
    row = {k: v for k, v in info.items() if k != "transitions"}
    if "state_since" in row:
        row["since"] = _clock(row.pop("state_since"))
    return row


def _clock(stamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def table(rows: list[dict], columns: tuple[str, ...]) -> str:
    if not rows:
        return ""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)
