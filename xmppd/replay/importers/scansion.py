"""Prosody's scansion scripts: a `# title`, `[Client] Name` blocks (jid, password, resource), a
`-----` separator, then `Name connects`, `Name sends:` / `Name receives:` with indented XML, and
`Name disconnects`. Comments start with `#`, `//` or `--`.

Every client becomes a Client; `connects` and `disconnects` become steps of their own
(direction 'connect' / 'disconnect'); a connect is an implied login with the client's jid and
password. `${Name's JID}` / `${Name's full JID}` stay in the XML and are described in
header['placeholders']; how `{scansion:any}`, `{scansion:capture:X}` and `scansion:strict` match
is in header['policy']. docs/replay-formats.md has the details.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..script import Client, Script, Step, UnusableLog
from ._common import Incomplete, split_units

_CLIENT = re.compile(r"^\[Client\]\s*(?P<name>.+?)\s*$")
_FIELD = re.compile(r"^\s+(?P<key>[A-Za-z_-]+)\s*:\s*(?P<value>.*?)\s*$")
_SEPARATOR = re.compile(r"^-{3,}\s*$")
_COMMENT = re.compile(r"^(#|//|--)")
_ACTION = re.compile(r"^(?P<name>\S.*?)\s+(?P<verb>connects|disconnects|sends|receives)\s*:?\s*$")
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_PLACEHOLDER_NAME = re.compile(r"^(?P<name>.+)'s (?P<kind>full JID|JID)$")
_JID_ATTR = re.compile(r"""(?:\bto|\bfrom|\bjid)\s*=\s*["']([^"'${}]+)["']""")

# How a received stanza is compared with the script (docs/replay-formats.md, "scansion").
POLICY = {
    "match": "subset",  # named attributes/children must be there; the server may add more
    "order": "per-client",  # receives are matched in order, per client
    "any": "{scansion:any}",  # attribute value or text matching anything (must be present)
    "capture": "{scansion:capture:NAME}",  # first match binds NAME, later ones must equal it
    "strict_attribute": "scansion:strict",  # 'true': this element exactly; 'false': subset
    "placeholders": "header['placeholders']",  # replaced in sends and receives
    "doc": "docs/replay-formats.md#scansion",
}

# What Prosody's scripts assume of the server (conformance/scansion/README.md).
ASSUMPTIONS = {
    "any_password": True,  # any user and password log in
    "accounts_need_not_exist": True,
    "plaintext_c2s": True,
    "storage": "memory",
}


def detect(text: str) -> int:
    has_client = any(_CLIENT.match(line) for line in text.split("\n"))
    actions = sum(1 for line in text.split("\n") if _ACTION.match(line))
    return (10 + actions * 2) if has_client and actions else 0


def parse(text: str, source: str) -> Script:
    script = Script(source=source, format="scansion")
    lines = text.split("\n")
    clients: dict[str, Client] = {}
    client_lines: dict[str, int] = {}
    resources: dict[str, str] = {}
    current: str | None = None
    in_steps = False
    connected: dict[str, int] = {}
    ever_connected: dict[str, int] = {}  # client: where it last disconnected
    placeholders: dict[str, dict] = {}
    placeholder_lines: dict[str, int] = {}
    i = 0
    while i < len(lines):
        lineno, raw = i + 1, lines[i]
        i += 1
        if not raw.strip():
            continue
        if _SEPARATOR.match(raw):
            in_steps, current = True, None
            continue
        if _COMMENT.match(raw):
            if raw.startswith("#") and "title" not in script.header and not clients:
                script.header["title"] = raw.lstrip("#").strip()
            continue
        m = _CLIENT.match(raw)
        if m and not in_steps:
            current = m.group("name")
            if current in clients:
                raise UnusableLog(f"client {current!r} is defined twice", lineno)
            clients[current] = Client(current)
            client_lines[current] = lineno
            continue
        f = _FIELD.match(raw)
        if f and current is not None and not in_steps:
            key, value = f.group("key").lower(), f.group("value")
            if key == "jid":
                clients[current].jid = value
            elif key == "password":
                clients[current].password = value
            elif key == "resource":
                resources[current] = value
            else:
                script.notes.append(f"line {lineno}: client field {key!r} is not used")
            continue
        a = _ACTION.match(raw)
        if not a:
            raise UnusableLog(
                f"cannot place this line in a scansion script: {raw.strip()[:60]!r}", lineno
            )
        in_steps, current = True, None
        name, verb = a.group("name"), a.group("verb")
        if name not in clients:
            raise UnusableLog(f"{name!r} is not a [Client] of this script", lineno)
        if verb == "connects":
            if name in connected:
                raise UnusableLog(f"{name} connects again without disconnecting", lineno)
            connected[name] = lineno
            script.steps.append(Step(lineno, name, "connect", ""))
            continue
        if verb == "disconnects":
            if name not in connected:
                script.notes.append(
                    f"line {lineno}: {name} disconnects but is not connected: left out"
                )
                continue
            ever_connected[name] = lineno
            del connected[name]
            script.steps.append(Step(lineno, name, "disconnect", "</stream:stream>"))
            continue
        # sends / receives: the indented XML that follows
        block: list[tuple[int, str]] = []
        while i < len(lines) and (not lines[i].strip() or lines[i][:1] in " \t"):
            if lines[i].strip():
                block.append((i + 1, lines[i]))
            i += 1
        if not block:
            raise UnusableLog(f"no XML after '{name} {verb}:'", lineno)
        units = _units(_dedent(block), lineno)
        if name not in connected:
            if name not in ever_connected:
                raise UnusableLog(f"{name} {verb} before connecting", lineno)
            script.notes.append(
                f"line {lineno}: {name} {verb} after disconnecting (line "
                f"{ever_connected[name]}): left out"
            )
            continue
        for u in units:
            script.steps.append(Step(u.line, name, "send" if verb == "sends" else "recv", u.xml))
            for ph in _PLACEHOLDER.findall(u.xml):
                placeholder_lines.setdefault(ph, u.line)
    if not clients:
        raise UnusableLog("no [Client] blocks")
    if not script.steps:
        raise UnusableLog("the script has no steps")
    for name, c in clients.items():
        if not c.jid or "@" not in c.jid:
            raise UnusableLog(f"client {name!r} has no jid", client_lines[name])
        if name in resources and "/" not in c.jid:
            c.jid = f"{c.jid}/{resources[name]}"
        if c.password is None:
            script.notes.append(
                f"client {name!r}: no password: authentication runs on the recorded outcome"
            )
    for ph, line in placeholder_lines.items():
        m = _PLACEHOLDER_NAME.match(ph)
        if not m or m.group("name") not in clients:
            raise UnusableLog(f"unknown placeholder ${{{ph}}}", line)
        c = clients[m.group("name")]
        full = m.group("kind") == "full JID"
        placeholders[f"${{{ph}}}"] = {
            "client": c.name,
            "kind": "full" if full else "bare",
            # the bare JID is known now; the full JID is the one the server binds, unless the
            # client asks for a resource (then it is this value)
            "jid": (c.jid if "/" in c.jid else None) if full else c.jid.split("/", 1)[0],
        }
    used = [s.client for s in script.steps]
    for name in clients:
        if name not in used:
            script.notes.append(f"client {name!r} never connects")
    script.clients = clients
    for name in dict.fromkeys(s.client for s in script.steps if s.direction == "connect"):
        script.implied_login.add(name)
    script.notes.append(
        "scansion clients log in when they connect (an implied login with the [Client] jid "
        "and password); the scripts assume any password logs in"
    )
    domains = list(dict.fromkeys(c.jid.split("/", 1)[0].split("@", 1)[1] for c in clients.values()))
    hosts = {
        j.split("/", 1)[0].rsplit("@", 1)[-1]
        for s in script.steps
        for j in _JID_ATTR.findall(s.xml)
    }
    components = sorted(h for h in hosts if any(h.endswith("." + d) for d in domains))
    script.header.update(
        {
            "domains": domains,
            "components": components,
            "placeholders": placeholders,
            "policy": dict(POLICY),
            "assumptions": dict(ASSUMPTIONS),
            "starts_at": {n: "established" for n in script.implied_login},
        }
    )
    admins = Path(source).with_name("admins.txt") if source and source != "<text>" else None
    if admins is not None and admins.is_file():
        script.header["admins"] = [a.strip() for a in admins.read_text().split() if a.strip()]
    return script


def _dedent(block: list[tuple[int, str]]) -> list[tuple[int, str]]:
    indents = [len(t) - len(t.lstrip(" \t")) for _, t in block]
    cut = min(indents)
    return [(n, t[cut:].rstrip()) for n, t in block]


def _units(block: list[tuple[int, str]], action_line: int) -> list:
    """The XML of one sends/receives block; placeholders are shielded from the XML check."""
    saved: list[str] = []

    def shield(m: re.Match) -> str:
        saved.append(m.group(0))
        return f"${{{len(saved) - 1}}}"

    shielded = [(n, _PLACEHOLDER.sub(shield, t)) for n, t in block]
    try:
        units = split_units(shielded, token=re.compile(r"\$\{\d+\}"))
    except Incomplete as e:
        raise UnusableLog("unterminated XML", e.line) from None
    if not units:
        raise UnusableLog("no XML element in this step", action_line)
    for u in units:
        u.xml = re.sub(r"\$\{(\d+)\}", lambda m: saved[int(m.group(1))], u.xml)
    return units
