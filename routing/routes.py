"""The route table (Openfire's serversCache): which node owns an address other than a client
session (components, rooms, services) and which node holds the outgoing stream to a remote
domain. The single-node table knows neither: both come with the cluster and S2S issues."""

from __future__ import annotations

from typing import Protocol

from lxml import etree


class RouteTable(Protocol):
    def node_of(self, address: str) -> str | None:
        """The node that owns a service address (component, room), or None."""

    def remote_route(self, domain: str) -> str | None:
        """The node holding the outgoing server-to-server stream to `domain`, or None."""

    def relay(self, node: str, stanza: etree._Element) -> None:
        """Hand `stanza` to another node of the cluster."""


class SingleNodeRoutes:
    """One node, no federation: no address is another node's, no remote domain is reachable."""

    def node_of(self, address: str) -> str | None:
        return None

    def remote_route(self, domain: str) -> str | None:
        return None

    def relay(self, node: str, stanza: etree._Element) -> None:
        raise NotImplementedError(
            f"relaying to node {node!r} needs the Redis cluster, which this node does not run"
        )
