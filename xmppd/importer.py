"""`xmppctl user import`: derive SCRAM credentials for many accounts on every core, store once."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TextIO

from xmpp.sasl import new_credentials

BATCH = 1000


def _derive(job: tuple[str, str, str, int]) -> tuple[str, str, dict]:
    username, domain, password, iterations = job
    return username, domain, new_credentials(password, iterations=iterations)


def parse_lines(
    source: TextIO, account: Callable[[str], tuple[str, str]], error: type[Exception]
) -> list[tuple[str, str, str]]:
    """'JID PASSWORD' per line, split at the first whitespace; blank and '#' lines skipped.
    Every line is checked before anything is stored, so a bad file changes nothing."""
    rows, seen = [], set()
    for number, line in enumerate(source, 1):
        line = line.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().split(None, 1)
        if len(parts) != 2 or not parts[1]:
            raise error(f"line {number}: want 'JID PASSWORD'")
        try:
            username, domain = account(parts[0])
        except error as exc:
            raise error(f"line {number}: {exc}") from exc
        if (username, domain) in seen:
            raise error(f"line {number}: {username}@{domain} appears twice")
        seen.add((username, domain))
        rows.append((username, domain, parts[1]))
    return rows


def import_accounts(
    config: Any, storage: Any, source: TextIO, account: Callable, error: type[Exception]
) -> tuple[int, int]:
    rows = parse_lines(source, lambda text: account(config, text), error)
    iterations = config.sasl.scram_iterations
    jobs = [(u, d, p, iterations) for u, d, p in rows]
    created = updated = 0
    for batch in _derived(jobs):
        c, u = storage.accounts.put_many(batch)
        created, updated = created + c, updated + u
    return created, updated


def _derived(jobs: list) -> Iterable[list]:
    if len(jobs) < 50:
        yield [_derive(job) for job in jobs]
        return
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = pool.map(_derive, jobs, chunksize=64)
        batch = []
        for row in results:
            batch.append(row)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
