"""Client/server transcripts as RFCs, XEPs and blog posts print them: XML under labels `C:` /
`S:`, `C-S:` / `S-C:`, `C->S:` / `S->C:`, `Client:` / `Server:` (or 客户端: / 服务器:), or under
numbered steps whose sentence says who speaks: "(3) 服务器发送流特性" (服务器 = server,
客户端 = client). XML may span lines; prose between steps is skipped; XML under no label
(an illustration) is skipped with a note. Only the TCP part of a log that goes on to show BOSH
is used. docs/replay-formats.md has the rules.
"""

from __future__ import annotations

import re

from ..script import Script, UnusableLog
from ._common import (
    Builder,
    Incomplete,
    Unit,
    intrinsic_direction,
    iq_direction,
    is_bosh,
    prose_direction,
    split_units,
)

_LABEL = re.compile(
    r"^\s*(?P<lab>C-S|S-C|C->S|S->C|C2S|S2C|Client|Server|CLIENT|SERVER|客户端|客戶端|服务器|服務器"
    r"|C|S)\s*[:：]\s?(?P<rest>.*)$"
)
_HEADING = re.compile(r"^\s*[(（]\s*\d+\s*[)）]\s*(?P<text>.*)$")
_SENDERS = {"C-S", "C->S", "C2S", "Client", "CLIENT", "客户端", "客戶端", "C"}


def detect(text: str) -> int:
    score = 0
    for line in text.split("\n"):
        if _LABEL.match(line):
            score += 1
        else:
            m = _HEADING.match(line)
            if m and prose_direction(m.group("text")):
                score += 1
    return score


class _Scope:
    """The label XML is currently under: its direction and whether it is explicit (C:/S:) or
    guessed from a numbered step's sentence."""

    def __init__(self, direction: str | None, explicit: bool, line: int) -> None:
        self.direction = direction
        self.explicit = explicit
        self.line = line


def parse(text: str, source: str) -> Script:
    script = Script(source=source, format="transcript")
    b = Builder(script)
    if "\u00a0" in text:
        text = text.replace("\u00a0", " ")
        b.note("non-breaking spaces (a copy from a web page) were read as spaces")
    lines = text.split("\n")
    scope: _Scope | None = None
    block: list[tuple[int, str]] = []
    block_scope: _Scope | None = None
    stop_at: int | None = None
    skipped: list[int] = []

    def place(units: list[Unit], sc: _Scope | None) -> None:
        nonlocal stop_at
        for u in units:
            if is_bosh(u):
                stop_at = u.line
                return
            if sc is None:
                skipped.append(u.line)
                continue
            own = intrinsic_direction(u)
            if sc.explicit:
                d = sc.direction
                if own not in (None, d):
                    b.note(
                        f"line {u.line}: <{u.tag}> is labelled as sent by the "
                        f"{'client' if d == 'send' else 'server'} (line {sc.line}); kept so"
                    )
            else:
                d = own or sc.direction or iq_direction(u)
            if d is None:
                raise UnusableLog(
                    f"cannot tell who sent this <{u.tag}>: the step heading at line {sc.line} "
                    "names neither client nor server",
                    u.line,
                )
            b.add(u, d)

    def complete(pieces: list[tuple[int, str]]) -> list[Unit] | None:
        try:
            return split_units(pieces)
        except Incomplete:
            return None

    for lineno, raw in enumerate(lines, 1):
        if stop_at:
            break
        m = _LABEL.match(raw)
        if block:
            sc = block_scope
            if m and sc and sc.explicit and _dir(m.group("lab")) == sc.direction:
                block.append((lineno, m.group("rest")))  # `C: ` on every line of the XML
            elif m or _HEADING.match(raw):
                raise UnusableLog(
                    f"unterminated XML: a new step begins at line {lineno}", block[0][0]
                )
            else:
                block.append((lineno, raw))
            units = complete(block)
            if units is not None:
                place(units, block_scope)
                block = []
            continue
        if m:
            scope = _Scope(_dir(m.group("lab")), True, lineno)
            rest = m.group("rest")
            if rest.lstrip().startswith("<"):
                block, block_scope = [(lineno, rest)], scope
                units = complete(block)
                if units is not None:
                    place(units, scope)
                    block = []
            continue
        h = _HEADING.match(raw)
        if h:
            d = prose_direction(h.group("text"))
            scope = _Scope(d, False, lineno) if d else None
            continue
        if raw.strip().startswith("<"):
            block, block_scope = [(lineno, raw)], scope
            units = complete(block)
            if units is not None:
                place(units, scope)
                block = []
            continue
        # prose: skipped
    if block and not stop_at:
        b.note(f"line {block[0][0]}: the log ends inside an element; it is left out")
    if skipped:
        where = ", ".join(str(n) for n in skipped)
        b.note(f"XML under no client/server label skipped as illustration (lines {where})")
    if stop_at:
        if not script.steps:
            raise UnusableLog("the log shows only a BOSH session, which is not replayed", stop_at)
        b.note(
            f"lines {stop_at}-{len(lines)}: the BOSH part of the log is not replayed "
            "(only the TCP session is)"
        )
    if not script.steps and skipped:
        raise UnusableLog(
            "no XML is labelled as sent by the client or the server (C:/S:, C-S:/S-C:, "
            "Client:/Server:, or numbered steps naming 客户端/服务器)",
            skipped[0],
        )
    return b.finish()


def _dir(label: str) -> str:
    return "send" if label in _SENDERS else "recv"
