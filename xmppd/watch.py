"""`xmppctl session ID --watch` and `xmppctl sessions --watch`: a session's transitions as they
happen, and the cluster's connections by state, refreshed like `top`; both look every fraction
of a second through the admin socket (from any node: the node asks the one holding the session)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


def _line(t: dict) -> str:
    at = time.strftime("%H:%M:%S", time.localtime(t["at"])) + f".{int(t['at'] * 1000) % 1000:03d}"
    return f"{at}  #{t['n']:<5} {t['from']} --{t['event']}--> {t['to']}"


def watch_session(ask: Callable[..., Any], ident: str, interval: float = 0.25,
                  gone: type[Exception] = LookupError) -> str:  # fmt: skip
    """Print the session's transitions as they come, until it ends or Ctrl-C; `ask` raises
    `gone` when the session cannot be found."""
    info = ask(id=ident)
    conn, node = info["id"], info.get("node")
    since = max((t["n"] for t in info["transitions"]), default=0)
    _say(f"watching session {conn} on node {node} ({info['jid'] or 'not bound'}), "
         f"now in {info['state']}; Ctrl-C to stop")  # fmt: skip
    try:
        while True:
            try:
                info = ask(id=conn, since=since, node=node)
            except gone as exc:
                return f"the session is gone ({exc})"
            new = info["transitions"]
            if new and new[0]["n"] > since + 1:
                _say(f"... {new[0]['n'] - since - 1} transitions came faster than the watch "
                     "looked (raise the pace with --interval)")  # fmt: skip
            for transition in new:
                _say(_line(transition))
                since = transition["n"]
            if info.get("ended_at"):
                return f"session {conn} ended in {info['state']}"
            time.sleep(interval)
    except KeyboardInterrupt:
        return "stopped watching"


def counts_table(counts: dict[str, dict]) -> str:
    """States down, nodes across, with totals."""
    nodes = sorted(counts)
    states = sorted({s for c in counts.values() for s in c if s != "error"})
    width = max([len("STATE"), *map(len, states), len("total")])
    head = f"{'STATE':<{width}}" + "".join(f" {n:>10}" for n in nodes) + f" {'TOTAL':>10}"
    rows = [head]
    for state in states:
        cells = [counts[n].get(state, 0) if "error" not in counts[n] else "?" for n in nodes]
        total = sum(c for c in cells if isinstance(c, int))
        rows.append(f"{state:<{width}}" + "".join(f" {c:>10}" for c in cells) + f" {total:>10}")
    totals = [sum(v for k, v in counts[n].items() if k != "error") if "error" not in counts[n]
              else "?" for n in nodes]  # fmt: skip
    grand = sum(t for t in totals if isinstance(t, int))
    rows.append(f"{'total':<{width}}" + "".join(f" {t:>10}" for t in totals) + f" {grand:>10}")
    for node in nodes:
        if "error" in counts[node]:
            rows.append(f"{node}: {counts[node]['error']}")
    return "\n".join(rows)


def watch_counts(ask: Callable[[], dict], interval: float = 1.0) -> str:
    """Redraw the per-state counts every `interval` seconds (at least 0.25), until Ctrl-C."""
    interval = max(interval, 0.25)
    tty = sys.stdout.isatty()
    try:
        while True:
            table = counts_table(ask())
            stamp = time.strftime("%H:%M:%S")
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")  # home and clear, as top does
            _say(f"connections by c2s state at {stamp} (every {interval:g} s; Ctrl-C to stop)\n"
                 f"{table}\n")  # fmt: skip
            time.sleep(interval)
    except KeyboardInterrupt:
        return "stopped watching"


def _say(text: str) -> None:
    print(text, flush=True)
