"""The route table (Openfire's serversCache): which node owns an address other than a client
session (components, rooms, services) and which node holds the outgoing stream to a remote
domain. The single-node table knows neither: both come with the cluster and S2S issues."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from lxml import etree

if TYPE_CHECKING:
    from routing.sessions import SessionEntry


class RouteTable(Protocol):
    def node_of(self, address: str) -> str | None:
        """The node that owns a service address (component, room), or None."""

    def remote_route(self, domain: str) -> str | None:
        """The node holding the outgoing server-to-server stream to `domain`, or None."""

    def relay(self, node: str, stanza: etree._Element) -> None:
        """Hand `stanza` to another node of the cluster, which routes it."""

    def relay_session(self, entry: SessionEntry, stanza: etree._Element) -> None:
        """Hand `stanza` to the session `entry` names on another node; if it is gone there,
        that node routes the stanza again (another resource, offline storage or a bounce)."""

    def tell(self, node: str, address: str, event: str, args: tuple[Any, ...]) -> None:
        """Give the session at (node, address) the event named `event` (SessionReplaced,
        Kick) with `args`."""


class SingleNodeRoutes:
    """One node, no federation: no address is another node's, no remote domain is reachable.
    A lone node's session manager names no other node, so `relay`, `relay_session` and `tell`
    are never reached; if a bug made them so, they say what would be needed, not drop the
    stanza. A [cluster] table wires cluster.routes.ClusterRoutes instead."""

    def node_of(self, address: str) -> str | None:
        return None

    def remote_route(self, domain: str) -> str | None:
        return None

    def relay(self, node: str, stanza: etree._Element) -> None:
        raise NotImplementedError(
            f"relaying to node {node!r} needs the Redis cluster, which this node does not run"
        )

    def relay_session(self, entry: SessionEntry, stanza: etree._Element) -> None:
        self.relay(entry.node, stanza)

    def tell(self, node: str, address: str, event: str, args: tuple[Any, ...]) -> None:
        raise NotImplementedError(
            f"telling a session on node {node!r} needs the Redis cluster ([cluster] in the "
            "configuration), which this node does not run"
        )
