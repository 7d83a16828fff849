"""`xmppctl`: accounts (straight to storage, server running or not) and live sessions (through
the node's admin socket). Each command is declared once, in COMMANDS."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmppd import __version__
from xmppd.config import Config, ConfigError, load_config


class CtlError(Exception):
    """A reason the command failed, said in one line."""


@dataclass(frozen=True)
class Arg:
    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]  # e.g. ("user", "add")
    help: str
    run: Callable[[Config, argparse.Namespace], Any]
    args: tuple[Arg, ...] = ()


# --- accounts ------------------------------------------------------------------------------


def _account(config: Config, text: str) -> tuple[str, str]:
    from xmpp.jid import JID, JIDMalformed

    try:
        jid = JID.parse(text)
    except JIDMalformed as exc:
        raise CtlError(f"{text!r} is not a valid JID: {exc}") from exc
    if jid.local is None or jid.resource is not None:
        raise CtlError(f"{text!r} is not an account JID (want user@domain)")
    hosts = [h.name for h in config.hosts]
    if jid.domain not in hosts:
        raise CtlError(f"{jid.domain} is not a host of this server (hosts: {', '.join(hosts)})")
    return jid.local, jid.domain


def _storage(config: Config) -> Any:
    from storage.open import open_storage

    return open_storage(config.server.storage)


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return args.password
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise CtlError("the passwords differ")
    return first


def _credentials(config: Config, password: str) -> dict:
    from xmpp.sasl import new_credentials

    if not password:
        raise CtlError("the password is empty")
    try:
        return new_credentials(password, iterations=config.sasl.scram_iterations)
    except ValueError as exc:
        raise CtlError(f"unusable password: {exc}") from exc


def user_add(config: Config, args: argparse.Namespace) -> str:
    from storage.accounts import AccountExists

    username, domain = _account(config, args.jid)
    credentials = _credentials(config, _password(args))
    try:
        _storage(config).accounts.create(username, domain, credentials)
    except AccountExists as exc:
        raise CtlError(f"{username}@{domain} already exists") from exc
    return f"created {username}@{domain}"


def user_passwd(config: Config, args: argparse.Namespace) -> str:
    from storage.accounts import NoSuchAccount

    username, domain = _account(config, args.jid)
    credentials = _credentials(config, _password(args))
    try:
        _storage(config).accounts.set_credentials(username, domain, credentials)
    except NoSuchAccount as exc:
        raise CtlError(f"no account {username}@{domain}") from exc
    return f"changed the password of {username}@{domain}"


def user_delete(config: Config, args: argparse.Namespace) -> str:
    from storage.accounts import NoSuchAccount

    username, domain = _account(config, args.jid)
    try:
        _storage(config).accounts.delete(username, domain)
    except NoSuchAccount as exc:
        raise CtlError(f"no account {username}@{domain}") from exc
    return f"deleted {username}@{domain}"


def user_list(config: Config, args: argparse.Namespace) -> list[str]:
    return [f"{u}@{d}" for u, d in _storage(config).accounts.list(args.domain)]


def user_import(config: Config, args: argparse.Namespace) -> str:
    from xmppd.importer import import_accounts

    source = sys.stdin if args.file == "-" else _open(args.file)
    created, updated = import_accounts(config, _storage(config), source, _account, CtlError)
    return f"imported {created + updated} accounts ({created} created, {updated} updated)"


def _open(name: str) -> Any:
    try:
        return open(name, encoding="utf-8")  # noqa: SIM115 - read to the end by the importer
    except OSError as exc:
        raise CtlError(f"cannot read {name}: {exc.strerror}") from exc


# --- sessions, through the admin socket -------------------------------------------------------


def admin(config: Config, cmd: str, **args: Any) -> Any:
    import socket

    path = config.server.admin_socket
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(10)
    try:
        client.connect(str(path))
    except OSError as exc:
        raise CtlError(f"no xmppd is running here (admin socket {path}: {exc.strerror})") from exc
    with client:
        client.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                break
            reply += chunk
    answer = json.loads(reply or b"{}")
    if not answer.get("ok"):
        raise CtlError(answer.get("error", "the server gave no answer"))
    return answer["result"]


def sessions(config: Config, args: argparse.Namespace) -> Any:
    if args.watch:
        from xmppd.watch import watch_counts

        return watch_counts(lambda: admin(config, "counts"), args.interval or 1.0)
    return admin(config, "sessions", state=args.state, user=args.user, node=args.node)


def nodes(config: Config, args: argparse.Namespace) -> Any:
    return admin(config, "nodes")


def session(config: Config, args: argparse.Namespace) -> Any:
    if args.watch:
        from xmppd.watch import watch_session

        ask = lambda **kw: admin(config, "session", **kw)  # noqa: E731
        return watch_session(ask, args.id, args.interval or 0.25, gone=CtlError)
    return admin(config, "session", id=args.id)


def kick(config: Config, args: argparse.Namespace) -> str:
    answer = admin(config, "kick", id=args.id)
    return f"kicked {answer['kicked']} on node {answer['node']}"


def status(config: Config, args: argparse.Namespace) -> Any:
    return admin(config, "status")


@dataclass(frozen=True)
class Exit:
    """A command's printed answer with its own exit status (replay: 0, 1 or 2)."""

    text: str
    code: int


def trace(config: Config, args: argparse.Namespace) -> str:
    answer = admin(config, "trace", id=args.id, action=args.action)
    if args.action == "stop":
        return f"stopped tracing {answer['stopped']}: {answer['file']}"
    return f"tracing {answer['tracing']} to {answer['file']}"


def replay(config: Config, args: argparse.Namespace) -> Exit:
    from xmppd.replay.command import run

    return Exit(*run(args))


JID_ARG = Arg(("jid",), {"metavar": "JID", "help": "the account, user@domain"})
PASSWORD = Arg(("--password",), {"metavar": "P", "help": "the password (else asked for)"})
JSON = Arg(("--json",), {"action": "store_true", "help": "print JSON"})
ID = Arg(("id",), {"metavar": "ID", "help": "connection id or full JID"})
WATCH = Arg(("--watch",), {"action": "store_true", "help": "show changes as they happen (Ctrl-C)"})
INTERVAL = Arg(("--interval",), {"type": float, "metavar": "S",
                                 "help": "seconds between looks with --watch (session 0.25, "
                                         "sessions 1)"})  # fmt: skip

COMMANDS = (
    Command(("user", "add"), "create an account", user_add, (JID_ARG, PASSWORD)),
    Command(("user", "passwd"), "change a password", user_passwd, (JID_ARG, PASSWORD)),
    Command(("user", "delete"), "delete an account", user_delete, (JID_ARG,)),
    Command(
        ("user", "list"),
        "list accounts",
        user_list,
        (Arg(("domain",), {"nargs": "?", "help": "only this domain"}),),
    ),
    Command(
        ("user", "import"),
        "create or update accounts from 'JID PASSWORD' lines",
        user_import,
        (Arg(("file",), {"metavar": "FILE", "help": "a file, or - for stdin"}),),
    ),
    Command(
        ("sessions",),
        "every connection with its state machine's state",
        sessions,
        (
            Arg(("--node",), {"metavar": "N", "help": "only this node's (in a cluster)"}),
            Arg(("--state",), {"metavar": "S"}),
            Arg(("--user",), {"metavar": "U"}),
            JSON,
            WATCH,
            INTERVAL,
        ),
    ),
    Command(("nodes",), "the nodes of the cluster: lease, sessions, version", nodes, (JSON,)),
    Command(
        ("session",),
        "one connection with its last transitions (--watch: its transitions as they happen)",
        session,
        (ID, JSON, WATCH, INTERVAL),
    ),
    Command(("kick",), "close a session with a stream error", kick, (ID,)),
    Command(("status",), "the running node in brief", status, (JSON,)),
    Command(
        ("trace",),
        "start (with a snapshot) or stop tracing one session (docs/traces.md)",
        trace,
        (
            Arg(("action",), {"choices": ("start", "stop")}),
            Arg(("id",), {"metavar": "ID", "help": "connection id, full JID or stream id"}),
        ),
    ),
    Command(
        ("replay",),
        "replay a trace or a captured log into the c2s machine (exit 0 match, 1 not, 2 unusable)",
        replay,
        (
            Arg(("file",), {"metavar": "FILE", "help": "an xmppd trace (file or folder) or a log"}),
            Arg(("--until",), {"type": int, "metavar": "N", "help": "replay the first N steps"}),
            Arg(("--show",), {"choices": ("states", "xml", "diff")}),
            Arg(("--live",), {"metavar": "HOST:PORT", "help": "play it against a running server"}),
            Arg(("--domain-map",), {"action": "append", "metavar": "OLD=NEW"}),
            Arg(("--account",), {"action": "append", "metavar": "JID=PASSWORD"}),
            Arg(("--insecure",), {"action": "store_true", "help": "any certificate (--live)"}),
        ),
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmppctl", description="Administer xmppd.")
    parser.add_argument("--version", action="version", version=f"xmppctl {__version__}")
    parser.add_argument("--config", type=Path, help="the server's TOML configuration")
    parser.add_argument("--data-dir", type=Path, help="the server's data directory")
    groups: dict[tuple[str, ...], Any] = {(): parser.add_subparsers(dest="cmd", required=True)}
    for command in COMMANDS:
        for depth in range(1, len(command.path)):
            prefix = command.path[:depth]
            if prefix not in groups:
                sub = groups[prefix[:-1]].add_parser(prefix[-1], help=f"{prefix[-1]} commands")
                groups[prefix] = sub.add_subparsers(dest=f"cmd{depth}", required=True)
        leaf = groups[command.path[:-1]].add_parser(command.path[-1], help=command.help)
        for arg in command.args:
            leaf.add_argument(*arg.flags, **arg.options)
        leaf.set_defaults(command=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.data_dir)
        result = args.command.run(config, args)
    except (ConfigError, CtlError) as exc:
        print(f"xmppctl: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if isinstance(result, Exit):
        print(result.text, file=sys.stderr if result.code == 2 else sys.stdout)
        return result.code
    try:
        show(result, getattr(args, "json", False), args.command)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left early (`xmppctl session ID | head`): end quietly, as Unix tools do;
        # stdout goes to /dev/null so that the interpreter's last flush finds no pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def show(result: Any, as_json: bool, command: Command) -> None:
    from xmppd.tables import render

    if as_json:
        print(json.dumps(result, indent=2, default=str))
    elif isinstance(result, str):
        print(result)
    elif isinstance(result, list) and command.path[0] == "user":
        if result:
            print("\n".join(result))
    else:
        print(render(command.path, result))


if __name__ == "__main__":
    sys.exit(main())
