"""Server-side work per account, in order: work for one account runs on one lane, one job after
the other, and a stanza delivered to an account waits behind the work already started for it,
so that stanzas from one entity to another arrive in the order sent (RFC 6120 §10.1) even when
one of them needed storage work first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Lanes(Protocol):
    """Where the work runs: `submit(account, call, args, done)` runs `call(storage, *args)`
    after every earlier job of the same account and calls `done(result)` (the value, or the
    exception raised) back on the caller's thread, in submission order. The node runs jobs on
    its storage lanes; a replay world runs them when its machines are idle."""

    def submit(
        self, account: str, call: Callable[..., Any], args: tuple, done: Callable[[Any], None]
    ) -> None: ...


class AccountWork:
    """Counts the jobs started per account; only the router's thread touches it."""

    def __init__(self, lanes: Lanes) -> None:
        self.lanes = lanes
        self.pending: dict[str, int] = {}
        self.completing: str | None = None  # the account whose job is being finished now

    def run(self, account: str, call: Callable[..., Any], args: tuple,
            then: Callable[[Any], None]) -> None:  # fmt: skip
        """Run `call(storage, *args)` in the account's order; `then(result)` afterwards."""
        self.pending[account] = self.pending.get(account, 0) + 1

        def done(result: Any) -> None:
            left = self.pending[account] - 1
            if left:
                self.pending[account] = left
            else:
                del self.pending[account]
            outer, self.completing = self.completing, account
            try:
                then(result)
            finally:
                self.completing = outer

        self.lanes.submit(account, call, args, done)

    def must_wait(self, account: str) -> bool:
        """Whether a stanza to `account` must queue behind work started before it. What a job
        itself delivers to its own account is in place already."""
        return account in self.pending and self.completing != account

    def after(self, account: str, deliver: Callable[[], None]) -> None:
        """Deliver once the account's work started so far is done."""
        self.run(account, _nothing, (), lambda _result: deliver())


def _nothing(_storage: Any) -> None:
    return None
