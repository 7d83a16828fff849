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


def _holder(cluster: Any, ident: str) -> str | None:
    """The node the cluster's session table says holds full JID `ident`, if it is one."""
    from xmpp.jid import JID, JIDMalformed

    try:
        jid = JID.parse(ident)
    except JIDMalformed:
        return None
    return cluster.node_of_session(jid) if jid.resource else None


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
            "counts": self.cmd_counts,
            # What one node answers another (cluster.member.ClusterMember.ask):
            "local_sessions": self.local_sessions,
            "local_session": self.local_session,
            "local_kick": self.local_kick,
            "local_counts": self.local_counts,
        }
        if node.cluster is not None:
            node.cluster.answer_with = self.handle

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

    async def cmd_sessions(self, state: str | None = None, user: str | None = None,
                           node: str | None = None) -> list[dict]:  # fmt: skip
        """Every connection of the cluster (of this node when it runs alone), oldest state
        first; `node` keeps one node's."""
        args = {"state": state, "user": user}
        if self.node.cluster is None:
            if node not in (None, self.node.node_id):
                raise AdminError(f"no node {node!r} (this node, {self.node.node_id}, runs alone)")
            return self.local_sessions(**args)
        nodes = [node] if node else self.node.cluster.alive()
        answers = await asyncio.gather(*(self.node.cluster.ask(n, "local_sessions", args)
                                         for n in nodes))  # fmt: skip
        rows: list[dict] = []
        for ok, result in answers:
            if not ok:
                raise AdminError(result)
            rows.extend(result)
        return sorted(rows, key=lambda r: r["state_since"])

    def local_sessions(self, state: str | None = None, user: str | None = None) -> list[dict]:
        rows = [actor.info() for actor in list(self.node.actors.values())]
        if state:
            rows = [r for r in rows if r["state"] == state]
        if user:
            rows = [r for r in rows if user in (r["user"], r["jid"])]
        for row in rows:
            row["node"] = self.node.node_id
        return sorted(rows, key=lambda r: r["state_since"])

    async def cmd_session(self, id: str, since: int = 0, node: str | None = None) -> dict:
        """One session with its transitions after the `since`-th (on `node`, when known)."""
        cluster = self.node.cluster
        if node is not None and cluster is not None and node != self.node.node_id:
            ok, result = await cluster.ask(node, "local_session", {"id": id, "since": since})
            if not ok:
                raise AdminError(result)
            return result
        return await self._anywhere("local_session", id, since=since)

    def local_session(self, id: str, since: int = 0) -> dict:
        """A running session, else one that ended lately (with `ended_at`)."""
        try:
            actor = self.find(id)
        except AdminError:
            ended = self.find_ended(id)
            if ended is None:
                raise
            info = dict(ended.info, ended_at=ended.at, transitions=ended.history(since))
        else:
            info = actor.info()
            info["transitions"] = actor.history(since)
        info["node"] = self.node.node_id
        return info

    def find_ended(self, ident: str) -> Any:
        ended = self.node.ended.get(ident)
        if ended is None:
            for candidate in reversed(self.node.ended.values()):
                if ident in (candidate.info["jid"], candidate.info["stream_id"]):
                    return candidate
        return ended

    async def cmd_counts(self) -> dict:
        """Connections by c2s state, per node of the cluster (`sessions --watch`)."""
        cluster = self.node.cluster
        counts = {self.node.node_id: self.local_counts()}
        if cluster is not None:
            others = cluster.alive()[1:]
            answers = await asyncio.gather(*[cluster.ask(n, "local_counts", {}) for n in others])
            for node, (ok, result) in zip(others, answers, strict=True):
                counts[node] = result if ok else {"error": result}
        return counts

    def local_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for actor in list(self.node.actors.values()):
            counts[actor.state] = counts.get(actor.state, 0) + 1
        return counts

    async def cmd_kick(self, id: str, condition: str = "policy-violation") -> dict:
        return await self._anywhere("local_kick", id, condition=condition)

    def local_kick(self, id: str, condition: str = "policy-violation") -> dict:
        actor = self.find(id)
        actor.actor_ref.tell(Kick(condition, "kicked by the administrator"))
        return {"kicked": actor.id, "node": self.node.node_id}

    async def _anywhere(self, cmd: str, id: str, **args: Any) -> dict:
        """Run a local command on the node that holds session `id` (this one first)."""
        cluster = self.node.cluster
        try:
            return self.handle(cmd, {"id": id, **args})
        except AdminError:
            if cluster is None:
                raise
        holder = _holder(cluster, id)
        errors = []
        for node in [holder] if holder else cluster.alive()[1:]:
            ok, result = await cluster.ask(node, cmd, {"id": id, **args})
            if ok:
                return result
            errors.append(result)
        gone = [e for e in errors if "did not answer" in e]
        raise AdminError(gone[0] if gone else f"no session {id!r} on any node of the cluster "
                         "(give a connection id, full JID or stream id)")  # fmt: skip

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
