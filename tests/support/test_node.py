"""`python -m tests.support.test_node serve ...`: xmppd with the tests' admin plugin, which adds
a `crash` command (make one session's actor raise, to exercise the supervisor's clean end).
Production xmppd has no such command."""

from __future__ import annotations

import sys
from typing import Any


class _CrashOnce:
    """Stands in for a host's step function: raises once, as a bug in a machine would."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.step = host.step

    def __call__(self, state: str, event: Any, data: Any) -> Any:
        self.host.step = self.step
        raise RuntimeError("test-only crash requested through the admin socket")


def crash_plugin(node: Any, admin: Any) -> None:
    def crash(id: str) -> dict:
        actor = admin.find(id)
        actor.step = _CrashOnce(actor)
        actor.actor_ref.tell(("crash", "the next event crashes the session"))
        return {"crashed": actor.id}

    admin.register("crash", crash)


if __name__ == "__main__":
    from xmppd.cli import main

    sys.exit(main(plugins=[crash_plugin]))
