"""Issue 7: the scansion scripts covering core and IM, played with `xmppctl replay --live`
over real sockets against a running xmppd in its test mode (`[testing] any_password = true`,
loopback only), each on a node of its own (Prosody's scripts assume fresh memory storage)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import ROOT, make_server
from tests.unit.test_scansion_conformance import REQUIRED, SCANSION, needs_scansion


def script_accounts(path: Path) -> dict[str, str]:
    """The accounts a script's [Client]s log in as. The test mode takes any password, but
    xmppd's roster, vCard and last-activity stores answer for existing accounts only."""
    users = {}
    for line in path.read_text().splitlines():
        key, _, value = line.strip().partition(":")
        if key == "jid":
            users[value.strip().split("/")[0].split("@")[0]] = "any-password"
    return users


@needs_scansion
@pytest.mark.parametrize("name", REQUIRED)
def test_required_scansion_script_matches_live(name, tmp_path):
    path = SCANSION / f"{name}.scs"
    node = make_server(tmp_path, extra_config="[testing]\nany_password = true\n")
    node.add_users(**script_accounts(path))
    node.start()
    try:
        cmd = [sys.executable, "-m", "xmppd.ctl", "replay", str(path),
               "--live", f"127.0.0.1:{node.starttls_port}", "--insecure"]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        node.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "logged in live with PLAIN" in result.stdout  # the implied login, over STARTTLS
    assert "verdict: MATCH" in result.stdout


@needs_scansion
@pytest.mark.timeout(900)
def test_every_scansion_script_runs_live_and_the_count_is_reported(tmp_path, monkeypatch, capsys):
    """All 50 over real sockets, each on a fresh node: the same verdicts as in-memory. A
    receive that never comes waits 1 s here (3 s on the command line) to keep the suite short."""
    from xmppd.replay import live
    from xmppd.replay.run import Options, load
    from xmppd.replay.script import UnusableLog

    monkeypatch.setattr(live, "WAIT", 1.0)
    results: dict[str, bool] = {}
    for path in sorted(SCANSION.glob("*.scs")):
        node = make_server(tmp_path / path.stem, extra_config="[testing]\nany_password = true\n")
        # The test mode creates an account at its first login; a script that writes to one
        # before it ever logs in (keep_full_sub_req) needs it made beforehand.
        node.add_users(**script_accounts(path))
        node.start()
        try:
            target = f"127.0.0.1:{node.starttls_port}"
            results[path.stem] = live.replay_live(load(path), target, Options(), insecure=True).ok
        except UnusableLog:
            results[path.stem] = False
        finally:
            node.stop()
    passed = sorted(name for name, ok in results.items() if ok)
    with capsys.disabled():
        print(f"\nscansion live: {len(passed)}/{len(results)} pass ({', '.join(passed)})")
    assert len(results) == 50
    assert set(REQUIRED) <= set(passed)


def test_the_test_mode_lets_a_new_user_in_with_an_account(tmp_path, run):
    """As Prosody's insecure authentication: a user who does not exist logs in with any
    password, and gets an account its roster is stored in."""
    from tests.support.xmpp_client import login

    node = make_server(tmp_path, extra_config="[testing]\nany_password = true\n")
    node.start()

    async def scenario():
        newbie = await login(node, "newbie", password="whatever", mechanism="PLAIN")
        await newbie.update_roster("friend@localhost", name="Friend")
        roster = await newbie.get_roster()
        assert "friend@localhost" in roster["roster"]["items"]
        await newbie.close()

    try:
        run(scenario())
    finally:
        node.stop()
