"""XEP-0012: last activity: the server's uptime, and when an account last logged out."""

from __future__ import annotations

from functools import partial
from typing import Any

from lxml import etree

from features.addressing import account_of, is_own, own
from features.registry import handles_iq
from features.replies import error, result
from fsm.core import Query
from xmpp.ns import q

NS = "jabber:iq:last"


def query(seconds: float, status: str = "") -> etree._Element:
    answer = etree.Element(q(NS, "query"), nsmap={None: NS}, seconds=str(max(0, int(seconds))))
    if status:
        answer.text = status
    return answer


@handles_iq("get", NS, to="server")
@handles_iq("get", NS, to="account")
def last_activity(iq: etree._Element, data: Any) -> list:
    """To the server's domain: its uptime (XEP-0012 §5). To an account's bare JID, or with no
    'to' (the sender's own account, RFC 6120 §10.3.3): the account's last logout (§4)."""
    account = account_of(iq, data)
    if account is None:
        return [result(iq, data, query(data.env.clock() - data.features.settings.started))]
    args = (account.local, account.domain, str(own(data)))
    return [Query(load_last, args, partial(last_result, iq))]


def load_last(
    storage: Any, username: str, domain: str, asker: str
) -> tuple[bool, str | None, tuple[float, str] | None]:
    """(whether the account exists, the subscription of its roster item for the asker, its
    last logout (stamp, status) or None)."""
    if not storage.accounts.exists(username, domain):
        return False, None, None
    item = storage.rosters.get(username, domain, asker)
    return True, item.subscription if item else None, storage.last_activity.get(username, domain)


def last_result(iq: etree._Element, loaded: Any, data: Any) -> tuple[Any, list]:
    if isinstance(loaded, Exception):
        return data, [error(iq, data, "internal-server-error")]
    exists, subscription, last = loaded
    if not exists:
        return data, [error(iq, data, "service-unavailable")]  # RFC 6121 §8.5.1
    if not is_own(iq, data) and subscription not in ("from", "both"):
        # §4: only who may see the account's presence may know when it left.
        return data, [error(iq, data, "forbidden")]
    if last is None:
        return data, [error(iq, data, "item-not-found", "no logout recorded")]
    # As Prosody does, the last unavailable presence is told even while another resource is
    # online (ejabberd answers 0 seconds then): the stored stamp is the one fact we have.
    stamp, status = last
    return data, [result(iq, data, query(data.env.clock() - stamp, status))]
