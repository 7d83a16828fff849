"""XEP-0049: private XML storage: elements an account keeps on the server for itself only."""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

from lxml import etree

from features.addressing import is_own
from features.registry import handles_iq
from features.replies import error, result
from fsm.core import Query
from storage.accounts import NoSuchAccount
from xmpp.ns import q
from xmpp.stream import serialize

NS = "jabber:iq:private"
QUERY = q(NS, "query")
# XEP-0049 §2.3: namespaces reserved in Jabber; refusing them is optional, and we do.
RESERVED_PREFIXES = ("jabber:", "http://jabber.org/")
RESERVED = frozenset({"vcard-temp"})
MAX_KEY_BYTES = 1024  # a name and namespace longer than this is abuse (and too long to index)


def key(tag: str) -> str:
    """The storage key of an element: 'localname namespace'."""
    name = etree.QName(tag)
    return f"{name.localname} {name.namespace or ''}"


def problem(element: etree._Element) -> str | None:
    """Why the element may not be stored or asked for, or None."""
    namespace = etree.QName(element).namespace
    if not namespace:
        return "the element needs a namespace of its own"
    if namespace in RESERVED or namespace.startswith(RESERVED_PREFIXES):
        return f"the namespace {namespace} is reserved"
    if len(key(element.tag).encode()) > MAX_KEY_BYTES:
        return f"the element's name and namespace are over {MAX_KEY_BYTES} bytes"
    return None


def _query(*children: etree._Element) -> etree._Element:
    query = etree.Element(QUERY, nsmap={None: NS})
    query.extend(children)
    return query


# --- get -------------------------------------------------------------------------------------


@handles_iq("get", NS, to="server")
@handles_iq("get", NS, to="account")
def private_get(iq: etree._Element, data: Any) -> list:
    if not is_own(iq, data):
        return [error(iq, data, "forbidden", "private data belongs to its owner only")]
    asked = list(iq[0])
    if not asked:
        return [error(iq, data, "not-acceptable", "name the element to get")]  # XEP-0049 §2.3
    if len(asked) > 1:
        return [error(iq, data, "bad-request", "get one element at a time")]
    why = problem(asked[0])
    if why:
        return [error(iq, data, "not-acceptable", why)]
    tag = asked[0].tag
    load = Query(load_private, (data.user, data.domain, key(tag)), partial(private_result, iq, tag))
    return [load]


def load_private(storage: Any, username: str, domain: str, name: str) -> str | None:
    return storage.private.get(username, domain, name)


def private_result(iq: etree._Element, tag: str, loaded: Any, data: Any) -> tuple[Any, list]:
    if isinstance(loaded, Exception):
        return data, [error(iq, data, "internal-server-error")]
    # Nothing stored: the empty element that was asked for.
    name = etree.QName(tag)
    element = (
        etree.Element(tag, nsmap={None: name.namespace})
        if loaded is None
        else etree.fromstring(loaded)
    )
    return data, [result(iq, data, _query(element))]


# --- set -------------------------------------------------------------------------------------


@handles_iq("set", NS, to="server")
@handles_iq("set", NS, to="account")
def private_set(iq: etree._Element, data: Any) -> list:
    if not is_own(iq, data):
        return [error(iq, data, "forbidden", "private data belongs to its owner only")]
    given = list(iq[0])
    if not given:
        return [error(iq, data, "not-acceptable", "nothing to store")]  # XEP-0049 §2.3
    for element in given:
        why = problem(element)
        if why:
            return [error(iq, data, "not-acceptable", why)]
    keys = [key(element.tag) for element in given]
    if len(set(keys)) != len(keys):
        return [error(iq, data, "bad-request", "the same element is given twice")]
    limit = data.features.settings.max_private_bytes
    # A set MAY carry several elements (XEP-0049 §2.3): each is stored under its own key.
    entries = tuple((k, _stored_form(element)) for k, element in zip(keys, given, strict=True))
    if any(len(xml.encode()) > limit for _, xml in entries):
        return [error(iq, data, "not-acceptable", f"an element is over {limit} bytes")]
    store = Query(store_private, (data.user, data.domain, entries), partial(private_stored, iq))
    return [store]


def _stored_form(element: etree._Element) -> str:
    element = copy.deepcopy(element)
    element.tail = None
    etree.cleanup_namespaces(element)
    return serialize(element).decode()


def store_private(
    storage: Any, username: str, domain: str, entries: tuple[tuple[str, str], ...]
) -> None:
    for name, xml in entries:
        storage.private.set(username, domain, name, xml)


def private_stored(iq: etree._Element, stored: Any, data: Any) -> tuple[Any, list]:
    if isinstance(stored, NoSuchAccount):  # an anonymous session has no account to keep it
        return data, [error(iq, data, "not-allowed", "no account to store it in")]
    if isinstance(stored, Exception):
        return data, [error(iq, data, "internal-server-error")]
    return data, [result(iq, data)]
