"""XEP-0199: the server answers pings addressed to it or to an account's bare JID."""

from __future__ import annotations

from typing import Any

from lxml import etree

from features.registry import handles_iq
from features.replies import result
from xmpp import ns


@handles_iq("get", ns.PING, to="any")
def ping(iq: etree._Element, data: Any) -> list:
    return [result(iq, data)]
