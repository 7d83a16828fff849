"""Session traces: one file per connection, written by its actor and connection on the loop
thread (no locks). The format is docs/traces.md; fsm/tracefmt.py encodes the values.

Tracing off costs one `if` per event (in the actor) and per chunk of bytes (in the
connection). Tracing on wraps the machine's clock and randomness in recorders, so every value
the machine consumed is in the file, and writes a few lines per event (buffered)."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

from fsm import tracefmt as tf
from fsm.session import C2S

# SASL payloads are redacted unless secrets are recorded: the text of these elements.
_SASL_TEXT = re.compile(
    rb"(<(?:[\w.-]+:)?(?:auth|response|challenge|success)(?:\s[^>]*)?(?<!/)>)([^<]+)(<)"
)


def redact_sasl(data: bytes) -> bytes:
    return _SASL_TEXT.sub(rb"\1" + tf.REDACTED.encode() + rb"\3", data)


FLUSH_EVERY = 1.0  # seconds


class RecordingRandom:
    """Hands out the wrapped source's values and writes each one to the trace."""

    def __init__(self, inner: Any, trace: Tracer) -> None:
        self.inner = inner
        self.trace = trace

    def _take(self, kind: str) -> str:
        value = getattr(self.inner, kind)()
        self.trace.line("random", f"{kind} {value}")
        return value

    def stream_id(self) -> str:
        return self._take("stream_id")

    def nonce(self) -> str:
        return self._take("nonce")

    def resource(self) -> str:
        return self._take("resource")

    def iq_id(self) -> str:
        return self._take("iq_id")


class Tracer:
    """Writes one session's trace. `secrets`: record SASL payloads, passwords, credentials
    and channel bindings (needed for a byte-exact SCRAM replay)."""

    def __init__(
        self,
        path: Path,
        data: C2S,
        *,
        secrets: bool,
        settings: Any = None,
        limits: dict[str, int] | None = None,
    ) -> None:
        self.path = path
        self.secrets = secrets
        self.started = time.time()
        self.file = open(path, "w", encoding="utf-8", buffering=65536)  # noqa: SIM115
        self.original_env = data.env
        self.flushed = time.monotonic()
        header = {
            "conn": data.conn_id,
            "peer": data.peer,
            "started": self.started,
            "secrets": secrets,
            "config": _config(data, secrets),
            "settings": tf.encode(settings) if settings is not None else None,
            # what the connection's parser enforces (max_stanza_bytes): a replay's parser must too
            "limits": limits or {},
        }
        self.file.write(f"{tf.MAGIC}\n@ {json.dumps(header, ensure_ascii=False)}\n")

    def wrap(self, data: C2S) -> C2S:
        """The data with its clock and randomness recorded."""
        random = RecordingRandom(self.original_env.random, self)
        env = dataclasses.replace(self.original_env, clock=self._clock, random=random)
        return dataclasses.replace(data, env=env)

    def unwrap(self, data: C2S) -> C2S:
        return dataclasses.replace(data, env=self.original_env)

    def _clock(self) -> float:
        now = self.original_env.clock()
        self.line("clock", repr(now))
        return now

    def line(self, kind: str, text: str) -> None:
        self.file.write(f"+{time.time() - self.started:.3f} {kind} {text}\n")

    # --- what the actor and the connection report ----------------------------------------

    def snapshot(self, state: str, data: C2S) -> None:
        """`trace start` on a running session: where the machine stands."""
        fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
        for name in ("config", "env", "features"):
            fields.pop(name)
        if not self.secrets and data.tls is not None:
            fields["tls"] = {"version": data.tls.version, "channel_bindings": "[redacted]"}
        self.line("snapshot", f"{state} {tf.dumps(fields)}")

    def init(self, state: str, actions: list) -> None:
        self.line("init", state)
        self.actions(actions)

    def event(self, event: Any) -> None:
        self.line("ev", tf.event_line(event, self.secrets))

    def transition(self, before: str, event: Any, after: str, data: C2S, actions: list) -> None:
        user = f" user={data.user}" if data.user else ""
        self.line("fsm", f"{before} --{type(event).__name__}--> {after}{user}")
        self.actions(actions)
        now = time.monotonic()
        if now - self.flushed > FLUSH_EVERY:  # a live session's trace shows up within a second
            self.file.flush()
            self.flushed = now

    def actions(self, actions: list) -> None:
        for action in actions:
            name = type(action).__name__
            if name in ("Send", "SendHeader", "SendClose"):
                continue  # their bytes appear as `out` lines
            self.line("act", _action(action, self.secrets))

    def input(self, data: bytes) -> None:
        self.line("in", tf.escape(data if self.secrets else redact_sasl(data)))

    def output(self, data: bytes) -> None:
        self.line("out", tf.escape(data if self.secrets else redact_sasl(data)))

    def close(self, reason: str = "") -> None:
        if not self.file.closed:
            self.line("end", reason)
            self.file.close()


def _config(data: C2S, secrets: bool) -> dict:
    config = data.config
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "fake_salt_secret" and not secrets:
            value = tf.REDACTED
        out[f.name] = tf.encode(value)
    return out


def _action(action: Any, secrets: bool) -> str:
    name = type(action).__name__
    if name == "Query":
        call = getattr(action.call, "__qualname__", repr(action.call))
        return f"Query {call} {tf.dumps(action.args)}"
    if not dataclasses.is_dataclass(action):
        return name
    fields = {f.name: getattr(action, f.name) for f in dataclasses.fields(action)}
    if name == "CheckPassword" and not secrets:
        fields["password"] = tf.REDACTED
    return f"{name} {tf.dumps(fields)}" if fields else name


class Tracing:
    """Makes trace files: for every session (`xmppd serve --trace DIR`), or for one on demand
    (`xmppctl trace start ID`, into `directory` or the data directory's traces/)."""

    def __init__(self, directory: Path | None, fallback: Path, *, secrets: bool = False,
                 settings: Any = None, limits: dict[str, int] | None = None) -> None:  # fmt: skip
        self.directory = directory
        self.fallback = fallback
        self.secrets = secrets
        self.settings = settings
        self.limits = limits or {}

    @property
    def every_session(self) -> bool:
        return self.directory is not None

    def new(self, data: C2S, directory: Path | None = None, secrets: bool | None = None) -> Tracer:
        """A trace file for the session whose data this is (docs/traces.md)."""
        directory = Path(directory or self.directory or self.fallback)
        directory.mkdir(parents=True, exist_ok=True)
        secrets = self.secrets if secrets is None else secrets
        path, n = directory / f"{data.conn_id}.trace", 1
        while path.exists():  # traced again after `trace stop`: a new file
            n += 1
            path = directory / f"{data.conn_id}.{n}.trace"
        return Tracer(path, data, secrets=secrets, settings=self.settings, limits=self.limits)
