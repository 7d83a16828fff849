"""The storage lanes: one account's jobs in order, outcomes (values or exceptions) back on the
loop in submission order, many results per wake-up of the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from actors.lanes import StorageLanes


def test_jobs_of_one_account_run_in_order_and_answer_on_the_loop() -> None:
    async def scenario() -> tuple[list, set]:
        loop = asyncio.get_running_loop()
        lanes = StorageLanes(storage="the storage", loop=loop, count=4)
        seen: list = []
        threads: set = set()
        finished = loop.create_future()

        def job(storage: str, n: int) -> tuple[str, int]:
            return storage, n

        def done(outcome: tuple[str, int]) -> None:
            threads.add(threading.current_thread().name)
            seen.append(outcome)
            if len(seen) == 200:
                finished.set_result(None)

        for n in range(200):
            lanes.submit("alice@localhost", job, (n,), done)
        await asyncio.wait_for(finished, 5)
        lanes.shutdown()
        return seen, threads

    seen, threads = asyncio.run(scenario())
    assert seen == [("the storage", n) for n in range(200)]
    assert threads == {"MainThread"}


def test_an_exception_is_the_outcome_and_the_lane_goes_on() -> None:
    async def scenario() -> list:
        loop = asyncio.get_running_loop()
        lanes = StorageLanes(storage=None, loop=loop, count=1)
        outcomes: list = []
        finished = loop.create_future()

        def fails(_storage: None) -> None:
            raise ValueError("no such table")

        lanes.submit("bob@localhost", fails, (), outcomes.append)
        lanes.submit("bob@localhost", lambda _s: "next", (), outcomes.append)
        lanes.submit("bob@localhost", lambda _s: None, (), finished.set_result)
        await asyncio.wait_for(finished, 5)
        lanes.shutdown()
        return outcomes

    first, second = asyncio.run(scenario())
    assert isinstance(first, ValueError) and str(first) == "no such table"
    assert second == "next"


def test_results_waiting_together_take_one_wake_up_of_the_loop() -> None:
    async def scenario() -> tuple[int, list]:
        loop = asyncio.get_running_loop()
        lanes = StorageLanes(storage=None, loop=loop, count=1)
        gate = threading.Event()
        drains = 0
        original = lanes._drain

        def counted() -> None:
            nonlocal drains
            drains += 1
            original()

        lanes._drain = counted
        outcomes: list = []
        lanes.submit("carol@localhost", lambda _s: gate.wait(5), (), outcomes.append)
        for n in range(50):
            lanes.submit("carol@localhost", lambda _s, n=n: n, (), outcomes.append)
        gate.set()  # the loop is busy here: all 51 results queue up before it drains
        while len(outcomes) < 51:
            await asyncio.sleep(0.01)
        lanes.shutdown()
        return drains, outcomes

    drains, outcomes = asyncio.run(scenario())
    assert outcomes == [True, *range(50)]
    assert drains < 51


def test_submitting_after_shutdown_is_refused() -> None:
    async def scenario() -> None:
        lanes = StorageLanes(storage=None, loop=asyncio.get_running_loop(), count=2)
        lanes.shutdown()
        with pytest.raises(RuntimeError, match="shut down"):
            lanes.submit("dave@localhost", lambda _s: None, (), print)

    asyncio.run(scenario())
