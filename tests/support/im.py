"""Helpers for the RFC 6121 end-to-end tests: slixmpp clients that keep every stanza they
receive (slixmpp's own roster cache hides what the server actually sent), and raw roster IQs."""

from __future__ import annotations

import asyncio
import copy
import itertools
import socket
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.server import Server
from tests.support.xmpp_client import Client, login

CLIENT = "jabber:client"
ROSTER = "jabber:iq:roster"
DELAY = "urn:xmpp:delay"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

Predicate = Callable[[ET.Element], bool]
_iq_ids = itertools.count(1)


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


PRESENCE = q(CLIENT, "presence")
MESSAGE = q(CLIENT, "message")
IQ = q(CLIENT, "iq")


class Inbox:
    """Every stanza a client received, in order. `expect` claims the first unclaimed stanza
    that matches, so two expectations never count the same stanza."""

    def __init__(self, client: Client) -> None:
        self.stanzas: list[ET.Element] = []
        self._claimed: set[int] = set()
        self._arrived = asyncio.Event()
        client.add_filter("in", self._record)

    def _record(self, stanza):
        if stanza.xml.tag in (PRESENCE, MESSAGE, IQ):
            self.stanzas.append(copy.deepcopy(stanza.xml))
            self._arrived.set()
        return stanza

    def unclaimed(self, predicate: Predicate = lambda _el: True) -> list[ET.Element]:
        return [el for i, el in enumerate(self.stanzas) if i not in self._claimed and predicate(el)]

    def claim_all(self) -> None:
        """Forget what came so far: later expectations look at newer stanzas only."""
        self._claimed.update(range(len(self.stanzas)))

    async def expect(self, predicate: Predicate, what: str = "", timeout: float = 10) -> ET.Element:
        deadline = time.monotonic() + timeout
        while True:
            for i, el in enumerate(self.stanzas):
                if i not in self._claimed and predicate(el):
                    self._claimed.add(i)
                    return el
            left = deadline - time.monotonic()
            if left <= 0:
                got = "\n".join(ET.tostring(el, encoding="unicode") for el in self.unclaimed())
                raise AssertionError(
                    f"never received {what or predicate.__name__}; unclaimed:\n{got}"
                )
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                pass

    async def expect_none(self, predicate: Predicate, what: str = "", settle: float = 0.5):
        """Nothing matching arrives. Only used after a barrier made what would have come
        arrive first, or with a generous settle for what has no barrier."""
        await asyncio.sleep(settle)
        found = self.unclaimed(predicate)
        assert not found, f"unexpected {what}: " + ET.tostring(found[0], encoding="unicode")


# --- predicates --------------------------------------------------------------------------------


def presence(kind: str = "available", frm: str | None = None, status: str | None = None):
    """A presence of `kind` ('available' for no type) from `frm` (full or bare JID)."""

    def match(el: ET.Element) -> bool:
        return (
            el.tag == PRESENCE
            and (el.get("type") or "available") == kind
            and (frm is None or el.get("from") == frm)
            and (status is None or el.findtext(q(CLIENT, "status")) == status)
        )

    match.__name__ = f"presence({kind}, from={frm}, status={status})"
    return match


def push(jid: str | None = None, subscription: str | None = None):
    """A roster push (an IQ set with a roster query) about `jid`."""

    def match(el: ET.Element) -> bool:
        if el.tag != IQ or el.get("type") != "set":
            return False
        item = el.find(f"{q(ROSTER, 'query')}/{q(ROSTER, 'item')}")
        return (
            item is not None
            and (jid is None or item.get("jid") == jid)
            and (subscription is None or item.get("subscription") == subscription)
        )

    match.__name__ = f"push({jid}, subscription={subscription})"
    return match


def message(body: str | None = None, kind: str | None = None):
    def match(el: ET.Element) -> bool:
        return (
            el.tag == MESSAGE
            and (body is None or el.findtext(q(CLIENT, "body")) == body)
            and (kind is None or (el.get("type") or "normal") == kind)
        )

    match.__name__ = f"message({body}, type={kind})"
    return match


def error_condition(el: ET.Element) -> str | None:
    error = el.find(q(CLIENT, "error"))
    if error is None:
        return None
    for child in error:
        if child.tag.startswith(f"{{{STANZAS}}}") and child.tag != q(STANZAS, "text"):
            return child.tag.split("}", 1)[1]
    return None


# --- roster IQs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    jid: str
    subscription: str
    ask: str | None
    approved: bool
    name: str | None
    groups: tuple[str, ...]


def items_of(query: ET.Element) -> dict[str, Item]:
    found = {}
    for item in query.findall(q(ROSTER, "item")):
        found[item.get("jid")] = Item(
            jid=item.get("jid"),
            subscription=item.get("subscription", "none"),
            ask=item.get("ask"),
            approved=item.get("approved") in ("true", "1"),
            name=item.get("name"),
            groups=tuple(g.text or "" for g in item.findall(q(ROSTER, "group"))),
        )
    return found


async def iq(client: Client, kind: str, payload: str, to: str | None = None) -> ET.Element:
    """Send an IQ with a raw payload; the answer (result or error) as XML. Sent and matched
    here rather than by slixmpp, which cannot parse every RFC 6120 error condition (it lacks
    policy-violation) and then never resolves the request."""
    iq_id = f"im{next(_iq_ids)}"
    address = f" to='{to}'" if to else ""
    send(client, f"<iq type='{kind}' id='{iq_id}'{address}>{payload}</iq>")

    def answer(el: ET.Element) -> bool:
        return el.tag == IQ and el.get("id") == iq_id and el.get("type") in ("result", "error")

    return await client.inbox.expect(answer, f"the answer to IQ {iq_id}")


async def roster(client: Client, ver: str | None = None) -> tuple[str | None, dict[str, Item]]:
    """The roster as the server holds it: (version, items). A result with no query (the
    client's version is current, RFC 6121 §2.6.3) gives (None, {})."""
    attr = f" ver='{ver}'" if ver is not None else ""
    answer = await iq(client, "get", f"<query xmlns='{ROSTER}'{attr}/>")
    assert answer.get("type") == "result", ET.tostring(answer, encoding="unicode")
    query = answer.find(q(ROSTER, "query"))
    if query is None:
        return None, {}
    return query.get("ver"), items_of(query)


def item_xml(jid: str, name: str | None = None, groups=(), **attrs: str) -> str:
    extra = "".join(f" {k}='{v}'" for k, v in attrs.items())
    named = f" name='{name}'" if name is not None else ""
    inner = "".join(f"<group>{g}</group>" for g in groups)
    return f"<item jid='{jid}'{named}{extra}>{inner}</item>"


async def set_item(client: Client, jid: str, name: str | None = None, groups=(), **attrs):
    payload = f"<query xmlns='{ROSTER}'>{item_xml(jid, name, groups, **attrs)}</query>"
    return await iq(client, "set", payload)


async def remove_item(client: Client, jid: str) -> ET.Element:
    return await set_item(client, jid, subscription="remove")


# --- clients -------------------------------------------------------------------------------------


async def online(
    server: Server,
    user: str,
    resource: str,
    *,
    get_roster: bool = True,
    available: bool = True,
    priority: int | None = None,
    status: str | None = None,
) -> Client:
    """Log in with every slixmpp automatism about subscriptions off, record what arrives,
    fetch the roster (so roster pushes come) and send initial presence, unless told not to."""
    client = await login(server, user, resource=resource)
    client.auto_authorize = None  # answer subscription requests only when the test says so
    client.auto_subscribe = False
    client.inbox = Inbox(client)
    if get_roster:
        await roster(client)
    if available:
        send_presence(client, priority=priority, status=status)
    return client


def send(client: Client, xml: str) -> None:
    client.send_raw(xml)


def send_presence(
    client: Client,
    kind: str | None = None,
    to: str | None = None,
    priority: int | None = None,
    status: str | None = None,
    show: str | None = None,
) -> None:
    attrs = (f" type='{kind}'" if kind else "") + (f" to='{to}'" if to else "")
    inner = (f"<show>{show}</show>" if show else "") + (
        f"<status>{status}</status>" if status else ""
    )
    inner += f"<priority>{priority}</priority>" if priority is not None else ""
    send(client, f"<presence{attrs}>{inner}</presence>")


def bare(client: Client) -> str:
    return client.boundjid.bare


def full(client: Client) -> str:
    return client.boundjid.full


async def befriend(user: Client, contact: Client) -> None:
    """`user` gets a 'to' subscription to `contact` (contact approves a request), both online
    and interested in their rosters. Leaves both inboxes with nothing unclaimed of it."""
    send_presence(user, "subscribe", to=bare(contact))
    await contact.inbox.expect(presence("subscribe", bare(user)), "the subscription request")
    send_presence(contact, "subscribed", to=bare(user))
    await user.inbox.expect(presence("subscribed", bare(contact)), "the approval")
    await user.inbox.expect(push(bare(contact)), "the push of the approval")
    await contact.inbox.expect(push(bare(user)), "the push of the new 'from'")


async def befriend_both(a: Client, b: Client) -> None:
    """Subscriptions both ways ('both' on each side), and each side has seen the other's
    current presence (when available) before the inboxes are cleared."""
    await befriend(a, b)
    await befriend(b, a)
    _, items = await roster(a)
    assert items[bare(b)].subscription == "both"
    _, items = await roster(b)
    assert items[bare(a)].subscription == "both"
    await asyncio.sleep(0.3)  # late presence of the handshake, then a clean slate
    a.inbox.claim_all()
    b.inbox.claim_all()


def kill(client: Client) -> None:
    """Drop the client's TCP connection with a reset, without a word to the server."""
    sock = client.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.abort()


async def close_all(*clients: Client) -> None:
    for client in clients:
        await client.close()
