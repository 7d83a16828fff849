"""Replaying a Script: xmppd traces replay exactly (each session alone, fed its recorded
answers and deliveries); other logs replay in one in-memory World shared by their clients."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsm import core
from fsm import tracefmt as tf
from fsm.session import C2SConfig, Env
from xmpp import sasl
from xmpp.stream import STREAM_CLOSE
from xmppd.replay import compare as cmp
from xmppd.replay.report import ClientReport, Pair, Report
from xmppd.replay.script import Script, UnusableLog
from xmppd.replay.world import Machine, ReplayClock, ReplayRandom, ScriptedSasl, World


@dataclass
class Options:
    until: int | None = None  # replay the first N steps of the log
    domain_map: dict[str, str] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)  # JID -> password
    patch: Callable | None = None  # a test's stand-in for fsm.c2s.step


def load(path: Path) -> Script:
    """An xmppd trace (file or directory) is read here; other formats by the importers."""
    from xmppd.replay import tracefile

    if tracefile.is_trace(path):
        return tracefile.load([path])
    if path.is_dir():
        raise UnusableLog(f"{path} is a directory without xmppd traces")
    try:
        from xmppd.replay import importers
    except ImportError:
        raise UnusableLog(
            f"{path} is not an xmppd trace, and the importers of other log formats "
            "(xmppd.replay.importers) are not installed"
        ) from None
    return importers.load(path)


def replay(script: Script, options: Options | None = None) -> Report:
    options = options or Options()
    if script.format == "xmppd-trace":
        from xmppd.replay.traced import replay_trace

        return replay_trace(script, options)
    return replay_log(script, options)


# --- logs from elsewhere: one world for all their clients ---------------------------------------


def replay_log(script: Script, options: Options) -> Report:
    script = _aliased(_mapped(script, options.domain_map))
    steps = script.steps[: options.until] if options.until else script.steps
    declared = script.header.get("policy") or {}
    policy = cmp.Policy(
        mode=script.header.get("compare") or declared.get("match", "xml"),
        tolerate=frozenset(script.header.get("tolerate", cmp.TOLERANCES)),
    )
    report = Report(script.source, script.format, policy.mode, notes=list(script.notes))
    hosts = _domains(script)
    world = World(hosts)
    world.patch = options.patch
    scripted = _Scripted(script, report)
    tls_mode, tls_available = _tls_as_applicable(script, report)
    config = C2SConfig(
        hosts=hosts,
        mechanisms={h: _MECHANISMS for h in hosts},
        tls_mode=tls_mode,
        tls_available=tls_available,
    )
    for name, client in script.clients.items():
        jid = client.jid or f"{name.lower()}@{hosts[0]}"
        user, _, domain = jid.partition("/")[0].partition("@")
        password = options.accounts.get(jid.partition("/")[0], client.password)
        world.add_account(user, domain or hosts[0], password or "replay-any-password")
    _bind_known_jids(script, policy)
    lines: dict[str, _Line] = {}
    for index, step in enumerate(steps):
        line = lines.get(step.client)
        if line is None:
            line = lines[step.client] = _Line(step.client)
        if step.direction == "connect" or line.machine is None:
            if line.machine is None or line.machine.stopped:
                m = _connect(world, step.client, script, config, scripted)
                line.attach(m, implied=step.client in script.implied_login)
            _bind_jids(script, world, policy)
            if step.direction == "connect":
                continue
        if step.direction in ("send", "disconnect"):
            scripted.position = index
            text = cmp.substitute(step.xml, policy.bindings)
            world.feed(line.machine, STREAM_CLOSE if step.direction == "disconnect"
                       else text.encode())  # fmt: skip
            world.run()
            _bind_jids(script, world, policy)
            if _STARTTLS.match(text.strip()):
                line.starttls_at = step.line
            continue
        if step.direction != "recv":
            raise UnusableLog(f"a step going {step.direction!r} cannot be replayed", step.line)
        try:
            wanted = cmp.items(step.xml, step.line)
        except cmp.NotXML as exc:
            raise UnusableLog(f"the server's output is not XML: {exc}", step.line) from exc
        if line.starttls_at is not None:
            wanted = _implied_proceed(wanted, line.starttls_at, report)
            line.starttls_at = None
        line.expect(wanted, policy)
    for name, line in lines.items():
        client = ClientReport(name, transitions=line.transitions())
        client.expected_states = _expected_states(script, name)
        client.pairs = line.finish(policy)
        _check_states(client)
        report.clients.append(client)
    return report


_STARTTLS = re.compile(r"<(?:\w+:)?starttls\b")


class _Line:
    """One client of a log: its machines (a client that reconnects gets a new one), what it
    received after logging in, and how far the log's expectations have consumed that."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.machines: list[Machine] = []
        self.machine: Machine | None = None
        self.read = 0  # chunks of the current machine's output already taken
        self.received: list[cmp.Item] = []
        self.cursor = 0  # received items already paired with an expectation
        self.pairs: list[Pair] = []
        self.starttls_at: int | None = None  # a <starttls/> sent, its answer not yet seen

    def attach(self, m: Machine, *, implied: bool) -> None:
        """A new connection; what it said during an implied login is not the log's."""
        self.machines.append(m)
        self.machine = m
        self.read = len(m.out) if implied else 0

    def take(self) -> None:
        if self.machine is None:
            return
        for chunk in self.machine.out[self.read :]:
            self.received += cmp.items(chunk.decode())
        self.read = len(self.machine.out)

    def expect(self, wanted: list[cmp.Item], policy: cmp.Policy) -> None:
        """Pair what the log says came now with what xmppd has sent so far, binding captures
        as they match, so that later sends can use them."""
        self.take()
        pairs, self.cursor = pair_up(wanted, self.received, policy, start=self.cursor)
        self.pairs += pairs

    def finish(self, policy: cmp.Policy) -> list[Pair]:
        self.take()
        if policy.mode != "subset":
            for extra in self.received[self.cursor :]:
                self.pairs.append(
                    Pair(None, extra, cmp.Outcome(["xmppd sent this; the log has nothing"]))
                )
        return self.pairs

    def transitions(self) -> list[tuple[str, str, str]]:
        return [t for m in self.machines for t in m.transitions]


def _tls_as_applicable(script: Script, report: Report) -> tuple[str, bool]:
    """The replay's TLS policy is the log's: STARTTLS required only when the log's server
    said so, offered when it offered it or the client used it, absent otherwise."""
    offered = required = used = False
    for step in script.steps:
        if step.direction == "send" and _STARTTLS.match(step.xml.strip()):
            used = True
        if step.direction == "recv" and "<starttls" in step.xml.replace("stream:", ""):
            offered = True
            required = required or bool(re.search(r"<(?:\w+:)?required\b", step.xml))
    if required:
        return "starttls", True
    if offered or used:
        report.notes.append("TLS as the log has it: STARTTLS offered, not required")
        return "starttls-optional", True
    report.notes.append("TLS as the log has it: none (the log never negotiates TLS)")
    return "starttls-optional", False


def _implied_proceed(wanted: list[cmp.Item], line: int, report: Report) -> list[cmp.Item]:
    """A log that shows <starttls/> but not the <proceed/> answering it (the importer noted
    it): the handshake is taken as done, so xmppd's <proceed/> is expected there."""
    first = wanted[0] if wanted else None
    if first is not None and first.el is not None and first.el.tag == f"{{{_TLS_NS}}}proceed":
        return wanted
    report.notes.append(
        f"line {line}: the log shows no <proceed/>; the replay expects xmppd's there"
    )
    return [*cmp.items(f"<proceed xmlns='{_TLS_NS}'/>", line), *wanted]


_TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"


_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")


def _bind_known_jids(script: Script, policy: cmp.Policy) -> None:
    """Placeholders whose JID the script gives in advance (a bare JID, a full JID with the
    resource the client asks for) are bound before anything is sent."""
    for token, spec in (script.header.get("placeholders") or {}).items():
        if isinstance(spec, dict) and spec.get("jid"):
            policy.bindings.setdefault(token, spec["jid"])


def _bind_jids(script: Script, world: World, policy: cmp.Policy) -> None:
    """Placeholders the importer declared for a client's JID ({token: {client, kind}}) take
    the JID its machine bound."""
    for token, spec in (script.header.get("placeholders") or {}).items():
        m = world.machines.get(spec.get("client")) if isinstance(spec, dict) else None
        if m is not None and m.data.jid is not None and token not in policy.bindings:
            jid = m.data.jid if spec.get("kind", "full") == "full" else m.data.jid.bare
            policy.bindings[token] = str(jid)


class _Scripted:
    """The SASL mechanisms of a log's replay: the log's own answers are played when the replay
    cannot check the password (none given, SCRAM's nonces, a mechanism xmppd does not offer)."""

    def __init__(self, script: Script, report: Report) -> None:
        self.script = script
        self.report = report
        self.position = 0
        self.implied: set[str] = set()

    def mechanisms(self, name: str, data: Any, offered: list[str]) -> Any:
        """fsm.session.MechanismFactory: the log's outcomes where the replay cannot check the
        password itself, else the machine's own mechanism."""
        from fsm.c2s import mechanism_for

        scripted = self(name, data)
        return scripted if scripted is not None else mechanism_for(name, data, offered)

    def __call__(self, name: str, data: Any) -> Any:
        client = self.script.clients.get(data.conn_id)
        user = (client.jid or data.conn_id).partition("@")[0].lower() if client else "user"
        if data.conn_id in self.implied:
            return ScriptedSasl(name, deque([sasl.Success(user, None)]))
        from fsm.c2s import offered_mechanisms

        reason = None
        if client is None or client.password is None:
            reason = "the log has no password"
        elif name not in offered_mechanisms(data):
            reason = f"xmppd does not offer {name}"
        elif name.startswith("SCRAM"):
            reason = "SCRAM's nonces cannot be replayed from a log"
        if reason is None:
            return None
        note = f"{data.conn_id}: authentication ({name}) ran on the recorded outcome: {reason}"
        if note not in self.report.notes:
            self.report.notes.append(note)
        return ScriptedSasl(name, deque(self._outcomes(data.conn_id, user)))

    def _outcomes(self, client: str, user: str) -> list:
        import base64

        out: list = []
        for step in self.script.steps[self.position + 1 :]:
            if step.client != client or step.direction != "recv":
                continue
            for item in cmp.items(step.xml):
                if item.el is None or cmp.etree.QName(item.el).namespace != cmp.SASL_NS:
                    continue
                local = cmp.etree.QName(item.el).localname
                text = (item.el.text or "").strip()
                payload = base64.b64decode(text) if text and text != "=" else b""
                if local == "challenge":
                    out.append(sasl.Challenge(payload))
                elif local == "success":
                    return [*out, sasl.Success(user, payload or None)]
                elif local == "failure":
                    cond = next((cmp.etree.QName(c).localname for c in item.el), "not-authorized")
                    return [*out, sasl.Failure(cond)]
        return [*out, sasl.Success(user, None)]


def _connect(world: World, name: str, script: Script, config: C2SConfig, scripted) -> Machine:
    """A fresh machine for the client; a log that starts after login (every scansion client)
    gets the stages before its start played for it: header, PLAIN on the recorded outcome,
    restart, bind (with the client's resource, else its name)."""
    m = world.machine(name, config, Env(ReplayClock(), ReplayRandom(), scripted.mechanisms))
    if name not in script.implied_login:
        return m
    client = script.clients.get(name)
    jid = client.jid if client and client.jid else f"{name.lower()}@{config.hosts[0]}"
    bare, _, resource = jid.partition("/")
    domain = bare.partition("@")[2] or config.hosts[0]
    header = (f"<stream:stream xmlns='jabber:client' xmlns:stream='{cmp.STREAM_NS}' "
              f"to='{domain}' version='1.0'>")  # fmt: skip
    auth = f"<auth xmlns='{cmp.SASL_NS}' mechanism='PLAIN'>=</auth>"
    bind = (f"<iq type='set' id='login'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource or name}</resource></bind></iq>")  # fmt: skip
    starts_at = (script.header.get("starts_at") or {}).get(name, "established")
    stages = _LOGIN_STAGES.get(starts_at, 4)
    scripted.implied.add(name)
    for data in (header, auth, header, bind)[:stages]:
        world.feed(m, data.encode())
        world.run()
    scripted.implied.discard(name)
    note = f"{name}: the log starts after login; the replay logged in as {jid}"
    if stages < 4:
        note = f"{name}: the log starts at {starts_at}; the replay did the stages before it"
    if note not in script.notes:
        script.notes.append(note)
    return m


# How many of (header, auth, header, bind) the replay plays for a log starting at a stage.
_LOGIN_STAGES = {"stream": 0, "tls": 1, "sasl": 1, "bind": 3, "session": 4, "established": 4}


def pair_up(
    expected: list[cmp.Item], actual: list[cmp.Item], policy: cmp.Policy, start: int = 0
) -> tuple[list[Pair], int]:
    """Match the log's outputs with xmppd's in order from `start`; 'subset' skips what the
    log leaves out. Returns the pairs and where the next expectation starts looking."""
    pairs: list[Pair] = []
    i = start
    for want in expected:
        if policy.mode == "subset":
            j = next(
                (k for k in range(i, len(actual)) if cmp.match(want, actual[k], _trial(policy)).ok),
                None,
            )
            if j is None:
                same = [a for a in actual[i:] if a.el is not None and want.el is not None
                        and a.el.tag == want.el.tag]  # fmt: skip
                closest = same[0] if same else (actual[i] if i < len(actual) else None)
                missing = cmp.Outcome(["the log expects this; xmppd sent nothing like it"])
                if closest is not None:
                    missing.problems += cmp.match(want, closest, _trial(policy)).problems
                pairs.append(Pair(want, closest, missing))
                continue
            i = j
        got = actual[i] if i < len(actual) else None
        if got is None:
            pairs.append(Pair(want, None, cmp.Outcome(["xmppd sent nothing here"])))
            continue
        pairs.append(Pair(want, got, cmp.match(want, got, policy)))
        i += 1
    return pairs, i


def _trial(policy: cmp.Policy) -> cmp.Policy:
    return cmp.Policy(policy.mode, policy.tolerate, dict(policy.bindings), policy.domain_map)


def _expected_states(script: Script, client: str) -> list[str] | None:
    states = script.header.get("states")
    if isinstance(states, dict):
        states = states.get(client)
    if isinstance(states, str):
        states = [s.strip() for s in states.replace("->", ",").split(",") if s.strip()]
    return states


def _check_states(client: ClientReport) -> None:
    if client.expected_states is not None and client.states != client.expected_states:
        client.problems.append(
            "state sequence: expected "
            + " -> ".join(client.expected_states)
            + ", got "
            + " -> ".join(client.states)
        )


def _domains(script: Script) -> tuple[str, ...]:
    import re

    found: list[str] = []
    for client in script.clients.values():
        if client.jid and "@" in client.jid:
            found.append(client.jid.partition("/")[0].partition("@")[2].lower())
    for step in script.steps:
        if step.direction == "send":
            m = re.search(r"<(?:stream:)?stream\b[^>]*\sto=['\"]([^'\"]+)", step.xml)
            if m:
                found.append(m.group(1).lower())
    return tuple(dict.fromkeys(found)) or ("localhost",)


_STREAM_TO = re.compile(r"(<(?:stream:)?stream\b[^>]*\sto=)(['\"])([^'\"]+)\2")
_STREAM_FROM = re.compile(r"<(?:stream:)?stream\b[^>]*\sfrom=['\"]([^'\"]+)")


def _aliased(script: Script) -> Script:
    """A log whose server answered a stream addressed to one name as another domain (the
    importer notes it) took the first name for the second: the replay's client addresses
    that stream to the domain the server answered as, and says so."""
    import dataclasses

    aliases: dict[tuple[str, str], str] = {}
    asked: dict[str, tuple[str, int]] = {}
    for step in script.steps:
        to = _STREAM_TO.search(step.xml) if step.direction == "send" else None
        if to:
            asked[step.client] = (to.group(3), step.line)
        answer = _STREAM_FROM.search(step.xml) if step.direction == "recv" else None
        if answer and step.client in asked:
            name, line = asked.pop(step.client)
            if name.lower() != answer.group(1).lower():
                aliases[(step.client, name)] = answer.group(1)
                script.notes.append(
                    f"line {line}: the stream to {name!r} was answered as "
                    f"{answer.group(1)!r}: the replay addresses it there"
                )
    if not aliases:
        return script

    def fix(step):
        to = _STREAM_TO.search(step.xml) if step.direction == "send" else None
        new = aliases.get((step.client, to.group(3))) if to else None
        if new is None:
            return step
        return dataclasses.replace(step, xml=_STREAM_TO.sub(rf"\g<1>\g<2>{new}\g<2>", step.xml, 1))

    return dataclasses.replace(script, steps=[fix(s) for s in script.steps])


def _mapped(script: Script, domain_map: dict[str, str]) -> Script:
    if not domain_map:
        return script
    import dataclasses

    def fix(text: str | None) -> str | None:
        for old, new in domain_map.items():
            text = text.replace(old, new) if text else text
        return text

    steps = [dataclasses.replace(s, xml=fix(s.xml)) for s in script.steps]
    clients = {n: dataclasses.replace(c, jid=fix(c.jid)) for n, c in script.clients.items()}
    return dataclasses.replace(script, steps=steps, clients=clients)


__all__ = ["Options", "load", "replay", "core", "tf"]
