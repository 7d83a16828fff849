"""Exact replays of xmppd traces: each session's machine runs alone in the world, fed the client's
bytes through a StreamParser, and everything else it consumed (answers, deliveries, timeouts,
random values, clock readings) from the recording, in the recorded order."""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

from fsm import core
from fsm import tracefmt as tf
from fsm.session import C2SConfig, Env, TLSInfo
from xmpp import sasl
from xmpp.stream import StreamParser
from xmppd.replay import compare as cmp
from xmppd.replay.classes import resolve
from xmppd.replay.report import ClientReport, Pair, Report
from xmppd.replay.script import Script, UnusableLog
from xmppd.replay.world import (
    OPEN_STREAM,
    Machine,
    ReplayClock,
    ReplayRandom,
    ScriptedSasl,
    World,
)


class Diverged(Exception):
    """The machine went another way than the recording: the replay cannot go on."""


def replay_trace(script: Script, options: Any) -> Report:
    policy = script.header.get("compare", "exact")
    report = Report(script.source, script.format, policy, notes=list(script.notes))
    steps = script.steps[: options.until] if options.until else script.steps
    last_line = steps[-1].line if steps else 0
    for name, rec in script.recorded.items():
        client = ClientReport(name, expected_transitions=list(rec["transitions"]))
        states = rec["declared"].get("expect-states")
        if states:
            client.expected_states = [s.strip() for s in states.split("->")]
        report.clients.append(client)
        header = rec["header"]
        world = World(tuple(header["config"]["hosts"]["$tuple"]), _settings(header))
        world.patch = options.patch
        m = world.machine(name, _config(header, rec), _env(rec), isolated=True,
                          snapshot=_snapshot(rec))  # fmt: skip
        sends = [s for s in steps if s.client == name and s.direction == "send"]
        events = [e for e in rec["events"] if not options.until or e["line"] <= last_line]
        try:
            _drive(world, m, rec, sends, events)
        except Diverged as exc:
            client.problems.append(str(exc))
        client.transitions = m.transitions
        if options.until is None and len(m.transitions) < len(rec["transitions"]):
            client.problems.append(f"the replay made {len(m.transitions)} transitions, the "
                                   f"recording {len(rec['transitions'])}")  # fmt: skip
        for i, (got, want) in enumerate(zip(m.transitions, rec["transitions"], strict=False)):
            if got != want:
                client.problems.append(
                    f"transition {i + 1}: recorded {_t(want)}, replayed {_t(got)}"
                )
                break
        if client.expected_states and not options.until and client.states != client.expected_states:
            client.problems.append("state sequence: expected " + " -> ".join(client.expected_states)
                                   + ", replayed " + " -> ".join(client.states))  # fmt: skip
        recorded = [s for s in steps if s.client == name and s.direction == "recv"]
        client.pairs = _compare(recorded, m.out, policy)
        if options.until:
            client.pairs = client.pairs[: len(recorded)]
    return report


def _t(t: tuple) -> str:
    return f"{t[0]} --{t[1]}--> {t[2]}"


def _drive(world: World, m: Machine, rec: dict, sends: list, events: list) -> None:
    parsed: deque = deque()
    fed = 0
    redacted = not rec["secrets"]
    limit = (rec["header"].get("limits") or {}).get("max_stanza_bytes")
    ours = None  # the parser made with the recorded limit
    for entry in events:
        name = entry["name"]
        if name in tf.PARSER_EVENTS:
            while not parsed:
                if fed >= len(sends):
                    raise Diverged(f"log line {entry['line']}: the recording has {name} here, "
                                   "but the client's input is used up")  # fmt: skip
                data = tf.unescape(sends[fed].xml)
                if redacted:
                    data = data.replace(tf.REDACTED.encode(), b"=")
                if limit is not None and m.parser is not ours:
                    ours = m.parser = _sized_parser(m, limit, first=ours is None)
                parsed.extend(m.parser.feed(data))
                fed += 1
            event = parsed.popleft()
            if type(event).__name__ != name:
                raise Diverged(f"log line {entry['line']}: the recording has {name}, the "
                               f"client's input parses as {type(event).__name__}")  # fmt: skip
        else:
            event = _rebuild(entry, m, redacted)
        world.step(m, event)


def _sized_parser(m: Machine, limit: int, *, first: bool) -> StreamParser:
    """The world makes each new parser (at the start, after STARTTLS and SASL) with the default
    size limit; the connection that was traced enforced the node's `max_stanza_bytes`, so a
    stanza over it must break the replayed stream too. Only a parser nothing was fed to is
    replaced (at a snapshot, the one the world gave the open stream header)."""
    parser = StreamParser(limit)
    if first and m.data.header_sent:
        parser.feed(OPEN_STREAM)
    return parser


def _rebuild(entry: dict, m: Machine, redacted: bool) -> Any:
    name, fields = entry["name"], entry.get("fields") or {}
    if name == "QueryDone":
        then_name = fields["then"]
        for query in m.queries:
            then = getattr(query.then, "func", query.then)
            if f"{then.__module__}:{then.__qualname__}" == then_name:
                m.queries.remove(query)
                return core.QueryDone(query.then, tf.decode(fields["result"], resolve))
        raise Diverged(f"log line {entry['line']}: the recording answers a query "
                       f"({then_name}) the replay never made")  # fmt: skip
    cls = getattr(core, name, None)
    if cls is None or not dataclasses.is_dataclass(cls):
        raise UnusableLog(f"unknown event {name!r}", entry["line"])
    values = {k: tf.decode(v, resolve) for k, v in fields.items()}
    if name == "TLSEstablished":
        values["channel_bindings"] = {
            k: (b"[redacted]" if tf.redacted(v) else v)
            for k, v in values["channel_bindings"].items()
        }
    if name == "CredentialsLoaded" and tf.redacted(values.get("credentials")):
        values["credentials"] = None  # the scripted mechanism ignores them
    return cls(**values)


def _compare(recorded: list, out: list[bytes], policy: str) -> list[Pair]:
    pairs: list[Pair] = []
    for i in range(max(len(recorded), len(out))):
        step = recorded[i] if i < len(recorded) else None
        got = out[i] if i < len(out) else None
        want = tf.unescape(step.xml) if step else None
        exp_item = (
            cmp.Item("element", None, want.decode("utf-8", "replace"), step.line) if step else None
        )
        act_item = cmp.Item("element", None, got.decode("utf-8", "replace")) if got else None
        if want is None:
            pairs.append(
                Pair(None, act_item, cmp.Outcome(["xmppd sent this; the trace has nothing"]))
            )
        elif got is None:
            pairs.append(Pair(exp_item, None, cmp.Outcome(["xmppd sent nothing here"])))
        elif policy == "exact":
            same = want == got
            problems = [] if same else [f"bytes differ: {_first_difference(want, got)}"]
            pairs.append(Pair(exp_item, act_item, cmp.Outcome(problems)))
        else:
            try:
                outcome = _meaning(want, got)
            except cmp.NotXML as exc:
                outcome = cmp.Outcome([str(exc)])
            pairs.append(Pair(exp_item, act_item, outcome))
    return pairs


def _meaning(want: bytes, got: bytes) -> cmp.Outcome:
    exp, act = cmp.items(want.decode()), cmp.items(got.decode())
    if len(exp) != len(act):
        return cmp.Outcome([f"{len(exp)} piece(s) recorded, {len(act)} sent"])
    out = cmp.Outcome()
    for e, a in zip(exp, act, strict=True):
        one = cmp.match(e, a, cmp.Policy("xml"))
        out.problems += one.problems
        out.tolerated += one.tolerated
    return out


def _first_difference(want: bytes, got: bytes) -> str:
    same = (k for k, (a, b) in enumerate(zip(want, got, strict=False)) if a != b)
    i = next(same, min(len(want), len(got)))
    return (f"at byte {i}: recorded ...{tf.escape(want[max(0, i - 20):i + 30])}... "
            f"replayed ...{tf.escape(got[max(0, i - 20):i + 30])}...")  # fmt: skip


# --- rebuilding what the recording says about the session ----------------------------------------


def _settings(header: dict) -> Any:
    return tf.decode(header["settings"], resolve) if header.get("settings") else None


def _config(header: dict, rec: dict) -> C2SConfig:
    values = {k: tf.decode(v, resolve) for k, v in header["config"].items()}
    if tf.redacted(values.get("fake_salt_secret")):
        values["fake_salt_secret"] = b""
    known = {f.name for f in dataclasses.fields(C2SConfig)}
    return C2SConfig(**{k: v for k, v in values.items() if k in known})


def _env(rec: dict) -> Env:
    start = rec["header"].get("started", 1_700_000_000.0)
    mechanisms = None if rec["secrets"] else _redacted_sasl(rec)
    return Env(ReplayClock(rec["clock"], start), ReplayRandom(rec["random"]), mechanisms)


def _snapshot(rec: dict) -> tuple[str, dict] | None:
    if rec["snapshot"] is None:
        return None
    state, fields = rec["snapshot"]
    values = {k: tf.decode(v, resolve) for k, v in fields.items()}
    if isinstance(values.get("sasl"), tf.Opaque):
        raise UnusableLog("the trace starts in the middle of a SASL exchange: it cannot be "
                          "replayed from there")  # fmt: skip
    tls = values.get("tls")
    if isinstance(tls, dict):  # recorded without secrets
        values["tls"] = TLSInfo(tls["version"], {})
    return state, values


def _redacted_sasl(rec: dict) -> Any:
    """The recorded SASL outcomes, in order, for a trace without secrets."""
    outcomes: deque = deque()
    user = rec.get("user") or "user"
    for kind, value in rec["sasl"]:
        if kind == "user":
            user = value
        elif kind == "LoadCredentials":
            outcomes.append(sasl.NeedCredentials(value["username"], value["hash_name"]))
        elif kind == "CheckPassword":
            outcomes.append(sasl.NeedPasswordCheck(value["username"], ""))
        elif kind == "challenge":
            outcomes.append(sasl.Challenge(b""))
        elif kind == "success":
            outcomes.append(sasl.Success(user, None if value is None else b"x"))
        elif kind == "failure":
            outcomes.append(sasl.Failure(value[0], value[1]))

    def make(name: str, data: Any, offered: list[str]) -> ScriptedSasl:
        return ScriptedSasl(name, outcomes)

    return make
