"""The route table of a clustered node (routing.routes.RouteTable), in the shape of Openfire's
serversCache: which node owns a service address or the outgoing stream to a remote domain, and
how a stanza reaches another node."""

from __future__ import annotations

from typing import Any

from lxml import etree

from cluster import keys
from cluster.connect import script
from cluster.relay import MAX_HOPS
from routing.sessions import SessionEntry

# Release a route only if this node holds it (compare-and-delete, as Openfire learned: OF-3318).
RELEASE_ROUTE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


class ClusterRoutes:
    """The route table (routing.routes.RouteTable) of a clustered node, in the shape of
    Openfire's serversCache: address -> owning node for services and components, and "s2s:" +
    remote domain -> the node holding the outgoing stream, each claimed with set-if-absent.
    Lookups read a cache every node keeps current through the relay."""

    def __init__(self, member: Any) -> None:  # cluster.member.ClusterMember
        self.member = member
        self._relay = member.relay
        self._client = member.client
        self._owners: dict[str, str] = {}
        self._release = script(member.client, RELEASE_ROUTE)
        self._relay.handlers.update(routed=self._on_routed, unrouted=self._on_unrouted)

    async def load(self) -> None:
        raw = await self._client.hgetall(keys.ROUTES)
        self._owners = {k.decode(): v.decode() for k, v in raw.items()}

    async def claim(self, address: str) -> str:
        """Make this node the owner of `address` unless another is: the owner either way."""
        node = self.member.node
        if not await self._client.hsetnx(keys.ROUTES, address, node):
            owner = await self._client.hget(keys.ROUTES, address)
            if owner is not None:
                self._owners[address] = owner.decode()
                return owner.decode()
            return await self.claim(address)  # released meanwhile
        self._owners[address] = node
        self._relay.broadcast("routed", [address, node])
        return node

    async def claim_remote(self, domain: str) -> str:
        """The node that holds (or, if none, from now on this node holds) the outgoing
        server-to-server stream to `domain` (Openfire's lock on domain + "oss")."""
        return await self.claim(f"s2s:{domain}")

    async def release(self, address: str) -> bool:
        released = bool(await self._release(keys=[keys.ROUTES], args=[address, self.member.node]))
        if released:
            self._owners.pop(address, None)
            self._relay.broadcast("unrouted", [address, self.member.node])
        return released

    async def release_node(self, node: str) -> int:
        """A dead node's routes go (its reaper calls this)."""
        dropped = 0
        for address, owner in list((await self._client.hgetall(keys.ROUTES)).items()):
            if owner.decode() == node:
                dropped += await self._release(keys=[keys.ROUTES], args=[address, node])
        self.forget_node(node)
        return dropped

    def forget_node(self, node: str) -> None:
        for address in [a for a, n in self._owners.items() if n == node]:
            del self._owners[address]

    def forget_others(self) -> None:
        self._owners = {a: n for a, n in self._owners.items() if n == self.member.node}

    async def restore(self) -> None:
        """Redis came back empty: this node's routes go back."""
        mine = [a for a, n in self._owners.items() if n == self.member.node]
        for address in mine:
            await self._client.hsetnx(keys.ROUTES, address, self.member.node)

    def _on_routed(self, _source: str, _hops: int, body: list) -> None:
        address, node = body
        self._owners[address] = node

    def _on_unrouted(self, _source: str, _hops: int, body: list) -> None:
        address, node = body
        if self._owners.get(address) == node:
            del self._owners[address]

    # --- RouteTable ---------------------------------------------------------------------------

    def node_of(self, address: str) -> str | None:
        return self._owners.get(address)

    def remote_route(self, domain: str) -> str | None:
        return self._owners.get(f"s2s:{domain}")

    def relay(self, node: str, stanza: etree._Element) -> None:
        if self._relay.hops >= MAX_HOPS:
            return self.member.router.undeliverable(stanza)
        self._relay.send(node, "route", [etree.tostring(stanza)])
        return None

    def relay_session(self, entry: SessionEntry, stanza: etree._Element) -> None:
        if self._relay.hops >= MAX_HOPS:
            return self.member.router.undeliverable(stanza)
        self._relay.send(entry.node, "session", [str(entry.jid), entry.address,
                                                 etree.tostring(stanza)])  # fmt: skip
        return None

    def tell(self, node: str, address: str, event: str, args: tuple[Any, ...]) -> None:
        self._relay.send(node, "tell", [address, event, list(args)], hops=1)
