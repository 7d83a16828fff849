"""`xmppctl replay FILE`: exit 0 when the replay matches, 1 when it does not, 2 when the input
cannot be used (with the reason and line). Never a traceback."""

from __future__ import annotations

import argparse
from pathlib import Path

from xmppd.replay.script import UnusableLog

MATCH, MISMATCH, UNUSABLE = 0, 1, 2


def pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise UnusableLog(f"{what} wants OLD=NEW, got {value!r}")
        out[key] = rest
    return out


def run(args: argparse.Namespace) -> tuple[str, int]:
    from xmppd.replay import run as engine

    try:
        options = engine.Options(
            until=args.until,
            domain_map=pairs(args.domain_map, "--domain-map"),
            accounts=pairs(args.account, "--account"),
        )
        script = engine.load(Path(args.file))
        if not script.steps:
            raise UnusableLog(f"{args.file}: nothing to replay (no steps)")
        if args.live:
            from xmppd.replay.live import replay_live

            report = replay_live(script, args.live, options, insecure=args.insecure)
        else:
            report = engine.replay(script, options)
    except UnusableLog as exc:
        return f"xmppctl: replay: cannot use {args.file}: {exc}", UNUSABLE
    except (OSError, ValueError) as exc:
        return f"xmppctl: replay: cannot use {args.file}: {exc}", UNUSABLE
    except Exception as exc:  # noqa: BLE001 - a replay reports, it never shows a traceback
        return f"xmppctl: replay: {args.file}: the replay itself failed: {exc!r}", UNUSABLE
    return report.render(args.show), MATCH if report.ok else MISMATCH
