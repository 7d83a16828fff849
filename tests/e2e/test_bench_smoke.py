"""A small run of the load generator (bench/) against a real node, so the tool keeps working.
Only that it logs in and counts messages with nothing lost is checked: timing never is."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench import worker
from bench.presence import presence_rounds
from bench.report import markdown
from bench.rosters import names, ring, with_big, write_xmppd
from bench.servers import ROOT, accounts

USERS = accounts(4)


def _job(server, scenario: str, **extra) -> dict:
    return {
        "scenario": scenario,
        "host": "127.0.0.1",
        "port": server.starttls_port,
        "domain": "localhost",
        "users": USERS,
        **extra,
    }


def test_login_storm_logs_in(server, run):
    server.add_users(**dict(USERS))
    results = []
    for mechanism in ("SCRAM-SHA-1", "PLAIN"):
        job = _job(server, "login", mechanism=mechanism, concurrency=2, duration=0.5, warmup=0.1)
        result = run(worker.login_storm(job))
        assert result["logins"] > 0, result
        assert result["errors"] == 0, result
        results.append({"server": "xmppd", **result})
    table = markdown({"servers": {"xmppd": {}}, "results": results})
    assert "logins/s" in table


def test_client_session_scenario_logs_in_and_out(server, run):
    """Whole client sessions (roster, presence echoed, logout answered): every one completes,
    and none is left behind on the server afterwards."""
    server.add_users(**dict(USERS))
    job = _job(server, "session", session=True, mechanism="PLAIN", concurrency=2,
               duration=0.5, warmup=0.1)  # fmt: skip
    result = run(worker.login_storm(job))
    assert result["scenario"] == "session", result
    assert result["logins"] > 0 and result["errors"] == 0, result
    table = markdown({"servers": {"xmppd": {}}, "results": [{"server": "xmppd", **result}]})
    assert "client session" in table
    assert _eventually(lambda: not _bench_sessions(server)), _bench_sessions(server)


def _bench_sessions(server) -> list[str]:
    names = {f"{user}@localhost" for user, _ in USERS}
    rows = server.admin("sessions")["result"]
    return [row["jid"] for row in rows if row["jid"].split("/")[0] in names]


def _eventually(predicate, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_message_flood_counts_every_message(server, tmp_path):
    """Runs the generator as the benchmark does: a separate process given a job file."""
    server.add_users(**dict(USERS))
    job = _job(server, "flood", pairs=2, window=5, duration=0.5, warmup=0.1, drain=5)
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    done = subprocess.run(
        [sys.executable, "-m", "bench.worker", str(path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["delivered"] > 0, result
    assert result["sent"] == result["received"], result
    assert result["lost"] == 0 and result["gaps"] == 0, result


def test_roster_scenario_delivers_every_presence(fresh_server, run):
    """Six users with two contacts each change presence in rounds; a seventh, with all six
    and two offline accounts as contacts, logs in and hears every online contact."""
    everyone = accounts(9)
    fresh_server.add_users(**dict(everyone))
    write_xmppd(fresh_server.data_dir / "xmppd.sqlite3", names(with_big(ring(6, 2), 8, 8)))
    fresh_server.start()
    job = _job(fresh_server, "roster", users=everyone[:6], n=6, contacts=2, rounds=2,
               big=everyone[8], big_size=8, big_online=6, big_logins=2, settle=20)  # fmt: skip
    result = run(presence_rounds(job), timeout=120)
    assert result["online"] == 6 and result["errors"] == 0, result
    assert result["delivered"] == 2 * 6 * 2 and result["lost"] == 0, result
    assert result["big_logins"] == 2 and result["big_presences_ms"] is not None, result
    table = markdown({"servers": {"xmppd": {}}, "results": [{"server": "xmppd", **result}]})
    assert "presences delivered/s" in table and "8-item roster" in table
