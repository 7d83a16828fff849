"""`xmppd serve`: load the configuration, wire a node and run it until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import json
import logging
import re
import resource
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xmppd import __version__
from xmppd.config import Config, ConfigError, load_config


class StartupError(Exception):
    """A reason not to start, said in one line."""


# An admin plugin: called with the node and its admin server before the node serves, it may
# register admin commands (tests register one that crashes a session).
AdminPlugin = Callable[[Any, Any], None]


def main(argv: list[str] | None = None, plugins: Sequence[AdminPlugin] = ()) -> int:
    parser = argparse.ArgumentParser(prog="xmppd", description="The xmppd XMPP server.")
    parser.add_argument("--version", action="version", version=f"xmppd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a node in the foreground")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument(
        "--data-dir",
        type=Path,
        help="where the database, certificates and "
        "admin socket live (default $XDG_DATA_HOME/xmppd)",
    )
    serve.add_argument(
        "--trace",
        type=Path,
        metavar="DIR",
        help="write a trace of every session to DIR/<connection id>.trace (docs/traces.md)",
    )
    serve.add_argument(
        "--trace-secrets",
        action="store_true",
        help="traces also record passwords, SASL payloads and stored credentials (for byte-exact "
        "replays of SCRAM); keep such traces private",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.data_dir)
        return serve_forever(config, args.trace, args.trace_secrets, plugins)
    except (ConfigError, StartupError) as exc:
        print(f"xmppd: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1


def serve_forever(config: Config, trace: Path | None = None, trace_secrets: bool = False,
                  plugins: Sequence[AdminPlugin] = ()) -> int:  # fmt: skip
    setup_logging(config.server.log_level, config.server.log_format)
    prepare_data_dir(config)
    limit = raise_file_limit()
    from actors.node import connection_room

    logging.getLogger("xmppd").info(
        "open-file limit %d: room for %d connections", limit, connection_room()
    )
    try:
        import uvloop  # optional: pip install 'xmppd[fast]'

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(config, loop, trace, trace_secrets, plugins))
    finally:
        loop.close()


async def _serve(
    config: Config,
    loop: asyncio.AbstractEventLoop,
    trace: Path | None = None,
    trace_secrets: bool = False,
    plugins: Sequence[AdminPlugin] = (),
) -> int:
    from actors.admin import AdminServer
    from xmppd.node import build_node

    check_admin_socket(config.server.admin_socket)
    storage = open_shared_storage(config.server.storage)
    node = build_node(config, storage, loop, trace_dir=trace, trace_secrets=trace_secrets)
    if node.cluster is not None:
        from cluster.liveness import NameTaken
        from cluster.member import ClusterUnavailable

        try:
            await node.cluster.join()
        except (ClusterUnavailable, NameTaken) as exc:
            storage.close()
            raise StartupError(str(exc)) from exc
    if trace is not None:
        logging.getLogger("xmppd").info(
            "tracing every session to %s%s", trace, " (with secrets)" if trace_secrets else ""
        )
    try:
        await node.start()
    except OSError as exc:
        where = exc.filename or ", ".join(f"{lst.address}:{lst.port}" for lst in config.listeners)
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise StartupError(f"cannot listen on {where}: {reason}") from exc
    admin = AdminServer(node, config.server.admin_socket)
    for plugin in plugins:
        plugin(node, admin)
    await admin.start()
    metrics = None
    if config.metrics is not None:
        from xmppd.metrics import start_metrics

        spec = config.metrics
        try:
            metrics = start_metrics(node, loop, spec.address, spec.port)
        except OSError as exc:
            await node.shutdown()
            admin.close()
            storage.close()
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise StartupError(f"cannot serve metrics on {spec.address}:{spec.port}: "
                               f"{reason}") from exc  # fmt: skip
    # What is loaded by now lives as long as the process: out of the collector's sight, so
    # its full collections walk the sessions' objects only; and young collections less often
    # (a login makes a few hundred short-lived containers).
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    announce(config)
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: reload(config, node))
    await stopped.wait()
    logging.getLogger("xmppd").info("shutting down")
    await node.shutdown()
    if metrics is not None:
        metrics.shutdown()
    admin.close()
    storage.close()
    return 0


def open_shared_storage(url: str) -> Any:
    """The storage the URL names; a database that cannot be reached stops start-up, saying so."""
    from sqlalchemy.exc import OperationalError

    from storage.open import open_storage

    try:
        return open_storage(url)
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise StartupError(f"cannot open the database {_redacted(url)}: {reason}") from exc


def _redacted(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def reload(config: Config, node: Any) -> None:
    """SIGHUP: the log level from the file as it is now, and the certificates on disk."""
    log = logging.getLogger("xmppd")
    if config.source is not None:
        try:
            fresh = load_config(config.source, config.server.data_dir)
            logging.getLogger().setLevel(fresh.server.log_level.upper())
        except ConfigError as exc:
            log.error("reload: configuration not reloaded: %s", exc)
    try:
        node.certificates.reload()
        log.info("certificates reloaded for %s", ", ".join(node.hosts))
    except (OSError, ValueError) as exc:
        log.error("reload: certificates not reloaded: %s", exc)


def prepare_data_dir(config: Config) -> None:
    from xmppd.certs import ensure_self_signed

    data_dir = config.server.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for host in config.hosts:
        if host.self_signed and ensure_self_signed(host.certificate, host.key, [host.name]):
            logging.getLogger("xmppd").info(
                "made a self-signed certificate for %s at %s", host.name, host.certificate
            )


def check_admin_socket(path: Path) -> None:
    """Two nodes on one data directory would fight over it: refuse to be the second."""
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(str(path))
    except OSError:
        return  # stale, left by a node that died
    finally:
        probe.close()
    raise StartupError(f"another xmppd is running with the admin socket {path}")


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def announce(config: Config) -> None:
    first = config.hosts[0].name
    ctl = "xmppctl"
    if config.source is not None:
        ctl += f" --config {config.source}"
    else:
        ctl += f" --data-dir {config.server.data_dir}"
    lines = [
        f"xmppd {__version__} serving {', '.join(h.name for h in config.hosts)}",
        f"data directory: {config.server.data_dir}",
        *(f"listening on {lst.address}:{lst.port} ({lst.tls})" for lst in config.listeners),
        f"add a user:     {ctl} user add alice@{first}",
        f"see sessions:   {ctl} sessions",
    ]
    if config.testing.any_password:
        lines.append("TEST MODE: [testing] any_password = true: any password logs in")
    print("\n".join(lines), flush=True)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("pykka").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
