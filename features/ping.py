"""XEP-0199: the server answers pings addressed to it or to an account's bare JID."""

from __future__ import annotations

from functools import partial
from typing import Any

from lxml import etree

from features.addressing import account_exists, account_of, own
from features.registry import handles_iq
from features.replies import error, result
from fsm.core import Query
from xmpp import ns


@handles_iq("get", ns.PING, to="server")
def ping(iq: etree._Element, data: Any) -> list:
    return [result(iq, data)]


@handles_iq("get", ns.PING, to="account")
def ping_account(iq: etree._Element, data: Any) -> list:
    """For an account, if there is one: RFC 6121 §8.5.1 wants service-unavailable for a JID
    that is no account."""
    account = account_of(iq, data)
    if account == own(data):
        return [result(iq, data)]
    then = partial(pinged, iq)
    return [Query(account_exists, (account.local, account.domain), then)]


def pinged(iq: etree._Element, exists: Any, data: Any) -> tuple[Any, list]:
    if isinstance(exists, Exception):
        return data, [error(iq, data, "internal-server-error")]
    return data, [result(iq, data) if exists else error(iq, data, "service-unavailable")]
