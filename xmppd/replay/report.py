"""What a replay found, per client, and how `xmppctl replay` shows it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from fsm import tracefmt as tf
from xmppd.replay.compare import Item, Outcome


@dataclass
class Pair:
    """One expected piece of output beside what xmppd sent in its place."""

    expected: Item | None
    actual: Item | None
    outcome: Outcome


@dataclass
class ClientReport:
    name: str
    transitions: list[tuple[str, str, str]] = field(default_factory=list)
    expected_transitions: list[tuple[str, str, str]] | None = None
    expected_states: list[str] | None = None
    pairs: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def states(self) -> list[str]:
        """The states visited, repeated states once."""
        seen: list[str] = []
        for before, _, after in self.transitions:
            for state in (before, after):
                if not seen or seen[-1] != state:
                    seen.append(state)
        return seen

    @property
    def ok(self) -> bool:
        return not self.problems and all(p.outcome.ok for p in self.pairs)

    def tolerated(self) -> list[str]:
        return [t for p in self.pairs for t in p.outcome.tolerated]


@dataclass
class Report:
    source: str
    format: str
    policy: str
    clients: list[ClientReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.clients)

    def render(self, show: str | None = None) -> str:
        lines = [f"replay of {self.source} ({self.format}, comparison: {self.policy})"]
        lines += [f"note: {n}" for n in self.notes]
        for client in self.clients:
            lines += _client(client, show)
        verdict = "MATCH" if self.ok else "MISMATCH"
        problems = sum(
            len(c.problems) + sum(not p.outcome.ok for p in c.pairs) for c in self.clients
        )
        tolerated = sum(len(c.tolerated()) for c in self.clients)
        lines.append(
            f"verdict: {verdict} ({problems} difference(s), {tolerated} tolerated "
            f"server-specific difference(s))"
        )
        return "\n".join(lines)


def _client(client: ClientReport, show: str | None) -> list[str]:
    lines = ["", f"== client {client.name}: {'match' if client.ok else 'MISMATCH'}"]
    lines += [f"   note: {n}" for n in client.notes]
    lines.append("   states: " + " -> ".join(client.states))
    if client.expected_states is not None:
        lines.append("   expected: " + " -> ".join(client.expected_states))
    if show == "states":
        for i, (before, event, after) in enumerate(client.transitions, 1):
            mark = ""
            if client.expected_transitions is not None:
                want = client.expected_transitions[i - 1 : i]
                mark = "" if want == [(before, event, after)] else f"   <- log: {_t(want)}"
            lines.append(f"   {i:4d} {before} --{event}--> {after}{mark}")
    if show == "xml":
        for i, pair in enumerate(client.pairs, 1):
            mark = "  " if pair.outcome.ok else "!!"
            lines.append(f"   {mark}{i:3d} xmppd: {_raw(pair.actual)}")
            lines.append(f"        log:   {_raw(pair.expected)}")
    for problem in client.problems:
        lines.append(f"   difference: {problem}")
    for i, pair in enumerate(client.pairs, 1):
        where = f" (log line {pair.expected.line})" if pair.expected and pair.expected.line else ""
        for problem in pair.outcome.problems:
            lines.append(f"   difference at output {i}{where}: {problem}")
        if show in ("diff", "xml"):
            for t in pair.outcome.tolerated:
                lines.append(f"   tolerated at output {i}{where}: {t}")
    if show == "diff" or (show is None and not client.ok):
        lines += _diff(client)
    return lines


def _t(transitions: Any) -> str:
    return ", ".join(f"{b} --{e}--> {a}" for b, e, a in transitions) or "(nothing)"


def _raw(item: Item | None) -> str:
    return "(nothing)" if item is None else tf.escape(item.raw.encode())


def _diff(client: ClientReport) -> list[str]:
    expected = [_raw(p.expected) for p in client.pairs if p.expected is not None]
    actual = [_raw(p.actual) for p in client.pairs if p.actual is not None]
    diff = list(difflib.unified_diff(expected, actual, "log", "xmppd", lineterm="", n=1))
    return [f"   {line}" for line in diff]
