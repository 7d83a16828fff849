"""XEP-0160: messages for an account with no available resource are kept, stamped (XEP-0203),
and handed over at its next initial presence; RFC 6121 §8.5.2 says what else happens."""

from __future__ import annotations

import logging
import time
from typing import Any

from lxml import etree

from features.hooks import HookResult, ServerContext, Stop, hook
from fsm.core import Route, Work
from xmpp import ns
from xmpp.errors import error_reply
from xmpp.jid import JID, JIDMalformed
from xmpp.ns import q
from xmpp.stream import serialize

log = logging.getLogger("xmppd.offline")

DELAY = "urn:xmpp:delay"
HINTS = "urn:xmpp:hints"
DISCO_FEATURES = ("msgoffline",)
BODY = q(ns.CLIENT, "body")


def delay(domain: str, stamp: float, reason: str | None = None) -> etree._Element:
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1e3):03d}Z"
    element = etree.Element(q(DELAY, "delay"), nsmap={None: DELAY}, stamp=when)
    element.set("from", domain)
    if reason:
        element.text = reason
    return element


def storable(message: etree._Element) -> bool:
    """Chat and normal messages with a body, unless hinted otherwise (XEP-0334)."""
    if message.find(q(HINTS, "no-store")) is not None:
        return False
    if message.find(q(HINTS, "no-permanent-store")) is not None:
        return False
    if message.find(q(HINTS, "store")) is not None:
        return True
    return message.find(BODY) is not None


@hook("undeliverable_message")
def undeliverable_message(message: etree._Element, context: ServerContext) -> HookResult:
    """A message to a local account that no session can take: kept on the account's lane."""
    try:
        user = JID.parse(message.get("to") or "").bare
    except JIDMalformed:
        return Stop()
    limit = context.settings.max_offline_messages
    return Stop([Work(str(user), store_offline, (message, limit))])


def store_offline(storage: Any, message: etree._Element, limit: int) -> list:
    """On the account's lane: keep the message, or bounce it (no such account, storage full,
    the database unreachable: the sender must hear that it was not kept)."""
    try:
        return _store(storage, message, limit)
    except Exception as exc:  # noqa: BLE001 - whatever the database raised, nothing is lost silently
        log.error("offline storage failed (%s); bouncing the message to its sender", exc)
        return _bounce(message, "internal-server-error",
                       "the recipient is offline and the message could not be stored")  # fmt: skip


def _store(storage: Any, message: etree._Element, limit: int) -> list:
    user = JID.parse(message.get("to") or "").bare
    kind = message.get("type") or "normal"
    if not storage.accounts.exists(user.local, user.domain):
        return _bounce(message, "service-unavailable")  # RFC 6121 §8.5.1
    if kind not in ("normal", "chat"):
        return []  # headline and error messages to nobody are dropped (§8.5.2.2)
    if not storable(message):
        return []  # chat states and receipts only matter to a session that is there
    stamp = delay(user.domain, time.time(), "Offline Storage")
    message.append(stamp)
    try:
        stored = storage.offline.push(user.local, user.domain, serialize(message).decode(), limit)
    finally:
        message.remove(stamp)
    if stored:
        return []
    return _bounce(message, "service-unavailable", "the recipient's offline storage is full")


def _bounce(message: etree._Element, condition: str, text: str | None = None) -> list:
    if message.get("type") == "error":
        return []
    return [Route(error_reply(message, condition, text))]
