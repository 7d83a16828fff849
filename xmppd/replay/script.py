"""The model every log becomes before it is replayed: who said what to the server, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class UnusableLog(Exception):
    """The input cannot be replayed; `line` says where (1-based), when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


@dataclass
class Step:
    """One thing on the wire. `direction` is 'send' (client to server) or 'recv' (server to
    client). `xml` is text as logged: a stream header may be open (no end tag), a close may be
    a bare `</stream:stream>`. `line` is where it starts in the source."""

    line: int
    client: str
    direction: str
    xml: str


@dataclass
class Client:
    """A client the log implies. `password` None: authentication runs on the recorded outcome
    (the replay says so)."""

    name: str
    jid: str | None = None  # bare or full JID the client logs in as, when known
    password: str | None = None


@dataclass
class Script:
    """A log, ready to replay. `header` holds what the file declares (expected state
    sequence, comparison policy, placeholders); `notes` what the importer assumed (an implied
    login, no password, a mechanism xmppd lacks); `recorded` what an xmppd trace captured to
    make the replay exact (random values, clock readings, query results, per client)."""

    source: str
    format: str  # 'xmppd-trace', 'ejabberd', 'transcript', 'scansion'
    steps: list[Step] = field(default_factory=list)
    clients: dict[str, Client] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    recorded: dict[str, Any] = field(default_factory=dict)
    implied_login: set[str] = field(default_factory=set)  # clients whose log starts after login
