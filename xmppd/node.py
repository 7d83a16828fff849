"""Wiring a node from the configuration: which storage, session manager, route table, features,
authentication backend, certificates, listeners and machines."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from actors.node import Limits, Listener, Node
from actors.randomness import SystemRandom
from actors.trace import Tracing
from features.im import Settings
from features.registry import Registry
from fsm import c2s
from fsm.session import C2S, C2SConfig, Env
from routing.routes import SingleNodeRoutes
from routing.sessions import LocalSessionManager
from storage.auth import AnyPassword, StoredCredentials
from xmppd import __version__
from xmppd.certs import TLSCertificates
from xmppd.config import Config


def feature_modules() -> list:
    """Every feature this node serves; disco#info lists what they register."""
    from features import disco, last, offline, ping, presence, private, roster, vcard, version
    from features import time as entity_time

    return [ping, disco, roster, presence, offline, vcard, private, version, entity_time, last]


def settings(config: Config, started: float | None = None) -> Settings:
    limits = config.limits
    return Settings(
        max_roster_items=limits.max_roster_items,
        max_offline_messages=limits.max_offline_messages,
        max_vcard_bytes=limits.max_vcard_bytes,
        max_private_bytes=limits.max_private_bytes,
        started=time.time() if started is None else started,
        version=__version__,
    )


def certificates(config: Config) -> TLSCertificates:
    return TLSCertificates.load({h.name: (h.certificate, h.key) for h in config.hosts})


class Certificates:
    """The node's certificates; SIGHUP loads them again (new connections get them)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.current = certificates(config)

    def __call__(self) -> TLSCertificates:
        return self.current

    def reload(self) -> None:
        self.current = certificates(self.config)


def c2s_config(config: Config, tls: str, fake_salt_secret: bytes) -> C2SConfig:
    limits = config.limits
    return C2SConfig(
        hosts=tuple(h.name for h in config.hosts),
        mechanisms={h.name: tuple(h.sasl_mechanisms) for h in config.hosts},
        anonymous_hosts=frozenset(h.name for h in config.hosts if h.anonymous),
        tls_mode=tls,
        tls_available=True,
        max_auth_failures=limits.max_auth_failures,
        header_timeout=limits.stream_header_timeout,
        auth_timeout=limits.auth_timeout,
        ping_timeout=limits.ping_timeout,
        fake_salt_secret=fake_salt_secret,
    )


def build_node(config: Config, storage: Any, loop: asyncio.AbstractEventLoop, *,
               trace_dir: Path | None = None, trace_secrets: bool = False) -> Node:  # fmt: skip
    limits = config.limits
    features = Registry.from_modules(feature_modules(), settings(config))
    # Unknown users get the same SCRAM exchange as known ones: salts made from this secret.
    fake_salt_secret = secrets.token_bytes(32)

    def listener(spec: Any) -> Listener:
        machine_config = c2s_config(config, spec.tls, fake_salt_secret)

        def new_data(conn_id: str, peer: str) -> C2S:
            env = Env(time.time, SystemRandom())
            return C2S(conn_id=conn_id, config=machine_config, env=env, features=features,
                       peer=peer)  # fmt: skip

        return Listener(spec.type, spec.address, spec.port, spec.tls, c2s, new_data)

    auth_backend = AnyPassword if config.testing.any_password else StoredCredentials
    tracing = Tracing(
        trace_dir,
        config.server.data_dir / "traces",
        secrets=trace_secrets,
        settings=features.settings,
        limits={"max_stanza_bytes": limits.max_stanza_bytes},
    )
    member = cluster_member(config)
    node = Node(
        node_id=member.node if member else socket.gethostname(),
        loop=loop,
        storage=storage,
        hosts=tuple(h.name for h in config.hosts),
        sessions=member.sessions if member else LocalSessionManager(),
        routes=member.routes if member else SingleNodeRoutes(),
        features=features,
        auth=auth_backend(storage.accounts),
        certificates=Certificates(config),
        limits=Limits(
            max_stanza_bytes=limits.max_stanza_bytes,
            max_bytes_per_second=limits.max_bytes_per_second,
            burst_bytes=limits.burst_bytes,
            max_send_buffer_bytes=limits.max_send_buffer_bytes,
            max_connections_per_ip=limits.max_connections_per_ip,
            exempt_loopback=limits.exempt_loopback,
            idle_timeout=limits.idle_timeout,
            max_sessions_per_account=limits.max_sessions_per_account,
        ),
        listeners=[listener(spec) for spec in config.listeners],
        tracing=tracing,
    )
    node.cluster = member
    if member is not None:
        join_cluster(node, member)
    return node


def cluster_member(config: Config) -> Any:
    """The node's membership of the cluster its [cluster] table names, or None."""
    if config.cluster is None:
        return None
    from cluster.liveness import Timing
    from cluster.member import ClusterMember

    lease = config.cluster.lease
    timing = Timing(lease=lease, renew=lease / 4, watch=min(1.0, lease / 8))
    return ClusterMember(config.cluster.redis, config.cluster.node, __version__, timing)


def join_cluster(node: Node, member: Any) -> None:
    """What the cluster and the node do for each other."""
    from features.presence import lost_session_work
    from routing.actions import Work

    def lost_sessions(entries: list) -> None:
        now = time.time()
        node.router.perform([
            Work(str(e.jid.bare), lost_session_work, (str(e.jid), now, tuple(e.directed)))
            for e in entries
        ])  # fmt: skip

    member.attach(node.router, node)
    member.suspend = node.suspend
    member.resume = node.resume
    member.lost_sessions = lost_sessions
    node.leaving = member.leave
