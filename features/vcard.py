"""XEP-0054: vcard-temp: each account's vCard, set by its owner and readable by anyone."""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

from lxml import etree

from features.addressing import account_of, is_own
from features.registry import handles_iq
from features.replies import error, result
from fsm.core import Query
from storage.accounts import NoSuchAccount
from xmpp.ns import q
from xmpp.stream import serialize

NS = "vcard-temp"
VCARD = q(NS, "vCard")


def empty() -> etree._Element:
    return etree.Element(VCARD, nsmap={None: NS})


# --- get -------------------------------------------------------------------------------------


@handles_iq("get", NS, to="server")
@handles_iq("get", NS, to="account")
def vcard_get(iq: etree._Element, data: Any) -> list:
    account = account_of(iq, data)
    if account is None:
        return [result(iq, data, empty())]  # the server itself keeps no vCard
    load = Query(load_vcard, (account.local, account.domain), partial(vcard_result, iq))
    return [load]


def load_vcard(storage: Any, username: str, domain: str) -> tuple[bool, str | None]:
    """(whether the account exists, its vCard XML or None)."""
    if not storage.accounts.exists(username, domain):
        return False, None
    return True, storage.vcards.get(username, domain)


def vcard_result(iq: etree._Element, loaded: Any, data: Any) -> tuple[Any, list]:
    if isinstance(loaded, Exception):
        return data, [error(iq, data, "internal-server-error")]
    exists, xml = loaded
    if not exists:
        return data, [error(iq, data, "service-unavailable")]  # RFC 6121 §8.5.1
    # An account without a vCard has an empty one (XEP-0054 §3.1 allows either answer).
    vcard = empty() if xml is None else etree.fromstring(xml)
    return data, [result(iq, data, vcard)]


# --- set -------------------------------------------------------------------------------------


@handles_iq("set", NS, to="server")
@handles_iq("set", NS, to="account")
def vcard_set(iq: etree._Element, data: Any) -> list:
    if not is_own(iq, data):
        return [error(iq, data, "forbidden", "only the account itself sets its vCard")]
    vcard = iq[0]
    if vcard.tag != VCARD:
        return [error(iq, data, "bad-request", "the payload of a vcard-temp set is <vCard/>")]
    xml = stored_form(vcard)
    limit = data.features.settings.max_vcard_bytes
    if xml is not None and len(xml.encode()) > limit:
        return [error(iq, data, "not-acceptable", f"the vCard is over {limit} bytes")]
    return [Query(store_vcard, (data.user, data.domain, xml), partial(vcard_stored, iq))]


def stored_form(vcard: etree._Element) -> str | None:
    """The vCard as stored: XML text with only the namespace declarations it uses, or None
    for an empty vCard (setting one deletes the stored vCard)."""
    if len(vcard) == 0 and not (vcard.text or "").strip():
        return None
    vcard = copy.deepcopy(vcard)
    vcard.tail = None
    etree.cleanup_namespaces(vcard)
    return serialize(vcard).decode()


def store_vcard(storage: Any, username: str, domain: str, xml: str | None) -> None:
    storage.vcards.set(username, domain, xml)


def vcard_stored(iq: etree._Element, stored: Any, data: Any) -> tuple[Any, list]:
    if isinstance(stored, NoSuchAccount):  # an anonymous session has no account to keep it
        return data, [error(iq, data, "not-allowed", "no account to store it in")]
    if isinstance(stored, Exception):
        return data, [error(iq, data, "internal-server-error")]
    return data, [result(iq, data)]
