"""Importers: logs written by others (and xmppd's own traces) into a replayable Script.

`load(path)` reads a file, works out its format and returns the Script, or raises
UnusableLog(message, line) for input it cannot use; never anything else. docs/replay-formats.md
describes the formats and the rules for untidy logs.

Formats are kept in FORMATS, in order of preference on a tie: (name, detect, parse) where
`detect(text) -> int` scores how much of the text looks like that format (0: not at all) and
`parse(text, source) -> Script`. Another format (xmppd's trace) joins with `register()`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..script import Script, UnusableLog
from . import ejabberd, scansion, transcript

_NOT_C2S = [
    ("jabber:server", "a server-to-server (s2s) log"),
    ("<db:result", "a server-to-server (dialback) log"),
    ("jabber:component:accept", "an external component (XEP-0114) log"),
    ("jabber:connectionmanager", "a connection-manager log"),
]

Detect = Callable[[str], int]
Parse = Callable[[str, str], Script]

FORMATS: list[tuple[str, Detect, Parse]] = [
    ("scansion", scansion.detect, scansion.parse),
    ("ejabberd", ejabberd.detect, ejabberd.parse),
    ("transcript", transcript.detect, transcript.parse),
]

__all__ = ["FORMATS", "UnusableLog", "detect", "load", "parse", "read_text", "register"]


def register(name: str, detect_fn: Detect, parse_fn: Parse, first: bool = True) -> None:
    """Add a format (e.g. 'xmppd-trace'); `first` puts it ahead of the others on a tie."""
    FORMATS[:] = [f for f in FORMATS if f[0] != name]
    FORMATS.insert(0 if first else len(FORMATS), (name, detect_fn, parse_fn))


def read_text(path: str | Path) -> str:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise UnusableLog(f"cannot read {path}: {e.strerror or e}") from None
    if b"\0" in raw:
        line = raw[: raw.index(b"\0")].count(b"\n") + 1
        raise UnusableLog("binary data (NUL byte), not a text log", line)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UnusableLog("not UTF-8 text", line) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def detect(text: str) -> str:
    """The name of the format `text` is in; UnusableLog when none fits."""
    best, score = None, 0
    for name, detect_fn, _ in FORMATS:
        s = detect_fn(text)
        if s > score:
            best, score = name, s
    if best is None:
        for marker, what in _NOT_C2S:
            if marker in text:
                line = text[: text.index(marker)].count("\n") + 1
                raise UnusableLog(f"{what}: the replay drives client-to-server sessions only", line)
        line = next((i for i, t in enumerate(text.split("\n"), 1) if "<" in t), None)
        raise UnusableLog(
            "not a log this importer knows: expected RECV/SENT lines (ejabberd), C:/S: "
            "client/server labels (transcript), or a scansion script ([Client] blocks, "
            "'Name sends:' steps)" + ("" if line else "; the file holds no XML at all"),
            line or (1 if text.strip() else None),
        )
    return best


def parse(text: str, source: str = "<text>", format: str | None = None) -> Script:
    """Import `text`; `format` forces one of FORMATS' names instead of detecting it."""
    name = format or detect(text)
    for fname, _, parse_fn in FORMATS:
        if fname == name:
            try:
                return parse_fn(text, source)
            except UnusableLog:
                raise
            except RecursionError:
                raise UnusableLog("XML nested too deeply to import") from None
            except Exception as e:  # an importer bug must still not surface as a traceback
                raise UnusableLog(f"the {name} importer failed: {type(e).__name__}: {e}") from e
    raise UnusableLog(f"unknown log format {name!r} (known: {', '.join(f[0] for f in FORMATS)})")


def load(path: str | Path, format: str | None = None) -> Script:
    """Read and import the log at `path`."""
    return parse(read_text(path), str(path), format)
