"""bench/medians.py: the table of several runs shows each server's median and range."""

from __future__ import annotations

import json

from bench.medians import markdown


def run(tmp_path, n: int, xmppd: float, prosody: float) -> object:
    entry = {"scenario": "flood", "pairs": 50, "window": 50, "p50_ms": n, "p99_ms": 2 * n,
             "lost": 0, "server_cpu_pct": 100.0, "generator_cpu_pct": 10.0}  # fmt: skip
    result = {"results": [
        {**entry, "server": "xmppd", "msgs_per_s": xmppd},
        {**entry, "server": "prosody", "msgs_per_s": prosody},
    ]}  # fmt: skip
    path = tmp_path / f"run{n}.json"
    path.write_text(json.dumps(result))
    return path


def test_medians_ranges_and_ratio_of_three_runs(tmp_path):
    paths = [run(tmp_path, 1, 30000.0, 9000.0), run(tmp_path, 2, 33000.0, 18000.0),
             run(tmp_path, 3, 31000.0, 6000.0)]  # fmt: skip
    rows = {line.split(" | ")[0].strip("| "): line for line in markdown(paths).splitlines()}
    flood = rows["message flood, 50 pairs × window 50, STARTTLS: delivered msgs/s"]
    assert "31,000 (30,000–33,000)" in flood
    assert "9,000 (6,000–18,000)" in flood
    assert flood.endswith("3.44× |")
    assert (
        "2 / 4 (medians of 3)"
        in rows["message flood, 50 pairs × window 50, STARTTLS: p50 / p99 ms"]
    )
