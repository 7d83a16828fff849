"""Where the cluster keeps what in Redis. Every key that a script touches together shares one
hash tag, so the same code runs on one Redis and on Redis Cluster: a user's sessions are tagged
by a digest of the bare JID (a localpart may hold `{` and `}`), a node's keys by its name (node
names are restricted to letters, digits, `.`, `_` and `-`)."""

from __future__ import annotations

import hashlib
import re

PREFIX = "xmppd"
NODE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
GROUP = "relay"  # the consumer group every node reads its relay stream with

NODES = f"{PREFIX}:nodes"  # hash: node -> msgpack {boot, started, version}
ROUTES = f"{PREFIX}:routes"  # hash: service address or "s2s:" + domain -> owning node


def user_tag(bare: str) -> str:
    return hashlib.sha1(bare.encode()).hexdigest()[:20]


def sessions(bare: str) -> str:
    """Hash of one account's sessions: resource -> "<version> <node> <address>"."""
    return f"{PREFIX}:s:{{{user_tag(bare)}}}"


def lease(node: str) -> str:
    return f"{PREFIX}:n:{{{node}}}:lease"


def relay(node: str) -> str:
    """The node's relay stream (read with GROUP)."""
    return f"{PREFIX}:n:{{{node}}}:relay"


def index(node: str) -> str:
    """Set of the node's sessions (msgpack [bare, resource, address]), for its reaper."""
    return f"{PREFIX}:n:{{{node}}}:index"


def reaping(node: str) -> str:
    """Held (SET NX, with a lease) by the one survivor cleaning up after `node`."""
    return f"{PREFIX}:n:{{{node}}}:reaper"


def lock(name: str) -> str:
    return f"{PREFIX}:lock:{{{name}}}"
