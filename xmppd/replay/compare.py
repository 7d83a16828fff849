"""Comparing what xmppd sent with what a log says the server sent, by XML meaning.

Attribute order, namespace prefixes and insignificant whitespace never matter. Values that are
random or server-specific are matched by placeholders the log declares (`${name}` or `{{name}}`:
bound at first use, equal at every later one; `{scansion:any}` and `[redacted]` match anything)
or by the documented tolerances below (docs/traces.md, "Replay policy"), each of which shows up in
the report as tolerated: nothing is ignored silently."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

STREAM_NS = "http://etherx.jabber.org/streams"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
SCANSION_NS = "https://matthewwild.co.uk/projects/scansion"
_WRAP = f"<w xmlns='jabber:client' xmlns:stream='{STREAM_NS}' xmlns:scansion='{SCANSION_NS}'>%s</w>"
_DECL = re.compile(r"^\s*<\?xml[^?]*\?>")
_HEADER = re.compile(r"<(?:stream:)?stream(?=[\s>])[^>]*?(?<!/)>")
_CLOSE = re.compile(r"</(?:stream:)?stream\s*>")
PLACEHOLDER = re.compile(
    r"\$\{[^}]+\}|\{\{[^}]+\}\}|\{scansion:any\}|\{scansion:capture:[^}]+\}|\[redacted\]"
)
ANY = ("{scansion:any}", "[redacted]", "{{*}}")
_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_CAPS = "{http://jabber.org/protocol/caps}c"
_SESSION = "{urn:ietf:params:xml:ns:xmpp-session}session"
_STRICT = f"{{{SCANSION_NS}}}strict"
_VERSION_NAME = "{jabber:iq:version}name"


@dataclass
class Item:
    """One piece of a stream: a header (attrs), the close, or an element."""

    kind: str  # "header" | "close" | "element"
    el: etree._Element | None = None
    raw: str = ""
    line: int | None = None


class NotXML(ValueError):
    pass


def items(text: str, line: int | None = None) -> list[Item]:
    """The pieces in a piece of logged server (or client) output."""
    out: list[Item] = []
    rest = _DECL.sub("", text.strip())
    while rest:
        header = _HEADER.match(rest)
        close = _CLOSE.match(rest)
        if header:
            tag = header.group()[:-1] + "/>"
            el = _parse(tag)[0]
            out.append(Item("header", el, header.group(), line))
            rest = rest[header.end() :].lstrip()
            continue
        if close:
            out.append(Item("close", None, close.group(), line))
            rest = rest[close.end() :].lstrip()
            continue
        nxt = min(
            [m.start() for m in (_HEADER.search(rest), _CLOSE.search(rest)) if m] or [len(rest)]
        )
        for el in _parse(rest[:nxt]):
            raw = etree.tostring(el, encoding="unicode", with_tail=False)
            out.append(Item("element", el, raw, line))
        rest = rest[nxt:].lstrip()
    return out


def _parse(text: str) -> list[etree._Element]:
    try:
        wrapper = etree.fromstring((_WRAP % text).encode(), etree.XMLParser(recover=False))
    except etree.XMLSyntaxError as exc:
        raise NotXML(f"not XML: {exc.msg}") from exc
    children = [c for c in wrapper if isinstance(c.tag, str)]
    for c in children:
        c.tail = None  # scansion:strict stays: a directive for the comparison, never compared
    return children


# --- matching ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)  # real differences
    tolerated: list[str] = field(default_factory=list)  # documented server-specific ones

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Policy:
    """How to compare. mode: 'xml' (same meaning) or 'subset' (what the log names must be
    there; more is allowed, as scansion matches). tolerate: names of documented tolerances."""

    mode: str = "xml"
    tolerate: frozenset[str] = frozenset()
    bindings: dict[str, str] = field(default_factory=dict)
    domain_map: dict[str, str] = field(default_factory=dict)


TOLERANCES = {
    "stream-id": "the stream id is random",
    "header-attrs": "a stream header attribute only one server sends (version), or the language "
    "it answers in (xml:lang: RFC 6120 §4.7.4 lets it use its own)",
    "features": "which stream features and SASL mechanisms a server offers is its own choice",
    "sasl-payload": "SASL challenges and success data carry nonces (the log has no secrets)",
    "resource": "a resource the server generated",
    "iq-id": "the id of an IQ the server generated (roster push, ping)",
    "caps": "the caps hash (ver) and node (the software's URI) of the server's features",
    "reply-to": "the 'to' of a stanza the server sends the client, which xmppd leaves out "
    "(RFC 6120 §8.1.2.1: the client's own stream needs none)",
    "result-echo": "an IQ result echoing the request's empty payload, which xmppd answers "
    "empty (RFC 6120 §8.2.3: a result carries no payload it does not need)",
    "error-text": "the human-readable <text/> of an error",
    "software": "the software's <name/> in a jabber:iq:version answer",
}


def match(expected: Item, actual: Item, policy: Policy) -> Outcome:
    result = Outcome()
    if expected.kind != actual.kind:
        result.problems.append(f"expected a {expected.kind}, got a {actual.kind}")
        return result
    if expected.kind == "close":
        return result
    _element(expected.el, actual.el, policy, result, _name(expected.el), expected.kind == "header")
    return result


def _name(el: etree._Element) -> str:
    qname = etree.QName(el)
    return qname.localname


def _element(exp, act, policy: Policy, out: Outcome, path: str, header: bool = False) -> None:
    strict = exp.get(_STRICT)
    if strict in ("true", "false"):  # scansion: this element exactly, or a subset again
        mode = "xml" if strict == "true" else "subset"
        policy = Policy(mode, policy.tolerate, policy.bindings, policy.domain_map)
    if exp.tag != act.tag:
        out.problems.append(f"{path}: expected <{_clark(exp.tag)}>, got <{_clark(act.tag)}>")
        return
    features = exp.tag == f"{{{STREAM_NS}}}features"
    _attributes(exp, act, policy, out, path, header)
    _text(exp, act, policy, out, path)
    if features and "features" in policy.tolerate:
        _features(exp, act, policy, out, path)
        return
    _children(exp, act, policy, out, path)


def _clark(tag: str) -> str:
    q = etree.QName(tag)
    return f"{q.localname} xmlns='{q.namespace}'" if q.namespace else q.localname


def _attributes(exp, act, policy: Policy, out: Outcome, path: str, header: bool) -> None:
    top = "/" not in path  # a stanza, not a child of one
    server_iq = act.tag == "{jabber:client}iq" and act.get("type") in ("get", "set")
    for key in (set(exp.attrib) | set(act.attrib)) - {_STRICT}:
        want, got = exp.get(key), act.get(key)
        where = f"{path}/@{etree.QName(key).localname}"
        if want is None and header and "header-attrs" in policy.tolerate:
            out.tolerated.append(f"{where}: xmppd sent {got!r} ({TOLERANCES['header-attrs']})")
            continue
        if want is None:
            if policy.mode != "subset":
                out.problems.append(f"{where}: not in the log, xmppd sent {got!r}")
            continue
        if got is None and key == "to" and top and "reply-to" in policy.tolerate:
            out.tolerated.append(f"{where}: the log has {want!r}, xmppd none "
                                 f"({TOLERANCES['reply-to']})")  # fmt: skip
            continue
        if got is None:
            out.problems.append(f"{where}: the log has {want!r}, xmppd sent none")
            continue
        if value_matches(want, got, policy):
            continue
        if header and key == _LANG and "header-attrs" in policy.tolerate:
            out.tolerated.append(f"{where}: {want!r} ~ {got!r} ({TOLERANCES['header-attrs']})")
        elif header and key == "id" and "stream-id" in policy.tolerate:
            out.tolerated.append(f"{where}: {want!r} ~ {got!r} ({TOLERANCES['stream-id']})")
        elif key == "id" and server_iq and "iq-id" in policy.tolerate:
            out.tolerated.append(f"{where}: {want!r} ~ {got!r} ({TOLERANCES['iq-id']})")
        elif key in ("ver", "node") and act.tag == _CAPS and "caps" in policy.tolerate:
            out.tolerated.append(f"{where}: {want!r} ~ {got!r} ({TOLERANCES['caps']})")
        else:
            out.problems.append(f"{where}: the log has {want!r}, xmppd sent {got!r}")


def _text(exp, act, policy: Policy, out: Outcome, path: str) -> None:
    want, got = (exp.text or "").strip(), (act.text or "").strip()
    if value_matches(want, got, policy) or (policy.mode == "subset" and not want):
        return
    local, ns = etree.QName(act).localname, etree.QName(act).namespace
    if ns == SASL_NS and local in ("challenge", "success") and "sasl-payload" in policy.tolerate:
        out.tolerated.append(f"{path}: SASL data differs ({TOLERANCES['sasl-payload']})")
    elif exp.tag == _VERSION_NAME and "software" in policy.tolerate:
        out.tolerated.append(f"{path}: {want!r} ~ {got!r} ({TOLERANCES['software']})")
    elif local == "text" and "error-text" in policy.tolerate:
        out.tolerated.append(f"{path}: {want!r} ~ {got!r} ({TOLERANCES['error-text']})")
    elif (
        local == "jid" and "resource" in policy.tolerate and want.split("/")[0] == got.split("/")[0]
    ):
        out.tolerated.append(f"{path}: {want!r} ~ {got!r} ({TOLERANCES['resource']})")
    else:
        out.problems.append(f"{path}: text: the log has {want!r}, xmppd sent {got!r}")


def _children(exp, act, policy: Policy, out: Outcome, path: str) -> None:
    wanted = [c for c in exp if isinstance(c.tag, str)]
    given = [c for c in act if isinstance(c.tag, str)]
    free = list(given)
    for child in wanted:
        best: tuple[int, etree._Element, Outcome] | None = None
        for candidate in free:
            if candidate.tag != child.tag:
                continue
            trial = Outcome()
            _element(child, candidate, Policy(policy.mode, policy.tolerate, dict(policy.bindings),
                                              policy.domain_map), trial, f"{path}/")  # fmt: skip
            score = len(trial.problems)
            if best is None or score < best[0]:
                best = (score, candidate, trial)
            if score == 0:
                break
        if best is None and _echo(exp, child) and "result-echo" in policy.tolerate:
            out.tolerated.append(f"{path}: the log echoes <{_clark(child.tag)}/>, xmppd not "
                                 f"({TOLERANCES['result-echo']})")  # fmt: skip
            continue
        if best is None:
            out.problems.append(f"{path}: missing <{_clark(child.tag)}>")
            continue
        free.remove(best[1])
        _element(child, best[1], policy, out, f"{path}/{_name(child)}")
    if policy.mode != "subset":
        for extra in free:
            out.problems.append(f"{path}: xmppd also sent <{_clark(extra.tag)}>")


def _echo(parent: etree._Element, child: etree._Element) -> bool:
    """An IQ result's empty payload (no attributes, children or text): an echo of the request."""
    empty = not len(child) and not (child.text or "").strip() and not child.attrib
    return parent.tag == "{jabber:client}iq" and parent.get("type") == "result" and empty


def _features(exp, act, policy: Policy, out: Outcome, path: str) -> None:
    """Stream features: the ones both offer are compared (mechanism lists only as lists of
    names); the ones only one side offers are listed as tolerated."""
    given = {c.tag: c for c in act if isinstance(c.tag, str)}
    wanted = {c.tag: c for c in exp if isinstance(c.tag, str)}
    for tag, child in wanted.items():
        if tag not in given:
            out.tolerated.append(f"{path}: the log's server offers <{_clark(tag)}>, xmppd not")
        elif etree.QName(tag).localname == "mechanisms":
            theirs = [m.text for m in child]
            ours = [m.text for m in given[tag]]
            if theirs != ours:
                out.tolerated.append(f"{path}/mechanisms: {theirs} ~ {ours}")
        elif tag == _SESSION:  # <optional/> or not: whether the server needs the legacy session
            theirs, ours = len(child), len(given[tag])
            if theirs != ours:
                out.tolerated.append(f"{path}/session: <optional/> in one offer, not the other")
        else:
            _element(child, given[tag], policy, out, f"{path}/{_name(child)}")
    for tag in given:
        if tag not in wanted:
            out.tolerated.append(f"{path}: xmppd offers <{_clark(tag)}>, the log's server not")


def value_matches(want: str, got: str, policy: Policy) -> bool:
    for old, new in policy.domain_map.items():
        want = want.replace(old, new)
    if want == got or want in ANY:
        return True
    if not PLACEHOLDER.search(want):
        return False
    pattern, names = "", []
    pos = 0
    for m in PLACEHOLDER.finditer(want):
        pattern += re.escape(want[pos : m.start()])
        token = m.group()
        if token in ANY:
            pattern += "(?:.*?)"
        elif token in policy.bindings:
            pattern += re.escape(policy.bindings[token])
        else:
            pattern += "(.+?)"
            names.append(token)
        pos = m.end()
    pattern += re.escape(want[pos:])
    found = re.fullmatch(pattern, got, re.S)
    if found is None:
        return False
    for token, value in zip(names, found.groups(), strict=True):
        policy.bindings.setdefault(token, value)
    return True


def substitute(text: str, bindings: dict[str, str]) -> str:
    """A log's client-side XML with the placeholders bound so far filled in."""
    for token, value in bindings.items():
        text = text.replace(token, value)
    return text
