"""Which account an IQ answered by the server is about, for features that act on accounts."""

from __future__ import annotations

from typing import Any

from lxml import etree

from xmpp.jid import JID


def own(data: Any) -> JID:
    """The sender's bare JID (known from authentication on, before a resource is bound)."""
    return JID(data.user, data.domain, None)


def account_of(iq: etree._Element, data: Any) -> JID | None:
    """The bare JID of the account the IQ is about: the sender's own when it has no 'to'
    (RFC 6120 §10.3.3), the 'to' when that is a bare JID with a localpart, else None (the IQ
    is for the server). The FSM has already refused a malformed 'to'."""
    to = iq.get("to")
    if to is None:
        return own(data)
    jid = JID.parse(to)
    return jid.bare if jid.local is not None else None


def is_own(iq: etree._Element, data: Any) -> bool:
    """Addressed to the sender's own account: no 'to', or its own bare JID."""
    return account_of(iq, data) == own(data)


def account_exists(storage: Any, username: str, domain: str) -> bool:
    """A storage query (run on the thread pool): whether the account exists."""
    return storage.accounts.exists(username, domain)
