"""XEP-0202: the server's time, from the session's clock, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lxml import etree

from features.registry import handles_iq
from features.replies import result
from xmpp.ns import q

NS = "urn:xmpp:time"


@handles_iq("get", NS, to="server")
def entity_time(iq: etree._Element, data: Any) -> list:
    answer = etree.Element(q(NS, "time"), nsmap={None: NS})
    # The server tells UTC and offset zero: its local zone is nobody's business.
    etree.SubElement(answer, q(NS, "tzo")).text = "+00:00"
    etree.SubElement(answer, q(NS, "utc")).text = utc_stamp(data.env.clock())
    return [result(iq, data, answer)]


def utc_stamp(seconds: float) -> str:
    """XEP-0082 DateTime in UTC with milliseconds: 2006-12-19T17:58:35.123Z."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
