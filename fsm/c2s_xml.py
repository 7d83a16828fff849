"""The XML a c2s machine writes: stream features, SASL nonzas, bind and ping IQs."""

from __future__ import annotations

import base64
import binascii

from lxml import etree

from xmpp import ns
from xmpp.ns import q

E = etree.Element
SUB = etree.SubElement


def starttls_features(required: bool) -> etree._Element:
    starttls = E(q(ns.TLS, "starttls"), nsmap={None: ns.TLS})
    if required:
        SUB(starttls, q(ns.TLS, "required"))
    return starttls


def mechanisms_feature(names: list[str]) -> etree._Element:
    mechanisms = E(q(ns.SASL, "mechanisms"), nsmap={None: ns.SASL})
    for name in names:
        SUB(mechanisms, q(ns.SASL, "mechanism")).text = name
    return mechanisms


def channel_binding_feature(types: list[str]) -> etree._Element:
    """XEP-0440: which channel-binding types the server supports."""
    cb = E(q(ns.SASL_CB, "sasl-channel-binding"), nsmap={None: ns.SASL_CB})
    for cb_type in types:
        SUB(cb, q(ns.SASL_CB, "channel-binding"), type=cb_type)
    return cb


def bind_feature() -> etree._Element:
    return E(q(ns.BIND, "bind"), nsmap={None: ns.BIND})


def session_feature() -> etree._Element:
    """RFC 3921 session establishment, advertised as optional (RFC 6121 Appendix E)."""
    session = E(q(ns.SESSION, "session"), nsmap={None: ns.SESSION})
    SUB(session, q(ns.SESSION, "optional"))
    return session


def features(children: list[etree._Element]) -> etree._Element:
    element = E(q(ns.STREAM, "features"), nsmap={"stream": ns.STREAM})
    element.extend(children)
    return element


def proceed() -> etree._Element:
    return E(q(ns.TLS, "proceed"), nsmap={None: ns.TLS})


def tls_failure() -> etree._Element:
    return E(q(ns.TLS, "failure"), nsmap={None: ns.TLS})


def _sasl(name: str, data: bytes | None) -> etree._Element:
    element = E(q(ns.SASL, name), nsmap={None: ns.SASL})
    if data is not None:
        element.text = base64.b64encode(data).decode() if data else "="
    return element


def challenge(data: bytes) -> etree._Element:
    return _sasl("challenge", data)


def success(data: bytes | None) -> etree._Element:
    return _sasl("success", data)


def sasl_failure(condition: str, text: str | None = None) -> etree._Element:
    failure = _sasl("failure", None)
    SUB(failure, q(ns.SASL, condition))
    if text:
        SUB(failure, q(ns.SASL, "text")).text = text
    return failure


class BadEncoding(ValueError):
    """SASL payload that is not base64 (RFC 6120 §6.4.2: incorrect-encoding)."""


def sasl_payload(element: etree._Element) -> bytes | None:
    """Decode the base64 text of <auth/> or <response/>: no text is no initial response
    (None), '=' is an empty one (RFC 6120 §6.4.2)."""
    text = (element.text or "").strip()
    if not text:
        return None
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadEncoding(str(exc)) from exc


def bind_result(iq: etree._Element, jid: str) -> etree._Element:
    result = E(q(ns.CLIENT, "iq"), type="result", nsmap={None: ns.CLIENT})
    if iq.get("id") is not None:
        result.set("id", iq.get("id"))
    bind = SUB(result, q(ns.BIND, "bind"), nsmap={None: ns.BIND})
    SUB(bind, q(ns.BIND, "jid")).text = jid
    return result


def empty_result(iq: etree._Element, to: str | None = None) -> etree._Element:
    result = E(q(ns.CLIENT, "iq"), type="result", nsmap={None: ns.CLIENT})
    if iq.get("id") is not None:
        result.set("id", iq.get("id"))
    if to:
        result.set("to", to)
    return result


def ping(iq_id: str, to: str, sender: str) -> etree._Element:
    iq = E(q(ns.CLIENT, "iq"), type="get", id=iq_id, to=to, nsmap={None: ns.CLIENT})
    iq.set("from", sender)
    SUB(iq, q(ns.PING, "ping"), nsmap={None: ns.PING})
    return iq
