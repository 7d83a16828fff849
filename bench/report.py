"""The Markdown table of a run: one row per figure, each server's value with the server's and
the generator's CPU use beside it (a generator near 100% means the figure is the generator's
limit, not the server's)."""

from __future__ import annotations


def _num(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{round(value):,}"


def _cpu(entry: dict | None) -> str:
    if entry is None:
        return "–"
    server, gen = entry.get("server_cpu_pct"), entry.get("generator_cpu_pct")
    text = f"{_num(server)}% / {_num(gen)}%"
    if entry.get("others_cpu_pct") is not None:
        text += f" / {_num(entry['others_cpu_pct'])}%"
    return text


def _rows(result: dict) -> list[tuple[str, str, dict[str, dict], callable, bool]]:
    """(figure, unit, entries by server, value getter, higher is better)."""
    by: dict[tuple, dict[str, dict]] = {}
    order: list[tuple] = []
    for entry in result.get("results", []):
        scenario = entry.get("scenario")
        if scenario in ("login", "session"):
            key = (scenario, entry["mechanism"])
        elif scenario == "flood":
            key = ("flood",)
        elif scenario == "idle":
            key = ("idle", entry["target"])
        elif scenario == "roster":
            key = ("roster", entry["users"], entry["contacts"])
        else:
            continue
        if key not in by:
            by[key] = {}
            order.append(key)
        by[key][entry["server"]] = entry
    rows = []
    for key in order:
        entries = by[key]
        if key[0] in ("login", "session"):
            name = (
                f"login storm, {key[1]} over STARTTLS"
                if key[0] == "login"
                else f"client session (STARTTLS, {key[1]}, bind, roster, presence, logout)"
            )
            rows.append((f"{name}: logins/s", entries, lambda e: e["logins_per_s"], True))
            rows.append(
                (f"{name}: logins per server CPU-second", entries, _per_cpu("logins_per_s"), True)
            )
            rows.append((f"{name}: p50 / p99 ms", entries, _p50p99, False))
        elif key[0] == "flood":
            e0 = next(iter(entries.values()))
            name = f"message flood, {e0['pairs']} pairs × window {e0['window']}, STARTTLS"
            rows.append((f"{name}: delivered msgs/s", entries, lambda e: e["msgs_per_s"], True))
            rows.append(
                (f"{name}: msgs per server CPU-second", entries, _per_cpu("msgs_per_s"), True)
            )
            rows.append((f"{name}: p50 / p99 ms", entries, _p50p99, False))
            rows.append((f"{name}: lost", entries, lambda e: e["lost"], False))
        elif key[0] == "roster":
            name = f"roster/presence, {key[1]:,} users × {key[2]} contacts, STARTTLS"
            rows.append(
                (f"{name}: presences delivered/s", entries, lambda e: e["presences_per_s"], True)
            )
            rows.append(
                (f"{name}: per server CPU-second", entries, _per_cpu("presences_per_s"), True)
            )
            rows.append((f"{name}: fan-out p50 / p99 ms", entries, _p50p99, False))
            rows.append((f"{name}: lost", entries, lambda e: e["lost"], False))
            rows.append(
                (
                    f"{name}: all users log in, get the roster, send initial presence: s",
                    entries,
                    lambda e: e.get("login_phase_s"),
                    False,
                )
            )
            e0 = next(iter(entries.values()))
            if e0.get("big_roster"):
                big = (
                    f"login with a {e0['big_roster']}-item roster ({e0['big_online_contacts']}"
                    " contacts online): bound / roster / all presences ms (median of "
                    f"{e0.get('big_logins', '?')})"
                )
                rows.append((big, entries, _big, False))
        else:
            rows.append(
                (
                    f"idle TLS connections, {key[1]:,}: KiB RSS each (connected)",
                    entries,
                    _idle,
                    False,
                )
            )
    return rows


def _per_cpu(key: str):
    """The rate divided by the server's CPU share: what one whole core would do, which stays
    comparable when other processes took part of the server's core (a noisy box)."""

    def getter(entry: dict) -> float | None:
        cpu = entry.get("server_cpu_pct")
        return round(entry[key] / (cpu / 100), 1) if cpu else None

    return getter


def _p50p99(entry: dict) -> str:
    return f"{_num(entry.get('p50_ms'), 1)} / {_num(entry.get('p99_ms'), 1)}"


def _big(entry: dict) -> str:
    return " / ".join(
        _num(entry.get(k), 1) for k in ("big_bound_ms", "big_roster_ms", "big_presences_ms")
    )


def _idle(entry: dict) -> str:
    return f"{_num(entry.get('kib_per_connection'), 1)} ({entry.get('connected', 0):,})"


def _ratio(rows_entries: dict[str, dict], getter, servers: list[str]) -> str:
    if len(servers) < 2 or not all(s in rows_entries for s in servers[:2]):
        return "–"
    try:
        a, b = (getter(rows_entries[s]) for s in servers[:2])
        if isinstance(a, str) or not b:
            return "–"
        return f"{a / b:.2f}×"
    except (KeyError, TypeError, ZeroDivisionError):
        return "–"


def markdown(result: dict) -> str:
    servers = list(result.get("servers", {})) or sorted(
        {e["server"] for e in result.get("results", [])}
    )
    head = (
        "| figure | "
        + " | ".join(f"{s} | {s} CPU: server / gen. / others" for s in servers)
        + (f" | {servers[0]} ÷ {servers[1]} |" if len(servers) > 1 else " |")
    )
    sep = "|---|" + "---:|---:|" * len(servers) + ("---:|" if len(servers) > 1 else "")
    lines = [head, sep]
    for figure, entries, getter, higher in _rows(result):
        cells = []
        for s in servers:
            entry = entries.get(s)
            value = getter(entry) if entry else None
            cells.append(value if isinstance(value, str) else _num(value, 1))
            cells.append(_cpu(entry))
        # the ratio column is for rates (higher is better); times and sizes stand side by side
        ratio = (_ratio(entries, getter, servers) if higher else "–") if len(servers) > 1 else None
        lines.append(f"| {figure} | " + " | ".join(cells) + (f" | {ratio} |" if ratio else " |"))
    errors = [e for e in result.get("results", []) if e.get("scenario") == "error"]
    notes = []
    for e in result.get("results", []):
        if e.get("errors"):
            notes.append(
                f"- {e['server']} {e['scenario']} {e.get('mechanism') or e.get('target') or ''}:"
                f" {e['errors']} failed logins, e.g. {e.get('error_sample', [''])[:1]}"
            )
        if e.get("scenario") == "flood" and (e.get("gaps") or e.get("reordered")):
            notes.append(
                f"- {e['server']} flood: {e.get('gaps')} gaps, {e.get('reordered')} reordered"
            )
    for e in errors:
        notes.append(f"- {e['server']}: scenario failed: {e['error']}")
    m = result.get("machine", {})
    versions = "; ".join(v.get("version", k) for k, v in result.get("servers", {}).items())
    footer = [
        "",
        f"Command: `{result.get('command', '?')}` ({result.get('started', '?')}).",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
        f"{m.get('memory_gib', '?')} GiB, {m.get('os', '?')}, Linux {m.get('kernel', '?')}, "
        f"{m.get('openssl', '?')}, open-file limit {m.get('open_files', '?')}.",
        f"Servers: {versions}. Each server pinned to core "
        f"{result.get('settings', {}).get('server_core', 0)}, the generator to core "
        f"{result.get('settings', {}).get('generator_core', 1)}. CPU columns: the server's and "
        "the generator's CPU use (100% = one core) over the measured window (for idle rows: over "
        "the ramp-up logins), and the rest of the machine's (other processes on a shared box; "
        "a large figure there means a noisy measurement).",
    ]
    if notes:
        footer += ["", *notes]
    return "\n".join(lines + footer)
