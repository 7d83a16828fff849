"""What the importers share: cutting logged text into wire units, telling who sent a unit when
the log does not say, and deriving clients, domains and the SASL mechanism from the steps.

A *unit* is one thing on the wire: a stream header (left open), a stream close, or one complete
top-level element. An XML declaration stays glued to the unit that follows it.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ..script import Client, Script, Step, UnusableLog

NS_STREAM = "http://etherx.jabber.org/streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_COMPRESS = "http://jabber.org/protocol/compress"
NS_SM = "urn:xmpp:sm:3"
NS_BOSH = "http://jabber.org/protocol/httpbind"
# The namespace the importers give the `scansion:` prefix when they check a script's XML;
# scansion scripts never declare it.
NS_SCANSION = "https://matthewwild.co.uk/projects/scansion"

# Prefixes logs use without declaring them (a log shows stanzas out of their stream).
_WRAP_OPEN = (
    '<xmppd-import-wrapper xmlns="jabber:client"'
    f' xmlns:stream="{NS_STREAM}" xmlns:scansion="{NS_SCANSION}"'
    ' xmlns:xmpp="urn:xmpp:xbosh">'
)
_WRAP_CLOSE = "</xmppd-import-wrapper>"
_NAME = re.compile(r"[^\s/>]+")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True)


@dataclass
class Unit:
    kind: str  # 'stream-open', 'stream-close', 'element'
    xml: str  # as logged (minus line prefixes), XML declaration included
    line: int
    tag: str = ""  # local name
    ns: str = ""  # namespace (the wrapper supplies jabber:client and the stream prefix)
    attrs: dict[str, str] = field(default_factory=dict)  # unqualified attributes
    el: Any = None  # lxml element for 'element' units


class Incomplete(Exception):
    """The text ends inside an element (more lines may complete it)."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _local(qname: str) -> str:
    return qname.rsplit(":", 1)[-1]


def _tag_end(text: str, start: int) -> int:
    quote = None
    for k in range(start + 1, len(text)):
        c = text[k]
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == ">":
            return k
    return -1


def split_units(
    pieces: list[tuple[int, str]], check: bool = True, token: re.Pattern | None = None
) -> list[Unit]:
    """Cut `pieces` (line number, text) into units. Raises Incomplete when the text ends inside
    an element and UnusableLog for text that is not XML. `token` matches placeholders to be
    neutralised before the well-formedness check (the unit keeps them)."""
    starts: list[int] = []
    lines: list[int] = []
    buf: list[str] = []
    pos = 0
    for lineno, text in pieces:
        starts.append(pos)
        lines.append(lineno)
        buf.append(text)
        pos += len(text) + 1
    text = "\n".join(buf)

    def line_of(offset: int) -> int:
        return lines[max(0, bisect.bisect_right(starts, offset) - 1)]

    units: list[Unit] = []
    i, depth, n = 0, 0, len(text)
    elem_start = 0
    decl_start: int | None = None
    while i < n:
        j = text.find("<", i)
        gap = text[i:] if j < 0 else text[i:j]
        if depth == 0 and gap.strip():
            off = i + (len(gap) - len(gap.lstrip()))
            raise UnusableLog(f"text outside any XML element: {gap.strip()[:60]!r}", line_of(off))
        if j < 0:
            break
        if text.startswith("<!--", j):
            k = text.find("-->", j)
            if k < 0:
                raise Incomplete(line_of(j))
            i = k + 3
            continue
        if text.startswith("<![CDATA[", j):
            k = text.find("]]>", j)
            if k < 0:
                raise Incomplete(line_of(j))
            if depth == 0:
                raise UnusableLog("character data outside any element", line_of(j))
            i = k + 3
            continue
        if text.startswith("<?", j):
            k = text.find("?>", j)
            if k < 0:
                raise Incomplete(line_of(j))
            if depth == 0 and decl_start is None:
                decl_start = j
            i = k + 2
            continue
        k = _tag_end(text, j)
        if k < 0:
            raise Incomplete(line_of(j))
        tag = text[j : k + 1]
        if tag.startswith("</"):
            name = tag[2:-1].strip()
            if depth == 0:
                if _local(name) != "stream":
                    raise UnusableLog(f"end tag {tag} closes nothing", line_of(j))
                units.append(Unit("stream-close", tag, line_of(j), tag="stream", ns=NS_STREAM))
            else:
                depth -= 1
                if depth == 0:
                    units.append(_element(text[elem_start : k + 1], line_of(elem_start), token))
        else:
            m = _NAME.match(tag, 1)
            if not m:
                raise UnusableLog(f"not an XML tag: {tag[:60]!r}", line_of(j))
            name = m.group(0)
            empty = tag.endswith("/>")
            if depth == 0:
                start = j if decl_start is None else decl_start
                decl_start = None
                if _local(name) == "stream" and not empty:
                    units.append(_stream_open(text[start : k + 1], line_of(start), token))
                elif empty:
                    units.append(_element(text[start : k + 1], line_of(start), token))
                else:
                    elem_start, depth = start, 1
            elif not empty:
                depth += 1
        i = k + 1
    if depth:
        raise Incomplete(line_of(elem_start))
    if decl_start is not None:  # an XML declaration waiting for its stream header
        raise Incomplete(line_of(decl_start))
    return units


def _checkable(xml: str, token: re.Pattern | None) -> str:
    xml = re.sub(r"^\s*<\?.*?\?>", "", xml, flags=re.S)
    if token is not None:
        xml = token.sub("placeholder", xml)
    return xml


def _parse(xml: str, line: int) -> Any:
    try:
        root = etree.fromstring((_WRAP_OPEN + xml + _WRAP_CLOSE).encode(), _PARSER)
    except etree.XMLSyntaxError as e:
        msg = str(e.msg if hasattr(e, "msg") else e).split(", line")[0]
        raise UnusableLog(f"not well-formed XML: {msg}", line) from None
    kids = [c for c in root if isinstance(c.tag, str)]
    return kids[0]


def _fill(unit: Unit, el: Any) -> Unit:
    q = etree.QName(el)
    unit.tag, unit.ns = q.localname, q.namespace or ""
    unit.attrs = {k: v for k, v in el.attrib.items() if not k.startswith("{")}
    for k, v in el.attrib.items():
        if k == "{http://www.w3.org/XML/1998/namespace}lang":
            unit.attrs["xml:lang"] = v
    return unit


def _element(xml: str, line: int, token: re.Pattern | None) -> Unit:
    el = _parse(_checkable(xml, token), line)
    return _fill(Unit("element", xml, line, el=el), el)


def _stream_open(xml: str, line: int, token: re.Pattern | None) -> Unit:
    body = _checkable(xml, token).rstrip()
    el = _parse(body[:-1] + "/>", line)
    return _fill(Unit("stream-open", xml, line), el)


# --- who sent it ------------------------------------------------------------------------------

_SENT_BY_CLIENT = {
    NS_SASL: {"auth", "response", "abort"},
    NS_TLS: {"starttls"},
    NS_COMPRESS: {"compress"},
    NS_SM: {"enable", "resume"},
}
_SENT_BY_SERVER = {
    NS_SASL: {"challenge", "success", "failure"},
    NS_TLS: {"proceed", "failure"},
    NS_COMPRESS: {"compressed", "failure"},
    NS_SM: {"enabled", "resumed", "failed"},
    NS_STREAM: {"features", "error"},
}


def intrinsic_direction(u: Unit) -> str | None:
    """'send' or 'recv' when the protocol says who sends such a unit, else None."""
    if u.kind == "stream-close":
        return None
    if u.kind == "stream-open":
        if "to" in u.attrs and "id" not in u.attrs:
            return "send"
        if "id" in u.attrs and "to" not in u.attrs:
            return "recv"
        return None
    if u.tag in _SENT_BY_CLIENT.get(u.ns, ()):
        return "send"
    if u.tag in _SENT_BY_SERVER.get(u.ns, ()):
        return "recv"
    if is_bosh(u):
        return "send" if "rid" in u.attrs else "recv"
    return None


def iq_direction(u: Unit) -> str | None:
    """The weak guess for an iq in a login: requests come from the client, answers from the
    server."""
    if u.tag == "iq" and u.ns == "jabber:client":
        return {"get": "send", "set": "send", "result": "recv", "error": "recv"}.get(
            u.attrs.get("type", "")
        )
    return None


def is_bosh(u: Unit) -> bool:
    return u.kind == "element" and u.tag == "body" and u.ns == NS_BOSH


_CLIENT_WORDS = r"(?:客户端|客戶端|客户|客戶|client)"
_SERVER_WORDS = r"(?:服务器端|服務器端|服务器|服務器|服务端|服務端|server)"
_TO_MARK = r"(?:向|给|給|通知|告诉|告訴|告知|\bto\s+the|\bto)"
_TO_CLIENT = re.compile(_TO_MARK + r"\s*" + _CLIENT_WORDS, re.I)
_TO_SERVER = re.compile(_TO_MARK + r"\s*" + _SERVER_WORDS, re.I)
_PINYIN = re.compile(r"\([a-z\u00e0-\u00fc\u0100-\u01dc]+\)")
_PARTY = re.compile(f"({_CLIENT_WORDS})|({_SERVER_WORDS})", re.I)


def prose_direction(text: str) -> str | None:
    """Who the sentence says sends: the party something goes *to* is the receiver ("向客户端",
    "给服务器", "to the server"); otherwise the first party named is the sender."""
    text = _PINYIN.sub("", text)  # "服務(wù)器": readings some pages put after characters
    to_c, to_s = _TO_CLIENT.search(text), _TO_SERVER.search(text)
    if to_c and not to_s:
        return "recv"
    if to_s and not to_c:
        return "send"
    if to_c and to_s:
        return "recv" if to_c.start() < to_s.start() else "send"
    m = _PARTY.search(text)
    if not m:
        return None
    return "send" if m.group(1) else "recv"


class Prose:
    """The prose lines seen since the last XML unit, nearest last."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def add(self, line: int, text: str) -> None:
        if text.strip():
            self.lines.append((line, text.strip()))

    def clear(self) -> None:
        self.lines = []

    def direction(self) -> tuple[str | None, int | None]:
        for line, text in reversed(self.lines):
            d = prose_direction(text)
            if d:
                return d, line
        return None, None


# --- what the steps imply ---------------------------------------------------------------------


def xmppd_offers(mechanism: str) -> bool:
    from xmpp.sasl import SCRAM_HASHES

    if mechanism in ("PLAIN", "ANONYMOUS"):
        return True
    if mechanism.startswith("SCRAM-"):
        return mechanism.removeprefix("SCRAM-").removesuffix("-PLUS") in SCRAM_HASHES
    return False


def _b64(text: str) -> bytes | None:
    data = "".join(text.split())
    if data in ("", "="):
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _scram_user(payload: str) -> str | None:
    raw = _b64(payload)
    m = re.search(rb"(?:^|,)n=([^,]*)", raw or b"")
    return (
        m.group(1).decode("utf-8", "replace").replace("=2C", ",").replace("=3D", "=") if m else None
    )


def _digest_user(payload: str) -> str | None:
    m = re.search(rb'username="([^"]*)"', _b64(payload) or b"")
    return m.group(1).decode("utf-8", "replace") if m else None


def _domain(jid: str) -> str:
    return jid.split("/", 1)[0].rsplit("@", 1)[-1]


def _stage(u: Unit) -> str:
    if u.kind == "stream-open":
        return "stream"
    if u.ns == NS_TLS:
        return "tls"
    if u.ns == NS_SASL:
        return "sasl"
    if u.tag == "iq" and u.el is not None:
        if u.el.find(f"{{{NS_BIND}}}bind") is not None:
            return "bind"
        if u.el.find(f"{{{NS_SESSION}}}session") is not None:
            return "session"
    return "established"


class Builder:
    """Collects the steps of a single-stream log (ejabberd, transcript) and works out, at the
    end, the clients, domains, mechanism and implied login."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.units: list[tuple[Unit, str, str]] = []  # unit, client, direction

    def add(self, unit: Unit, direction: str, client: str = "client") -> None:
        self.units.append((unit, client, direction))
        self.script.steps.append(Step(unit.line, client, direction, unit.xml))

    def note(self, text: str) -> None:
        self.script.notes.append(text)

    def finish(self) -> Script:
        s = self.script
        if not s.steps:
            raise UnusableLog("no client/server exchange found in the log")
        domains: list[str] = []
        late: list[str] = []
        mechanisms: dict[str, str] = {}
        starts: dict[str, str] = {}
        auth: dict[str, dict] = {}
        for name in dict.fromkeys(c for _, c, _ in self.units):
            mine = [(u, d) for u, c, d in self.units if c == name]
            client = s.clients.setdefault(name, Client(name))
            bound = stream_from = authcid = password = None
            first_to = None
            for u, d in mine:
                if u.kind == "stream-open" and d == "send":
                    first_to = first_to or u.attrs.get("to")
                    if "@" in u.attrs.get("from", ""):
                        stream_from = stream_from or u.attrs["from"]
                    if u.attrs.get("to"):
                        late.append(u.attrs["to"])
                elif u.kind == "stream-open" and u.attrs.get("from"):
                    late.append(u.attrs["from"])
                elif u.tag == "iq" and d == "recv" and u.attrs.get("type") == "result":
                    j = u.el.find(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")
                    if j is not None and j.text and not bound:
                        bound = j.text.strip()
                        domains.append(_domain(bound))
                elif u.tag == "auth" and u.ns == NS_SASL and d == "send":
                    mech = u.attrs.get("mechanism", "")
                    mechanisms.setdefault(name, mech)
                    if mech == "PLAIN" and authcid is None:
                        authcid, password = self._plain(u)
                    elif mech.startswith("SCRAM-") and authcid is None:
                        authcid = _scram_user(u.el.text or "")
                elif u.tag == "response" and u.ns == NS_SASL and d == "send":
                    if mechanisms.get(name) == "DIGEST-MD5" and authcid is None:
                        authcid = _digest_user(u.el.text or "")
            first = mine[0][0]
            stage = _stage(first)
            if first.kind == "stream-open" and mine[0][1] == "recv":
                self.note(
                    f"line {first.line}: the log starts with the server's stream header; "
                    "the client's header is implied"
                )
                s.implied_login.add(name)
                stage = "stream"
            starts[name] = stage
            if stage != "stream":
                s.implied_login.add(name)
                self.note(
                    f"client {name!r}: the log starts at line {first.line} after "
                    + {
                        "tls": "the stream header: the replay opens the stream first",
                        "sasl": "the stream header and features: the replay opens the stream first",
                        "bind": "authentication: the replay logs the client in up to binding",
                        "session": "binding: the replay logs the client in and binds first",
                        "established": "login: the replay begins from an implied login",
                    }[stage]
                )
            if authcid and first_to and not bound:
                client.jid = client.jid or f"{authcid}@{_domain(first_to)}"
            client.jid = client.jid or bound or stream_from
            if name in mechanisms:
                auth[name] = {"mechanism": mechanisms[name], "authcid": authcid}
            if bound and authcid and bound.split("@", 1)[0] != authcid:
                self.note(
                    f"client {name!r}: {mechanisms.get(name)} authenticates as {authcid!r} but "
                    f"the server bound {bound!r}"
                    + (": the password is not used" if password else "")
                )
                password = None
            if client.password is None:
                client.password = password
            if client.password is None:
                self.note(
                    f"client {name!r}: no password in the log: authentication runs on the "
                    "recorded outcome"
                )
        for name, mech in mechanisms.items():
            if not xmppd_offers(mech):
                self.note(
                    f"client {name!r} authenticates with {mech}, which xmppd does not offer: "
                    "the replay runs with the recorded outcome"
                )
        if mechanisms:
            s.header.setdefault("mechanism", next(iter(mechanisms.values())))
            s.header.setdefault("auth", auth)
        s.header.setdefault("starts_at", starts)
        found = list(dict.fromkeys(d for d in domains + late if d))
        s.header.setdefault("domains", found)
        self._mismatched_domains()
        self._misaddressed()
        return s

    def _misaddressed(self) -> None:
        """Stanzas the server addresses to another account than the one it bound."""
        for name, client in self.script.clients.items():
            if not client.jid or "/" not in client.jid:
                continue
            bare = client.jid.split("/", 1)[0]
            for u, c, d in self.units:
                to = u.attrs.get("to", "")
                if c == name and d == "recv" and u.kind == "element" and "@" in to:
                    if to.split("/", 1)[0] != bare:
                        self.note(
                            f"line {u.line}: the server addresses <{u.tag}> to {to!r}, not "
                            f"to the bound JID {client.jid!r}"
                        )

    def _plain(self, u: Unit) -> tuple[str | None, str | None]:
        raw = _b64(u.el.text or "")
        if raw is None:
            self.note(f"line {u.line}: the PLAIN payload is not base64: no password taken")
            return None, None
        parts = raw.split(b"\0")
        if len(parts) != 3:
            self.note(f"line {u.line}: the PLAIN payload is redacted or malformed")
            return None, None
        try:
            return parts[1].decode(), parts[2].decode() or None
        except UnicodeDecodeError:
            return None, None

    def _mismatched_domains(self) -> None:
        prev_to: tuple[int, str] | None = None
        for u, _, d in self.units:
            if u.kind != "stream-open":
                continue
            if d == "send":
                prev_to = (u.line, u.attrs.get("to", ""))
            elif prev_to and u.attrs.get("from") and prev_to[1] and u.attrs["from"] != prev_to[1]:
                self.note(
                    f"line {u.line}: the server answers as {u.attrs['from']!r} a stream "
                    f"addressed to {prev_to[1]!r} (line {prev_to[0]})"
                )
                prev_to = None
