"""Scraping a node's /metrics the way Prometheus does, parsed by prometheus-client's parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def value(samples: dict, name: str, **labels: str) -> float:
    """The sample's value; 0 when it is not there (a counter nothing has counted yet)."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)
