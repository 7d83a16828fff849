"""The session trace format, both ways: escaping bytes into one line, and a tagged-JSON codec for
the values a c2s machine consumes (events, query results, snapshots of its data).

Pure: the writer lives in actors/trace.py, the reader in xmppd/replay/tracefile.py; docs/traces.md
describes the format for people."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

from lxml import etree

MAGIC = "# xmppd trace 1"
REDACTED = "[redacted]"
# Modules whose classes a trace may name: the resolver handed to decode() loads no others.
TRUSTED = ("fsm.", "features.", "storage.", "xmpp.", "routing.")
# Finds the class a trace names ("module:QualName"); xmppd/replay hands one in.
Resolve = Callable[[str], Any]

# --- bytes <-> one line ----------------------------------------------------------------------

_ESCAPE = {b"\\": b"\\\\", b"\n": b"\\n", b"\r": b"\\r"}
_UNESCAPE = re.compile(r"\\(\\|n|r|x[0-9a-fA-F]{2})")


def escape(data: bytes) -> str:
    """Bytes as one line of text: XML stays XML; newlines, CRs and backslashes are escaped and
    bytes that are not UTF-8 become \\xNN."""
    data = data.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    return data.decode("utf-8", "backslashreplace")


def unescape(text: str) -> bytes:
    out = bytearray()
    pos = 0
    for match in _UNESCAPE.finditer(text):
        out += text[pos : match.start()].encode()
        code = match.group(1)
        if code == "\\":
            out += b"\\"
        elif code == "n":
            out += b"\n"
        elif code == "r":
            out += b"\r"
        else:
            out.append(int(code[1:], 16))
        pos = match.end()
    out += text[pos:].encode()
    return bytes(out)


# --- values <-> JSON -------------------------------------------------------------------------


def _path(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def encode(value: Any) -> Any:
    """A JSON-able form of `value`: plain JSON for plain values, tagged objects otherwise."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode()}
    if isinstance(value, etree._Element):
        return {"$xml": etree.tostring(value, encoding="unicode", with_tail=False)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$dc": _path(value), "f": fields}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {"$nt": _path(value), "v": [encode(v) for v in value]}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, frozenset | set):
        items = sorted((encode(v) for v in value), key=json.dumps)
        return {"$frozenset" if isinstance(value, frozenset) else "$set": items}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"$dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, BaseException):
        return {"$exc": _path(value), "args": [encode(a) for a in value.args]}
    return {"$opaque": _path(value)}


class Opaque:
    """Stands for a value the trace could not record (e.g. a running SASL exchange)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<unrecorded {self.path}>"


def _refuse(path: str) -> Any:
    raise ValueError(f"no resolver to rebuild {path}")


def decode(value: Any, resolve: Resolve = _refuse) -> Any:
    """The inverse of encode; raises ValueError for a value it cannot rebuild. `resolve` finds
    the classes the value names."""
    if isinstance(value, list):
        return [decode(v, resolve) for v in value]
    if not isinstance(value, dict):
        return value
    if "$b64" in value:
        return base64.b64decode(value["$b64"])
    if "$xml" in value:
        return etree.fromstring(value["$xml"])
    if "$dc" in value:
        cls = resolve(value["$dc"])
        return cls(**{k: decode(v, resolve) for k, v in value["f"].items()})
    if "$nt" in value:
        return resolve(value["$nt"])(*(decode(v, resolve) for v in value["v"]))
    if "$tuple" in value:
        return tuple(decode(v, resolve) for v in value["$tuple"])
    if "$frozenset" in value:
        return frozenset(_hashable(decode(v, resolve)) for v in value["$frozenset"])
    if "$set" in value:
        return {_hashable(decode(v, resolve)) for v in value["$set"]}
    if "$dict" in value:
        return {_hashable(decode(k, resolve)): decode(v, resolve) for k, v in value["$dict"]}
    if "$exc" in value:
        cls = resolve(value["$exc"])
        return cls(*(decode(a, resolve) for a in value["args"]))
    if "$opaque" in value:
        return Opaque(value["$opaque"])
    return {k: decode(v, resolve) for k, v in value.items()}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def dumps(value: Any) -> str:
    return json.dumps(encode(value), ensure_ascii=False, separators=(",", ":"))


def loads(text: str, resolve: Resolve = _refuse) -> Any:
    return decode(json.loads(text), resolve)


# --- what a trace says about an event --------------------------------------------------------

# Events whose whole content the trace records (the replay feeds them back as they were).
# Parser events (StreamOpen, StreamElement, StreamClose, StreamBroken) are not among them: the
# replay gets them by parsing the recorded input bytes, as the connection did.
PARSER_EVENTS = frozenset(("StreamOpen", "StreamElement", "StreamClose", "StreamBroken"))


def event_line(event: Any, secrets: bool) -> str:
    """`Name` for parser events (with a hint for people), `Name {json}` for the others."""
    name = type(event).__name__
    if name in PARSER_EVENTS:
        if name == "StreamElement":
            return f"{name} {etree.QName(event.element).localname}"
        if name == "StreamBroken":
            return f"{name} {event.condition}"
        return name
    if name == "QueryDone":
        then = getattr(event.then, "func", event.then)
        fields = {"then": f"{then.__module__}:{then.__qualname__}", "result": event.result}
    elif dataclasses.is_dataclass(event):
        fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    else:
        fields = {}
    if not secrets and name in ("CredentialsLoaded", "TLSEstablished"):
        fields = _redact_event(name, fields)
    return f"{name} {dumps(fields)}"


def _redact_event(name: str, fields: dict) -> dict:
    if name == "CredentialsLoaded":
        creds = fields["credentials"]
        return {**fields, "credentials": None if creds is None else REDACTED}
    return {**fields, "channel_bindings": {k: REDACTED for k in fields["channel_bindings"]}}


def redacted(value: Any) -> bool:
    return value == REDACTED


# --- what a transition history shows of an event (xmppctl session ID) ------------------------


def brief(event: Any) -> tuple:
    """The little a history keeps of an event: cheap to take, no secrets. Element events give
    (name, tag, type, mechanism, first child's tag); the others (name, one telling field)."""
    name = type(event).__name__
    element = getattr(event, "element", None)
    if element is None:
        element = getattr(event, "stanza", None)
    if element is not None:
        get = element.get
        if len(element) and (name != "Deliver" or element.tag.endswith("}iq")):
            first = element[0].tag
        else:
            first = None  # (what a delivered message carries is its own business)
        return (name, element.tag, get("type"), get("mechanism"), first)
    if name == "QueryDone":
        then = getattr(event.then, "func", event.then)
        return (name, getattr(then, "__name__", "?"))
    if name == "StreamOpen":
        return (name, event.attrs.get("to"))
    for field in ("condition", "name", "version", "jid", "reason"):
        value = getattr(event, field, None)
        if value:
            return (name, str(value))
    return (name,)


def describe(summary: tuple) -> str:
    """A brief() as people read it: `<auth mechanism='SCRAM-SHA-256'/>`, `<iq type='set'> bind`,
    `timeout ping`."""
    name = summary[0]
    if len(summary) == 5:
        _, tag, kind, mechanism, first = summary
        local = etree.QName(tag).localname if isinstance(tag, str) else "?"
        attrs = "".join(f" {k}='{v}'" for k, v in (("type", kind), ("mechanism", mechanism)) if v)
        child = f" {etree.QName(first).localname}" if isinstance(first, str) else ""
        text = f"<{local}{attrs}/>" if not child else f"<{local}{attrs}>{child}"
        return f"delivered {text}" if name == "Deliver" else text
    if name == "StreamOpen":
        return f"<stream:stream to='{summary[1]}'>" if summary[1] else "<stream:stream>"
    if name == "StreamClose":
        return "</stream:stream>"
    if name == "Timeout":
        return f"timeout {summary[1]}"
    if name == "QueryDone":
        return f"storage answered {summary[1]}"
    return " ".join(summary)
