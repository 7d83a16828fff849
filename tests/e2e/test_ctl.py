"""The command-line contract of xmppd and xmppctl: help, accounts, imports, no server running."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import Server
from tests.support.xmpp_client import connect, login

BIN = Path(sys.executable).parent


def command(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, timeout=60)


def fails(result: subprocess.CompletedProcess) -> str:
    """A refused xmppctl command: non-zero, nothing on stdout, one line on stderr."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xmppctl: error:"), lines
    return lines[0]


def accounts(node: Server, *domain: str) -> list[str]:
    return node.ctl("user", "list", *domain).stdout.split()


def can_log_in(node: Server, run, user: str, password: str) -> bool:
    async def attempt():
        client = await connect(node, user, password=password)
        ok = client.started.result()
        await client.close()
        return ok

    return run(attempt())


# --- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("xmppd", "--help"),
        ("xmppd", "serve", "--help"),
        ("xmppctl", "--help"),
        ("xmppctl", "user", "--help"),
        ("xmppctl", "sessions", "--help"),
    ],
    ids=" ".join,
)
def test_help_exits_0(argv):
    result = command(*argv)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_xmppctl_help_names_its_commands():
    text = command("xmppctl", "--help").stdout
    for name in ("user", "sessions", "session", "kick"):
        assert name in text
    text = command("xmppctl", "user", "--help").stdout
    for name in ("add", "passwd", "delete", "list", "import"):
        assert name in text


# --- accounts against a running server -------------------------------------------------------


def test_user_add_then_login_works(server, run):
    said = server.ctl("user", "add", "dave@localhost", "--password", "dave-secret").stdout
    assert "dave@localhost" in said
    assert can_log_in(server, run, "dave", "dave-secret")


def test_user_add_of_an_existing_account_fails(server):
    line = fails(server.ctl("user", "add", "alice@localhost", "--password", "x", check=False))
    assert "alice@localhost" in line and "exists" in line
    assert accounts(server).count("alice@localhost") == 1


def test_user_add_for_a_domain_not_served_fails(server):
    line = fails(server.ctl("user", "add", "eve@elsewhere.example", "--password", "x", check=False))
    assert "elsewhere.example" in line
    assert "eve@elsewhere.example" not in accounts(server)


def test_user_passwd_changes_the_password(server, run):
    server.ctl("user", "add", "erin@localhost", "--password", "first-secret")
    assert can_log_in(server, run, "erin", "first-secret")
    server.ctl("user", "passwd", "erin@localhost", "--password", "second-secret")
    assert not can_log_in(server, run, "erin", "first-secret")
    assert can_log_in(server, run, "erin", "second-secret")


def test_user_passwd_of_a_missing_account_fails(server):
    line = fails(server.ctl("user", "passwd", "nobody@localhost", "--password", "x", check=False))
    assert "nobody@localhost" in line


def test_user_delete_then_login_fails(server, run):
    server.ctl("user", "add", "frank@localhost", "--password", "frank-secret")
    assert can_log_in(server, run, "frank", "frank-secret")
    server.ctl("user", "delete", "frank@localhost")
    assert "frank@localhost" not in accounts(server)
    assert not can_log_in(server, run, "frank", "frank-secret")
    fails(server.ctl("user", "delete", "frank@localhost", check=False))


# --- accounts with no server running ---------------------------------------------------------


def test_user_list_all_and_by_domain(fresh_server):
    with fresh_server.config_path.open("a") as config:
        config.write('\n[hosts."example.net"]\n')
    fresh_server.ctl("user", "add", "gina@example.net", "--password", "gina-secret")
    everyone = accounts(fresh_server)
    assert sorted(everyone) == sorted(
        ["alice@localhost", "bob@localhost", "carol@localhost", "gina@example.net"]
    )
    assert accounts(fresh_server, "example.net") == ["gina@example.net"]
    assert sorted(accounts(fresh_server, "localhost")) == [
        "alice@localhost",
        "bob@localhost",
        "carol@localhost",
    ]


def test_user_commands_work_while_no_server_runs(fresh_server, run):
    assert fresh_server.proc is None
    fresh_server.ctl("user", "add", "hank@localhost", "--password", "one")
    fresh_server.ctl("user", "passwd", "hank@localhost", "--password", "two")
    fresh_server.ctl("user", "add", "ivy@localhost", "--password", "ivy-secret")
    fresh_server.ctl("user", "delete", "ivy@localhost")
    assert "hank@localhost" in accounts(fresh_server)
    assert "ivy@localhost" not in accounts(fresh_server)
    fresh_server.start()
    assert can_log_in(fresh_server, run, "hank", "two")
    assert not can_log_in(fresh_server, run, "ivy", "ivy-secret")


def test_user_import_of_300_accounts_from_a_file(fresh_server, tmp_path, run):
    lines = [f"user{i:03d}@localhost pass-{i:03d}" for i in range(299)]
    lines.append("spacey@localhost correct horse battery staple")
    listing = tmp_path / "accounts.txt"
    listing.write_text("\n".join(lines) + "\n")
    said = fresh_server.ctl("user", "import", str(listing)).stdout
    assert "300" in said
    assert len(accounts(fresh_server)) == 303
    fresh_server.start()

    async def scenario():
        spacey = await login(fresh_server, "spacey", password="correct horse battery staple")
        some = await login(fresh_server, "user123", password="pass-123")
        for client in (spacey, some):
            await client.close()
        wrong = await connect(fresh_server, "spacey", password="correct")
        assert wrong.started.result() is False
        await wrong.close()

    run(scenario())


def test_user_import_from_stdin(fresh_server):
    fresh_server.ctl(
        "user", "import", "-", input="jack@localhost jack-secret\nkate@localhost kate secret\n"
    )
    assert {"jack@localhost", "kate@localhost"} <= set(accounts(fresh_server))


def test_malformed_import_line_is_reported_and_nothing_is_imported(fresh_server):
    text = "lee@localhost lee-secret\nmia@localhost\nned@localhost ned-secret\n"
    line = fails(fresh_server.ctl("user", "import", "-", input=text, check=False))
    assert "line 2" in line
    names = accounts(fresh_server)
    assert "lee@localhost" not in names and "ned@localhost" not in names


def test_import_of_a_domain_not_served_names_the_line(fresh_server):
    text = "lee@localhost lee-secret\nned@elsewhere.example ned-secret\n"
    line = fails(fresh_server.ctl("user", "import", "-", input=text, check=False))
    assert "line 2" in line and "elsewhere.example" in line
    assert "lee@localhost" not in accounts(fresh_server)


def test_sessions_with_no_server_running_says_so(fresh_server):
    line = fails(fresh_server.ctl("sessions", check=False))
    assert "no xmppd is running" in line
    fails(fresh_server.ctl("kick", "whatever", check=False))


def test_user_add_reads_the_password_from_stdin(fresh_server, run):
    fresh_server.ctl("user", "add", "olga@localhost", input="olga secret\n")
    fails(fresh_server.ctl("user", "add", "pete@localhost", input="\n", check=False))
    assert "pete@localhost" not in accounts(fresh_server)
    fresh_server.start()
    assert can_log_in(fresh_server, run, "olga", "olga secret")


def test_import_updates_the_password_of_an_existing_account(fresh_server, run):
    said = fresh_server.ctl("user", "import", "-", input="alice@localhost brand-new\n").stdout
    assert "1 updated" in said
    fresh_server.start()
    assert can_log_in(fresh_server, run, "alice", "brand-new")
    assert not can_log_in(fresh_server, run, "alice", fresh_server.passwords["alice"])


def test_status_says_when_the_node_started_and_how_long_it_has_run(server):
    readable = server.ctl("status").stdout
    lines = dict(line.split(None, 1) for line in readable.splitlines() if line.strip())
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+", lines["started"]), readable
    assert re.fullmatch(r"(\d+[dhm] )*\d+s", lines["uptime"]), readable
    raw = json.loads(server.ctl("status", "--json").stdout)
    assert raw["uptime_s"] >= 0 and isinstance(raw["started"], float)
