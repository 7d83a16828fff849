"""The local admin endpoint: a Unix socket (owner-only) answering one JSON request per line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fsm.core import Kick

log = logging.getLogger("xmppd.admin")


class AdminError(Exception):
    pass


class AdminServer:
    def __init__(self, node: Any, path: Path) -> None:
        self.node = node
        self.path = path
        self.server: asyncio.base_events.Server | None = None
        self.commands: dict[str, Callable[..., Any]] = {
            "status": self.cmd_status,
            "sessions": self.cmd_sessions,
            "session": self.cmd_session,
            "kick": self.cmd_kick,
            "trace": self.cmd_trace,
            "nodes": self.cmd_nodes,
        }

    def register(self, name: str, command: Callable[..., Any]) -> None:
        """Add a command (plugins do, e.g. the tests' crash command)."""
        self.commands[name] = command

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()  # a stale socket: the port check has already proved we are alone
        old_umask = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._client, path=str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        log.info("admin socket at %s", self.path)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            request = json.loads(line or b"{}")
            result = self.handle(request.get("cmd", ""), request.get("args", {}))
            if asyncio.iscoroutine(result):
                result = await result
            reply = {"ok": True, "result": result}
        except AdminError as exc:
            reply = {"ok": False, "error": str(exc)}
        except (ValueError, TypeError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        try:
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass  # the asker left without waiting (a second xmppd probing the socket does)
        finally:
            writer.close()

    # --- commands ----------------------------------------------------------------------------

    def handle(self, cmd: str, args: dict) -> Any:
        handler = self.commands.get(cmd)
        if handler is None:
            raise AdminError(f"unknown command {cmd!r}")
        return handler(**args)

    def cmd_status(self) -> dict:
        return {
            "connections": len(self.node.actors),
            "sessions": self.node.sessions.count(),
            "started": self.node.started,
            "uptime_s": round(time.time() - self.node.started, 1),
            "node": self.node.node_id,
            "hosts": list(self.node.hosts),
        }

    async def cmd_nodes(self) -> list[dict]:
        """The nodes of the cluster (this one alone when it runs alone)."""
        if self.node.cluster is not None:
            return await self.node.cluster.nodes()
        return [{"node": self.node.node_id, "alive": True, "this": True, "version": None,
                 "started": self.node.started, "sessions": self.node.sessions.count()}]  # fmt: skip

    def cmd_sessions(self, state: str | None = None, user: str | None = None) -> list[dict]:
        rows = [actor.info() for actor in list(self.node.actors.values())]
        if state:
            rows = [r for r in rows if r["state"] == state]
        if user:
            rows = [r for r in rows if user in (r["user"], r["jid"])]
        return sorted(rows, key=lambda r: r["state_since"])

    def cmd_session(self, id: str) -> dict:
        actor = self.find(id)
        info = actor.info()
        info["transitions"] = actor.history()
        return info

    def cmd_kick(self, id: str, condition: str = "policy-violation") -> dict:
        actor = self.find(id)
        actor.actor_ref.tell(Kick(condition, "kicked by the administrator"))
        return {"kicked": actor.id}

    def cmd_trace(self, id: str, action: str = "start", secrets: bool | None = None) -> dict:
        """Start (with a snapshot of the machine) or stop tracing one session."""
        actor = self.find(id)
        if action == "stop":
            if actor.trace is None:
                raise AdminError(f"session {actor.id} is not being traced")
            path = actor.trace.path
            actor.stop_trace()
            return {"stopped": actor.id, "file": str(path)}
        if action != "start":
            raise AdminError(f"trace {action!r}: want start or stop")
        actor.stop_trace("replaced")
        tracer = self.node.tracing.new(actor.data, secrets=secrets)
        actor.start_trace(tracer, snapshot=True)
        return {"tracing": actor.id, "file": str(tracer.path)}

    def find(self, ident: str) -> Any:
        """The actor of a session by connection id, full JID or stream id."""
        actor = self.node.actors.get(ident)
        if actor is not None:
            return actor
        for candidate in list(self.node.actors.values()):
            if candidate.data.jid is not None and str(candidate.data.jid) == ident:
                return candidate
        for candidate in list(self.node.actors.values()):
            if candidate.data.stream_id == ident:
                return candidate
        raise AdminError(f"no session {ident!r} (give a connection id, full JID or stream id)")
