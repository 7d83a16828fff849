"""XEP-0030 and XEP-0115: what the server and its accounts offer, exactly as the registry wires
it (the server's features from handlers addressed to it, an account's from handlers answering
for accounts), and the server's entity capabilities in the stream features."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from functools import partial
from typing import Any

from lxml import etree

from features.addressing import account_exists, account_of, own
from features.registry import handles_iq
from features.replies import error, result
from fsm.core import Query
from xmpp import ns
from xmpp.ns import q

DISCO_FEATURES = (ns.DISCO_INFO, ns.DISCO_ITEMS)
CAPS_NODE = "https://xmppd.invalid"
# (category, type, xml:lang, name), as XEP-0115 §5.1 orders an identity's parts.
Identity = tuple[str, str, str, str]
SERVER: Identity = ("server", "im", "", "xmppd")
ACCOUNT: Identity = ("account", "registered", "", "")


# --- disco#info ----------------------------------------------------------------------------------


@handles_iq("get", ns.DISCO_INFO, to="server")
@handles_iq("get", ns.DISCO_INFO, to="account")
def disco_info(iq: etree._Element, data: Any) -> list:
    """To the server's domain: the server. To an account's bare JID, or with no 'to' (the
    sender's own account, RFC 6120 §10.3.3): that account, if it exists."""
    account = account_of(iq, data)
    if account is None:
        node = iq[0].get("node")
        # XEP-0115 §6.2: NODE#VER is answered like the server itself; no other node exists.
        if node is not None and node != f"{CAPS_NODE}#{server_ver(data)}":
            return [error(iq, data, "item-not-found")]
        return [result(iq, data, info([SERVER], data.features.disco_features, node))]
    if account == own(data):  # authenticated: no need to ask storage (anonymous has none)
        return account_info(iq, True, data)[1]
    then = partial(account_info, iq)
    return [Query(account_exists, (account.local, account.domain), then)]


def account_info(iq: etree._Element, exists: Any, data: Any) -> tuple[Any, list]:
    if isinstance(exists, Exception):
        return data, [error(iq, data, "internal-server-error")]
    if not exists:
        return data, [error(iq, data, "service-unavailable")]  # RFC 6121 §8.5.1
    if iq[0].get("node") is not None:
        return data, [error(iq, data, "item-not-found")]  # an account has no nodes here
    return data, [result(iq, data, info([ACCOUNT], data.features.account_features))]


def info(
    identities: Iterable[Identity], features: Iterable[str], node: str | None = None
) -> etree._Element:
    query = etree.Element(q(ns.DISCO_INFO, "query"), nsmap={None: ns.DISCO_INFO})
    if node is not None:
        query.set("node", node)
    for category, kind, lang, name in identities:
        identity = etree.SubElement(query, q(ns.DISCO_INFO, "identity"))
        identity.set("category", category)
        identity.set("type", kind)
        if lang:
            identity.set(q(ns.XML, "lang"), lang)
        if name:
            identity.set("name", name)
    for feature in sorted(features):
        etree.SubElement(query, q(ns.DISCO_INFO, "feature"), var=feature)
    return query


# --- disco#items ---------------------------------------------------------------------------------


@handles_iq("get", ns.DISCO_ITEMS, to="server")
@handles_iq("get", ns.DISCO_ITEMS, to="account")
def disco_items(iq: etree._Element, data: Any) -> list:
    """Neither the server nor an account lists items yet."""
    account = account_of(iq, data)
    if account is None or account == own(data):
        return [result(iq, data, _items(iq))]
    then = partial(account_items, iq)
    return [Query(account_exists, (account.local, account.domain), then)]


def account_items(iq: etree._Element, exists: Any, data: Any) -> tuple[Any, list]:
    if isinstance(exists, Exception):
        return data, [error(iq, data, "internal-server-error")]
    if not exists:
        return data, [error(iq, data, "service-unavailable")]
    return data, [result(iq, data, _items(iq))]


def _items(iq: etree._Element) -> etree._Element:
    query = etree.Element(q(ns.DISCO_ITEMS, "query"), nsmap={None: ns.DISCO_ITEMS})
    if iq[0].get("node") is not None:
        query.set("node", iq[0].get("node"))
    return query


# --- XEP-0115 entity capabilities ----------------------------------------------------------------


def stream_features(data: Any) -> list[etree._Element]:
    """XEP-0115 §6.3: the server's caps, offered with the features after authentication."""
    caps = etree.Element(q(ns.CAPS, "c"), nsmap={None: ns.CAPS})
    caps.set("hash", "sha-1")
    caps.set("node", CAPS_NODE)
    caps.set("ver", server_ver(data))
    return [caps]


def server_ver(data: Any) -> str:
    return caps_ver([SERVER], data.features.disco_features)


def caps_ver(identities: Iterable[Identity], features: Iterable[str]) -> str:
    """XEP-0115 §5.1 verification string (no data forms): identities sorted by category, type,
    lang and name, each 'category/type/lang/name<'; features sorted, each 'feature<'; the
    SHA-1 of that, in Base64."""
    text = "".join("/".join(identity) + "<" for identity in sorted(identities))
    text += "".join(f"{feature}<" for feature in sorted(features, key=str.encode))
    digest = hashlib.sha1(text.encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()
