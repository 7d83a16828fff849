"""Prometheus metrics of one node at /metrics (prometheus-client's own listener, off unless
[metrics] port is set): what the node, its router and its cluster membership count, read on the
node's event loop at each scrape so that no count is read half-changed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from xmppd import __version__

log = logging.getLogger("xmppd.metrics")


def snapshot(node: Any) -> dict:
    """Everything a scrape reports, taken on the node's loop."""
    states: dict[str, int] = {}
    for actor in list(node.actors.values()):
        states[actor.state] = states.get(actor.state, 0) + 1
    counts = node.router.counts
    # (ThreadPoolExecutor keeps its queue private; absent, the depth reads 0.)
    waiting = getattr(node.scheduler.executor, "_work_queue", None)
    taken = {
        "states": states,
        "logins": dict(node.logins.succeeded),
        "login_failures": dict(node.logins.failed),
        "stanzas": {"routed": counts.routed, "relayed": counts.relayed,
                    "bounced": counts.bounced, "offline": counts.offline},  # fmt: skip
        "queues": {"storage": node.lanes.depth(),
                   "blocking": waiting.qsize() if waiting is not None else 0},  # fmt: skip
        "uptime": time.time() - node.started,
    }
    member = node.cluster
    if member is not None:
        liveness, relay = member.liveness, member.relay
        taken["cluster"] = {
            "backlog": relay.backlog(),
            "lag": relay.lag(),
            "received": relay.received,
            "duplicates": relay.duplicates,
            "peers": len(relay.peers),
            "lease_age": time.monotonic() - liveness.last_renewed,
            "holding": liveness.holding,
            "round_trips": (list(liveness.round_trips.counts), liveness.round_trips.sum),
            "buckets": liveness.round_trips.BUCKETS,
        }
    return taken


class NodeCollector(Collector):
    def __init__(self, node: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.node = node
        self.loop = loop

    def collect(self) -> Iterator[Metric]:
        async def take() -> dict:
            return snapshot(self.node)

        try:
            data = asyncio.run_coroutine_threadsafe(take(), self.loop).result(timeout=5)
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even so
            log.warning("metrics: the node did not answer within 5 s (%r)", exc)
            return
        yield from families(self.node.node_id, data)


def families(node: str, data: dict) -> Iterator[Metric]:
    info = GaugeMetricFamily("xmppd_info", "This node's name and version.",
                             labels=["node", "version"])  # fmt: skip
    info.add_metric([node, __version__], 1)
    yield info
    uptime = GaugeMetricFamily("xmppd_uptime_seconds", "Seconds since the node started.",
                               labels=["node"])  # fmt: skip
    uptime.add_metric([node], data["uptime"])
    yield uptime
    sessions = GaugeMetricFamily("xmppd_sessions", "Client connections by their c2s state.",
                                 labels=["node", "state"])  # fmt: skip
    for state, count in sorted(data["states"].items()):
        sessions.add_metric([node, state], count)
    yield sessions
    for name, key, what in (("xmppd_logins", "logins", "Successful logins"),
                            ("xmppd_login_failures", "login_failures", "Failed login attempts")):
        family = CounterMetricFamily(name, f"{what} by SASL mechanism.",
                                     labels=["node", "mechanism"])  # fmt: skip
        for mechanism, count in sorted(data[key].items()):
            family.add_metric([node, mechanism], count)
        yield family
    stanzas = CounterMetricFamily(
        "xmppd_stanzas",
        "Stanzas by what the router did: routed (every stanza it routed), relayed (to another "
        "node), bounced (answered with an error), offline (handed to offline storage).",
        labels=["node", "outcome"],
    )
    for outcome, count in data["stanzas"].items():
        stanzas.add_metric([node, outcome], count)
    yield stanzas
    queues = GaugeMetricFamily("xmppd_queue_depth", "Jobs waiting for a thread: storage lanes "
                               "and the blocking pool (password hashing).",
                               labels=["node", "pool"])  # fmt: skip
    for pool, depth in data["queues"].items():
        queues.add_metric([node, pool], depth)
    yield queues
    if "cluster" in data:
        yield from _cluster_families(node, data["cluster"])


def _cluster_families(node: str, c: dict) -> Iterator[Metric]:
    def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, help_text, labels=["node"])
        family.add_metric([node], value)
        return family

    def counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(name, help_text, labels=["node"])
        family.add_metric([node], value)
        return family

    yield gauge("xmppd_relay_backlog", "Packets to other nodes not yet confirmed handled.",
                c["backlog"])  # fmt: skip
    yield gauge("xmppd_relay_lag_seconds", "Age of the oldest packet to another node not yet "
                "confirmed handled (0: none).", c["lag"])  # fmt: skip
    yield counter("xmppd_relay_received", "Packets taken from this node's relay stream.",
                  c["received"])  # fmt: skip
    yield counter("xmppd_relay_duplicates", "Packets from the relay stream dropped as taken "
                  "before (sent again after a Redis restart or failover).",
                  c["duplicates"])  # fmt: skip
    yield gauge("xmppd_cluster_peers", "Other live nodes this node relays to.", c["peers"])
    yield gauge("xmppd_lease_age_seconds", "Seconds since this node last renewed its lease.",
                c["lease_age"])  # fmt: skip
    yield gauge("xmppd_lease_held", "1 while this node holds its lease (serves).",
                1 if c["holding"] else 0)  # fmt: skip
    counts, total = c["round_trips"]
    buckets, running = [], 0
    for bound, count in zip([*map(str, c["buckets"]), "+Inf"], counts, strict=True):
        running += count
        buckets.append((bound, running))
    help_text = "Round trips to Redis (lease renewals and run-id looks)."
    latency = HistogramMetricFamily("xmppd_redis_round_trip_seconds", help_text, labels=["node"])
    latency.add_metric([node], buckets, sum_value=total)
    yield latency


def start_metrics(node: Any, loop: asyncio.AbstractEventLoop, address: str, port: int) -> Any:
    """Serve /metrics on address:port from a thread of prometheus-client's; the server (for
    `shutdown()`)."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node, loop))
    server, _thread = start_http_server(port, address, registry=registry)
    log.info("metrics at http://%s:%d/metrics", address, port)
    return server
