"""Stream errors (RFC 6120 §4.9) and stanza errors (§8.3) as XML, and reply builders."""

from __future__ import annotations

import copy

from lxml import etree

from . import ns

# RFC 6120 §4.9.3
STREAM_CONDITIONS = frozenset(
    {
        "bad-format",
        "bad-namespace-prefix",
        "conflict",
        "connection-timeout",
        "host-gone",
        "host-unknown",
        "improper-addressing",
        "internal-server-error",
        "invalid-from",
        "invalid-namespace",
        "invalid-xml",
        "not-authorized",
        "not-well-formed",
        "policy-violation",
        "remote-connection-failed",
        "reset",
        "resource-constraint",
        "restricted-xml",
        "see-other-host",
        "system-shutdown",
        "undefined-condition",
        "unsupported-encoding",
        "unsupported-feature",
        "unsupported-stanza-type",
        "unsupported-version",
    }
)

# RFC 6120 §8.3.3: each condition with the error type the RFC gives it.
STANZA_CONDITIONS: dict[str, str] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}
ERROR_TYPES = frozenset({"auth", "cancel", "continue", "modify", "wait"})

_XML_LANG = f"{{{ns.XML}}}lang"


def stream_error(condition: str, text: str | None = None) -> etree._Element:
    """`<stream:error><condition xmlns=streams/><text xml:lang='en'>..</text></stream:error>`."""
    if condition not in STREAM_CONDITIONS:
        raise ValueError(f"unknown stream error condition {condition!r}")
    el = etree.Element(ns.q(ns.STREAM, "error"), nsmap={"stream": ns.STREAM})
    etree.SubElement(el, ns.q(ns.STREAMS, condition), nsmap={None: ns.STREAMS})
    if text:
        _text(el, ns.STREAMS, text)
    return el


class StanzaError(Exception):
    """A stanza error named after its RFC 6120 §8.3.3 condition; raise it, then `element()`."""

    def __init__(self, condition: str, text: str | None = None, type: str | None = None) -> None:
        if condition not in STANZA_CONDITIONS:
            raise ValueError(f"unknown stanza error condition {condition!r}")
        if type is not None and type not in ERROR_TYPES:
            raise ValueError(f"unknown stanza error type {type!r}")
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.type = type or STANZA_CONDITIONS[condition]
        self.text = text

    def element(self, ns: str = ns.CLIENT) -> etree._Element:
        """The `<error type=...>` child, in the stanza namespace `ns`."""
        el = etree.Element(f"{{{ns}}}error", type=self.type, nsmap={None: ns})
        etree.SubElement(el, _stanzas(self.condition), nsmap={None: _STANZAS})
        if self.text:
            _text(el, _STANZAS, self.text)
        return el


def error_reply(
    stanza: etree._Element, condition: str, text: str | None = None, type: str | None = None
) -> etree._Element:
    """The error reply to `stanza` (RFC 6120 §8.3.1): same tag and id, to/from swapped,
    type='error', an `<error/>` child; an IQ loses its payload, a message or presence keeps
    a copy of its children. Never answer an error with an error: ValueError."""
    if stanza.get("type") == "error":
        raise ValueError("never reply to an error stanza with an error")
    error = StanzaError(condition, text, type)
    reply = _reply(stanza, "error")
    if etree.QName(stanza).localname != "iq":
        for child in stanza:
            reply.append(copy.deepcopy(child))
    reply.append(error.element(etree.QName(stanza).namespace or ns.CLIENT))
    return reply


def iq_result(iq: etree._Element, *children: etree._Element) -> etree._Element:
    """`<iq type='result'>` answering `iq`: same id, to/from swapped, with `children`."""
    reply = _reply(iq, "result")
    reply.extend(children)
    return reply


def _reply(stanza: etree._Element, type: str) -> etree._Element:
    namespace = etree.QName(stanza).namespace
    reply = etree.Element(stanza.tag, nsmap={None: namespace} if namespace else None)
    sender, recipient = stanza.get("from"), stanza.get("to")
    if sender is not None:
        reply.set("to", sender)
    if recipient is not None:
        reply.set("from", recipient)
    reply.set("type", type)
    stanza_id = stanza.get("id")
    if stanza_id is not None:
        reply.set("id", stanza_id)
    return reply


_STANZAS = ns.STANZAS


def _stanzas(condition: str) -> str:
    return ns.q(_STANZAS, condition)


def _text(parent: etree._Element, namespace: str, text: str) -> None:
    el = etree.SubElement(parent, ns.q(namespace, "text"), nsmap={None: namespace})
    el.set(_XML_LANG, "en")
    el.text = text
