"""`python -m bench medians RESULT.json ...`: the table of several runs (each server run three
times or more, alternating), one row per figure, each server's median with the range of its runs
beside it, and xmppd's median (else the first server's) over each other's."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.report import _big, _idle, _num, _p50p99, _rows

# Rows whose cell is text made of several figures: the figures taken apart, to take medians.
_PARTS = {
    _p50p99: ("p50_ms", "p99_ms"),
    _big: ("big_bound_ms", "big_roster_ms", "big_presences_ms"),
    _idle: ("kib_per_connection",),
}


def collect(paths: list[Path]) -> tuple[list[str], list[str], dict, dict]:
    """(row names in order, servers in order, values[row][server] = list of runs' values,
    higher-is-better by row); a value is a number or a tuple of numbers (see _PARTS)."""
    names: list[str] = []
    servers: list[str] = []
    values: dict[str, dict[str, list]] = {}
    higher: dict[str, bool] = {}
    for path in paths:
        result = json.loads(Path(path).read_text())
        for name, entries, getter, better in _rows(result):
            if name not in values:
                names.append(name)
                values[name] = {}
                higher[name] = better
            for server, entry in entries.items():
                if server not in servers:
                    servers.append(server)
                parts = _PARTS.get(getter)
                value = tuple(entry.get(p) for p in parts) if parts else getter(entry)
                if value is not None and None not in (value if parts else (value,)):
                    values[name].setdefault(server, []).append(value)
    return names, servers, values, higher


def _median(runs: list) -> object:
    if isinstance(runs[0], tuple):
        return tuple(statistics.median(part) for part in zip(*runs, strict=True))
    return statistics.median(runs)


def _cell(runs: list | None, name: str = "") -> str:
    if not runs:
        return "–"
    if name.endswith(": lost"):
        return f"{_num(max(runs))} (most in {len(runs)} runs)"
    median = _median(runs)
    if isinstance(median, tuple):
        return " / ".join(_num(v, 1) for v in median) + f" (medians of {len(runs)})"
    digits = 1 if median < 1000 else 0
    low, high = min(runs), max(runs)
    return f"{_num(float(median), digits)} ({_num(float(low), digits)}–{_num(float(high), digits)})"


def markdown(paths: list[Path]) -> str:
    names, servers, values, _higher = collect(paths)
    # xmppd is the server the ratios are about, whichever order the files came in.
    servers.sort(key=lambda server: server != "xmppd")
    first, others = servers[0], servers[1:]
    head = ["figure", *(f"{s}: median (range)" for s in servers)]
    head += [f"{first} ÷ {s}" for s in others]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name in names:
        row = values[name]
        cells = [name, *(_cell(row.get(s), name) for s in servers)]
        for other in others:
            a, b = row.get(first), row.get(other)
            ratio = "–"
            if a and b and not isinstance(a[0], tuple) and "lost" not in name:
                mb = _median(b)
                ratio = f"{_median(a) / mb:.2f}×" if mb else "–"
            cells.append(ratio)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
