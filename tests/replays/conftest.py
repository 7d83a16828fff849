"""Every log under tests/replays/ is a test: it is replayed into the c2s machine and must match.

A file may declare, in its header, the state sequence it expects and the comparison policy
(docs/traces.md, "Replay policy"). Traces are recorded with tests/replays/record.py; logs in
other formats go through xmppd.replay.importers."""

from __future__ import annotations

from pathlib import Path

import pytest

SUFFIXES = (".trace", ".log", ".txt", ".scs", ".xmpp")


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if file_path.suffix in SUFFIXES and file_path.name != "README.txt":
        return ReplayFile.from_parent(parent, path=file_path)
    return None


class ReplayMismatch(Exception):
    pass


class ReplayFile(pytest.File):
    def collect(self):
        yield ReplayItem.from_parent(self, name=f"replay[{self.path.name}]")


class ReplayItem(pytest.Item):
    def runtest(self) -> None:
        from xmppd.replay.run import load, replay

        report = replay(load(self.path))
        if not report.ok:
            raise ReplayMismatch(report.render("diff"))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ReplayMismatch):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, 0, f"replay of {self.path.name}"
