"""ejabberd's debug-log style: `RECV <...>` (the server received: the client sent) and
`SENT <...>` (the server sent: the client received), numbered or not, an element spanning as
many lines as it likes; also ejabberd's own `Received XML on stream = <<"...">>` /
`Send XML on stream = <<"...">>` debug lines, where the Erlang pid names the connection.

Bare XML between prose (a blog post retelling a login) is placed by what the element is
(only the server sends <challenge/>), else by the nearest sentence saying who sends, else (an
iq) by its type. docs/replay-formats.md has the rules.
"""

from __future__ import annotations

import re

from ..script import Script, UnusableLog
from ._common import (
    Builder,
    Incomplete,
    Prose,
    Unit,
    intrinsic_direction,
    iq_direction,
    is_bosh,
    split_units,
)

_NUM = re.compile(r"^\s*\d+\.(?:[ \t]|$)(.*)$")
# after the word: XML, or the rest of an element a socket read cut (`/></iq>`), or nothing
_DIR = re.compile(r"^(?P<pre>[^<]{0,80}?)\b(?P<dir>RECV|SENT)\b\s*:?\s*(?P<rest>[^<>]*[<>].*)?$")
_ONSTREAM = re.compile(
    r"^(?P<pre>.*?)\b(?P<dir>Received|Send|Sending|Sent) XML on stream\s*=\s*(?P<rest>.*)$"
)
_PID = re.compile(r"<\d+\.\d+\.\d+>")
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")
_MAP = {"RECV": "send", "Received": "send", "SENT": "recv", "Send": "recv", "Sending": "recv"}
_MAP["Sent"] = "recv"


def _direction_line(body: str) -> re.Match | None:
    m = _DIR.match(body)
    if m and not _CJK.search(m.group("pre")):
        return m
    m = _ONSTREAM.match(body)
    return m


def detect(text: str) -> int:
    score = 0
    for line in text.split("\n"):
        m = _NUM.match(line)
        if _direction_line(m.group(1) if m else line):
            score += 2
    return score


def _erlang(value: str) -> str:
    v = value.strip()
    if v.startswith('<<"') and v.endswith('">>'):
        v = v[3:-3]
    elif len(v) >= 2 and v[0] == v[-1] == '"':
        v = v[1:-1]
    else:
        return value
    esc = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'"}
    return re.sub(r"\\(.)", lambda m: esc.get(m.group(1), m.group(0)), v)


class _Block:
    def __init__(self, direction: str | None, client: str, labelled: bool) -> None:
        self.direction = direction
        self.client = client
        self.labelled = labelled
        self.pieces: list[tuple[int, str]] = []

    def complete(self) -> bool:
        try:
            split_units(self.pieces)
        except Incomplete:
            return False
        except UnusableLog:
            return True  # flushing reports it
        return True


def parse(text: str, source: str) -> Script:
    script = Script(source=source, format="ejabberd")
    b = Builder(script)
    if "\u00a0" in text:
        text = text.replace("\u00a0", " ")
        b.note("non-breaking spaces (a copy from a web page) were read as spaces")
    lines = text.split("\n")
    placed: list[tuple[Unit, str | None, str, bool]] = []  # unit, direction, client, labelled
    prose = Prose()
    block: _Block | None = None
    pending: _Block | None = None  # a RECV/SENT chunk that ended inside an element
    stop_at: int | None = None
    pids: dict[str, str] = {}

    def flush(blk: _Block | None, final: bool = False) -> None:
        nonlocal pending, stop_at
        if blk is None or not blk.pieces or stop_at:
            return
        if pending is not None:
            if (pending.direction, pending.client) != (blk.direction, blk.client):
                raise UnusableLog(
                    "unterminated XML (the next chunk goes the other way)", pending.pieces[0][0]
                )
            pending.pieces += blk.pieces
            blk, pending = pending, None
        try:
            units = split_units(blk.pieces)
        except Incomplete as e:
            if blk.labelled and not final:
                pending = blk  # ejabberd logs socket reads: an element may span chunks
                return
            if final:
                b.note(f"line {e.line}: the log ends inside an element; it is left out")
                units = _complete_prefix(blk.pieces)
            else:
                raise UnusableLog("unterminated XML", e.line) from None
        for u in units:
            if is_bosh(u):
                stop_at = u.line
                return
            if blk.labelled:
                placed.append((u, blk.direction, blk.client, True))
                prose.clear()
                continue
            d = intrinsic_direction(u)
            if d is None:
                d, _ = prose.direction()
            d = d or iq_direction(u)
            if d is None:
                if not placed:
                    b.note(f"line {u.line}: <{u.tag}> before the session, said by nobody: skipped")
                    continue
                raise UnusableLog(
                    f"cannot tell who sent this <{u.tag}>: neither RECV/SENT nor the text "
                    "around it says",
                    u.line,
                )
            placed.append((u, d, blk.client, False))
            prose.clear()

    i = 0
    while i < len(lines) and not stop_at:
        lineno, raw = i + 1, lines[i]
        i += 1
        m = _NUM.match(raw)
        body, numbered = (m.group(1), True) if m else (raw, False)
        md = _direction_line(body)
        if md:
            flush(block)
            pid = _PID.search(md.group("pre") or "")
            client = pids.setdefault(pid.group(0), pid.group(0)) if pid else "client"
            block = _Block(_MAP[md.group("dir")], client, True)
            rest = md.group("rest") or ""
            if "XML on stream" in md.group(0):
                while rest.lstrip().startswith('<<"') and not rest.rstrip().endswith('">>'):
                    if i >= len(lines):
                        raise UnusableLog("unterminated Erlang binary", lineno)
                    rest += "\n" + lines[i]
                    i += 1
                rest = _erlang(rest)
            if rest.strip():
                block.pieces.append((lineno, rest))
            continue
        stripped = body.strip()
        if block is not None:
            if not stripped:
                if block.complete():
                    flush(block)
                    block = None
                else:
                    block.pieces.append((lineno, body))
                continue
            if (block.labelled and numbered) or stripped.startswith("<") or not block.complete():
                block.pieces.append((lineno, body))
                if not block.labelled and block.complete():
                    flush(block)
                    block = None
                continue
            flush(block)
            block = None
        if stripped.startswith("<"):
            block = _Block(None, "client", False)
            block.pieces.append((lineno, body))
            if block.complete():
                flush(block)
                block = None
            continue
        prose.add(lineno, body)
    if not stop_at:
        flush(block, final=True)
        if pending is not None:
            flush(_Block(pending.direction, pending.client, True), final=True)
    if stop_at:
        if not placed:
            raise UnusableLog("the log shows only a BOSH session, which is not replayed", stop_at)
        b.note(
            f"lines {stop_at}-{len(lines)}: the BOSH part of the log is not replayed "
            "(only the TCP session is)"
        )

    labelled = [(u, d) for u, d, _, lab in placed if lab]
    agree = sum(1 for u, d in labelled if intrinsic_direction(u) == d)
    disagree = sum(1 for u, d in labelled if intrinsic_direction(u) not in (None, d))
    flip = disagree > agree
    if flip:
        b.note(
            "RECV/SENT are written from the client's side in this log (it SENDs <auth/> and "
            "RECVs <stream:features/>): read the other way round"
        )
    names = set(pids)
    for u, d, client, lab in placed:
        if lab and flip:
            d = "send" if d == "recv" else "recv"
        if lab and not flip and intrinsic_direction(u) not in (None, d):
            b.note(f"line {u.line}: <{u.tag}> logged as going the unusual way round")
        if len(names) <= 1:
            client = "client"
        b.add(u, d, client)
    _starttls_without_proceed(b)
    return b.finish()


def _complete_prefix(pieces: list[tuple[int, str]]) -> list[Unit]:
    """The units before the element the log stops inside."""
    for cut in range(len(pieces) - 1, 0, -1):
        try:
            return split_units(pieces[:cut])
        except Incomplete:
            continue
    return []


def _starttls_without_proceed(b: Builder) -> None:
    steps = b.units
    for k, (u, client, d) in enumerate(steps):
        if u.tag == "starttls" and d == "send":
            nxt = next(((v, e) for v, c, e in steps[k + 1 :] if c == client and e == "recv"), None)
            if nxt is None or nxt[0].tag not in ("proceed", "failure"):
                b.note(
                    f"line {u.line}: the log shows no <proceed/> answering <starttls/>; the "
                    "TLS handshake is taken as done"
                )
