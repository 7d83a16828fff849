"""Read xmppd's own session traces (docs/traces.md) into the Script model.

Several traces of one node (a directory, or files named one after another) make one Script with
one client per connection id. What the trace recorded to make the replay exact goes into
`Script.recorded[conn_id]`: the events in the order the machine consumed them, the random values
and clock readings, the configuration, the snapshot (`trace start` on a running session)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fsm import tracefmt as tf
from xmppd.replay.script import Client, Script, Step, UnusableLog

KINDS = ("init", "in", "out", "ev", "fsm", "act", "random", "clock", "snapshot", "end")


def is_trace(path: Path) -> bool:
    if path.is_dir():
        return any(is_trace(p) for p in sorted(path.glob("*.trace")))
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().rstrip("\n") == tf.MAGIC
    except OSError:
        return False


def load(paths: list[Path]) -> Script:
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.trace")) if path.is_dir() else [path]
    if not files:
        raise UnusableLog(f"no trace files in {', '.join(map(str, paths))}")
    script = Script(source=", ".join(map(str, paths)), format="xmppd-trace")
    for file in files:
        _read(file, script)
    script.header.setdefault("compare", "exact")
    return script


def _read(path: Path, script: Script) -> None:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnusableLog(f"{path}: cannot read: {exc}") from exc
    if not lines or lines[0] != tf.MAGIC:
        raise UnusableLog(f"{path}: not an xmppd trace (no '{tf.MAGIC}' line)", 1)
    declared: dict[str, str] = {}  # `# key: value` lines: what the file's owner expects
    at = 1
    while at < len(lines) and lines[at].startswith("#"):
        key, sep, value = lines[at][1:].partition(":")
        if sep:
            declared[key.strip()] = value.strip()
        at += 1
    if at >= len(lines) or not lines[at].startswith("@ "):
        raise UnusableLog(f"{path}: the header line ('@ {{...}}') is missing", at + 1)
    try:
        header = json.loads(lines[at][2:])
    except json.JSONDecodeError as exc:
        raise UnusableLog(f"{path}: bad header: {exc}", at + 1) from exc
    name = header.get("conn") or path.stem
    if name in script.clients:
        name = f"{name}.{len(script.clients)}"
    script.clients[name] = Client(name)
    rec: dict[str, Any] = {
        "file": str(path),
        "header": header,
        "secrets": bool(header.get("secrets")),
        "events": [],
        "random": {},
        "clock": [],
        "transitions": [],
        "acts": [],  # (event index, action line) in order
        "sasl": [],  # what the SASL mechanism answered, in order (for redacted replays)
        "snapshot": None,
        "init": None,
        "user": None,
        "declared": declared,
    }
    script.recorded[name] = rec
    if "compare" in declared:
        script.header["compare"] = declared["compare"]
    if not rec["secrets"]:
        script.notes.append(
            f"{name}: recorded without secrets: authentication runs on the recorded outcome"
        )
        script.header["compare"] = "xml"
    sends = 0
    for number, line in enumerate(lines[at + 1 :], start=at + 2):
        if not line or line.startswith("#"):
            continue
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[1] not in KINDS:
            raise UnusableLog(f"{path}: cannot read this line: {line[:60]!r}", number)
        kind, text = parts[1], parts[2] if len(parts) > 2 else ""
        try:
            sends = _line(script, rec, name, kind, text, number, sends)
        except (ValueError, KeyError, TypeError) as exc:
            raise UnusableLog(f"{path}: bad {kind} line: {exc}", number) from exc


def _line(script: Script, rec: dict, name: str, kind: str, text: str, number: int, sends: int):
    if kind in ("in", "out"):
        direction = "send" if kind == "in" else "recv"
        script.steps.append(Step(number, name, direction, text))
        if kind == "in":
            return sends + 1
        _note_sasl(rec, text)
    elif kind == "ev":
        event, _, fields = text.partition(" ")
        entry = {"name": event, "line": number, "sends": sends}
        if event not in tf.PARSER_EVENTS:
            entry["fields"] = json.loads(fields) if fields else {}
        rec["events"].append(entry)
    elif kind == "random":
        what, _, value = text.partition(" ")
        rec["random"].setdefault(what, []).append(value)
    elif kind == "clock":
        rec["clock"].append(float(text))
    elif kind == "fsm":
        before, _, rest = text.partition(" --")
        event, _, rest = rest.partition("--> ")
        after, _, user = rest.partition(" user=")
        rec["transitions"].append((before, event, after))
        if user and rec["user"] is None:
            rec["user"] = user
            rec["sasl"].append(("user", user))
    elif kind == "act":
        action, _, fields = text.partition(" ")
        rec["acts"].append((len(rec["events"]), action, fields))
        if action in ("LoadCredentials", "CheckPassword"):
            rec["sasl"].append((action, json.loads(fields)))
    elif kind == "init":
        rec["init"] = text
    elif kind == "snapshot":
        state, _, fields = text.partition(" ")
        rec["snapshot"] = (state, json.loads(fields))
    return sends


def _note_sasl(rec: dict, text: str) -> None:
    """What the server said in SASL, so a redacted replay can play the same outcome."""
    from lxml import etree

    if not text.startswith(("<challenge", "<success", "<failure")):
        return
    try:
        el = etree.fromstring(tf.unescape(text))
    except etree.XMLSyntaxError:
        return
    local = etree.QName(el).localname
    if local == "failure":
        condition = next((etree.QName(c).localname for c in el if c.tag != _TEXT), "")
        rec["sasl"].append(("failure", [condition, el.findtext(_TEXT)]))
    else:
        rec["sasl"].append((local, el.text))


_TEXT = "{urn:ietf:params:xml:ns:xmpp-sasl}text"
