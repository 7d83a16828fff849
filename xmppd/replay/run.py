"""Replaying a Script: xmppd traces replay exactly (each session alone, fed its recorded
answers and deliveries); other logs replay in one in-memory World shared by their clients."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsm import core
from fsm import tracefmt as tf
from fsm.session import C2SConfig, Env
from xmpp import sasl
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
    script = _mapped(script, options.domain_map)
    steps = script.steps[: options.until] if options.until else script.steps
    declared = script.header.get("policy") or {}
    policy = cmp.Policy(
        mode=script.header.get("compare") or declared.get("match", "xml"),
        tolerate=frozenset(script.header.get("tolerate", cmp.TOLERANCES)),
    )
    report = Report(script.source, script.format, policy.mode, notes=list(script.notes))
    hosts = _domains(script)
    world = World(hosts)
    uses_tls = any(s.direction == "send" and "<starttls" in s.xml for s in steps)
    scripted = _Scripted(script, report)
    config = C2SConfig(
        hosts=hosts,
        mechanisms={h: _MECHANISMS for h in hosts},
        tls_mode="starttls" if uses_tls else "starttls-optional",
        tls_available=uses_tls,
        insecure_any_password=True,
        replay_sasl=scripted,
    )
    for name, client in script.clients.items():
        jid = client.jid or f"{name.lower()}@{hosts[0]}"
        user, _, domain = jid.partition("/")[0].partition("@")
        password = options.accounts.get(jid.partition("/")[0], client.password)
        world.add_account(user, domain or hosts[0], password or "replay-any-password")
    marks: dict[str, int] = {}
    expected: dict[str, list[cmp.Item]] = {}
    for index, step in enumerate(steps):
        m = world.machines.get(step.client)
        if m is None:
            m = _connect(world, step.client, script, config, scripted)
            marks[step.client] = len(m.out)
        if step.direction in ("send", "disconnect"):
            scripted.position = index
            text = cmp.substitute(step.xml, policy.bindings)
            world.feed(m, b"</stream:stream>" if step.direction == "disconnect" else text.encode())
            world.run()
            _bind_jids(script, world, policy)
            continue
        if step.direction != "recv":
            _bind_jids(script, world, policy)
            continue
        try:
            expected.setdefault(step.client, []).extend(cmp.items(step.xml, step.line))
        except cmp.NotXML as exc:
            raise UnusableLog(f"the server's output is not XML: {exc}", step.line) from exc
    for name, m in world.machines.items():
        client = ClientReport(name, transitions=m.transitions)
        client.expected_states = _expected_states(script, name)
        actual = [i for chunk in m.out[marks.get(name, 0) :] for i in cmp.items(chunk.decode())]
        client.pairs = pair_up(expected.get(name, []), actual, policy)
        _check_states(client)
        report.clients.append(client)
    return report


_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")


def _bind_jids(script: Script, world: World, policy: cmp.Policy) -> None:
    """Placeholders the importer declared for a client's JID ({token: {client, kind}}) take
    the JID its machine bound."""
    for token, spec in (script.header.get("placeholders") or {}).items():
        m = world.machines.get(spec.get("client")) if isinstance(spec, dict) else None
        if m is not None and m.data.jid is not None and token not in policy.bindings:
            jid = m.data.jid if spec.get("kind", "full") == "full" else m.data.jid.bare
            policy.bindings[token] = str(jid)


class _Scripted:
    """replay_sasl for logs: the mechanism plays the log's own answers when the replay cannot
    check the password (none given, SCRAM's nonces, a mechanism xmppd does not offer)."""

    def __init__(self, script: Script, report: Report) -> None:
        self.script = script
        self.report = report
        self.position = 0
        self.implied: set[str] = set()

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
    m = world.machine(name, config, Env(ReplayClock(), ReplayRandom()))
    if name not in script.implied_login:
        return m
    client = script.clients.get(name)
    jid = client.jid if client and client.jid else f"{name.lower()}@{config.hosts[0]}"
    bare, _, resource = jid.partition("/")
    domain = bare.partition("@")[2] or config.hosts[0]
    header = (f"<stream:stream xmlns='jabber:client' xmlns:stream='{cmp.STREAM_NS}' "
              f"to='{domain}' version='1.0'>")  # fmt: skip
    scripted.implied.add(name)
    for data in (header, f"<auth xmlns='{cmp.SASL_NS}' mechanism='PLAIN'>=</auth>", header,
                 f"<iq type='set' id='login'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 f"<resource>{resource or name}</resource></bind></iq>"):  # fmt: skip
        world.feed(m, data.encode())
        world.run()
    scripted.implied.discard(name)
    script.notes.append(f"{name}: the log starts after login; the replay logged in as {jid}")
    return m


def pair_up(expected: list[cmp.Item], actual: list[cmp.Item], policy: cmp.Policy) -> list[Pair]:
    """Match the log's outputs with xmppd's in order; 'subset' skips what the log leaves out."""
    pairs: list[Pair] = []
    i = 0
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
    if policy.mode != "subset":
        for extra in actual[i:]:
            pairs.append(Pair(None, extra, cmp.Outcome(["xmppd sent this; the log has nothing"])))
    return pairs


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
