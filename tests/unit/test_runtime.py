"""The actor runtime: Pykka actors scheduled in slices on an event loop, never blocking it."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest
from pykka._envelope import Envelope

from actors.runtime import (
    RunQueueActor,
    RunQueueFuture,
    Scheduler,
    run_blocking,
    tell_when_done,
)

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0  # seconds any single wait in these tests may take


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    scheduler = Scheduler.in_thread(slice_size=5)
    yield scheduler
    mine = [ref for ref in pykka.ActorRegistry.get_all() if ref.actor_inbox.scheduler is scheduler]
    for stopped in [ref.stop(block=False) for ref in mine]:
        stopped.get(timeout=WAIT)
    scheduler.close()


def on_loop(scheduler: Scheduler, fn: Callable[[], Any]) -> Any:
    """Run fn on the scheduler's thread, as actors and the I/O loop do, and return its result."""
    return asyncio.run_coroutine_threadsafe(_call(fn), scheduler.loop).result(WAIT)


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def settle(scheduler: Scheduler) -> None:
    """Wait until the run queue is empty."""
    for _ in range(500):
        if not on_loop(scheduler, lambda: scheduler.run_queue_length):
            return
        threading.Event().wait(0.01)
    raise AssertionError("run queue never emptied")


class Recorder(RunQueueActor):
    """Logs what it receives; answers "log" with the log and "boom" by raising."""

    def __init__(self, name: str = "", shared: list[Any] | None = None) -> None:
        super().__init__()
        self.name = name
        self.log: list[Any] = shared if shared is not None else []
        self.got = threading.Event()

    def on_start(self) -> None:
        self.log.append((self.name, "started"))

    def on_receive(self, message: Any) -> Any:
        if message == "log":
            return list(self.log)
        if message == "boom":
            raise LookupError("boom")
        self.log.append((self.name, message))
        self.got.set()
        return message

    def add(self, a: int, b: int) -> int:
        return a + b


def test_each_actors_messages_stay_in_order_while_many_actors_interleave(scheduler):
    actors = [scheduler.start(Recorder, str(i)) for i in range(20)]

    def send(sender: str) -> None:
        for seq in range(60):
            for ref in actors:
                ref.tell((sender, seq))

    threads = [threading.Thread(target=send, args=(f"thread{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    on_loop(scheduler, lambda: send("loop"))
    for thread in threads:
        thread.join(WAIT)

    for ref in actors:
        received = [message for _, message in ref.ask("log", timeout=WAIT)[1:]]
        for sender in ("thread0", "thread1", "thread2", "loop"):
            assert [seq for who, seq in received if who == sender] == list(range(60))


def test_a_flooded_actor_yields_after_its_slice(scheduler):
    shared: list[Any] = []
    flooded = scheduler.start(Recorder, "flooded", shared)
    other = scheduler.start(Recorder, "other", shared)
    settle(scheduler)
    shared.clear()

    def flood() -> None:
        for i in range(100):
            flooded.tell(i)
        other.tell("hello")

    on_loop(scheduler, flood)
    settle(scheduler)
    assert shared.index(("other", "hello")) == scheduler.slice_size
    assert [m for who, m in shared if who == "flooded"] == list(range(100))


class Stoppable(Recorder):
    def on_stop(self) -> None:
        self.log.append((self.name, "on_stop"))


def test_stop_runs_on_stop_and_pending_asks_get_actor_dead_error(scheduler):
    shared: list[Any] = []
    ref = scheduler.start(Stoppable, "s", shared)

    def ask_stop_ask() -> tuple[Any, Any, Any]:
        return ref.ask("before", block=False), ref.stop(block=False), ref.ask("after", block=False)

    before, stopped, after = on_loop(scheduler, ask_stop_ask)
    assert before.get(timeout=WAIT) == "before"
    assert stopped.get(timeout=WAIT) is True
    with pytest.raises(pykka.ActorDeadError):
        after.get(timeout=WAIT)
    assert shared == [("s", "started"), ("s", "before"), ("s", "on_stop")]
    assert not ref.is_alive()
    assert pykka.ActorRegistry.get_by_urn(ref.actor_urn) is None
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("too late")
    assert ref.stop(timeout=WAIT) is False


def test_a_message_already_in_flight_to_a_torn_down_actor_is_answered_dead(scheduler):
    ref = scheduler.start(Recorder)
    ref.stop(timeout=WAIT)
    late: RunQueueFuture[Any] = RunQueueFuture()
    ref.actor_inbox.put(Envelope("late", reply_to=late))  # as a tell racing the stop would
    with pytest.raises(pykka.ActorDeadError):
        late.get(timeout=WAIT)


def test_on_start_runs_before_the_first_message(scheduler):
    outside = scheduler.start(Recorder, "outside")
    outside.tell("first")

    def start_and_tell() -> pykka.ActorRef[Recorder]:
        ref = Recorder.start("inside")
        ref.tell("first")
        return ref

    inside = on_loop(scheduler, start_and_tell)
    for ref, name in ((outside, "outside"), (inside, "inside")):
        assert ref.ask("log", timeout=WAIT) == [(name, "started"), (name, "first")]


def test_ask_from_another_thread_returns_the_answer_or_raises_the_actors_exception(scheduler):
    ref = scheduler.start(Recorder)
    assert ref.ask(42, timeout=WAIT) == 42
    with pytest.raises(LookupError, match="boom"):
        ref.ask("boom", timeout=WAIT)
    assert ref.is_alive()  # an exception returned to an asker does not kill the actor
    with pytest.raises(pykka.Timeout):
        RunQueueFuture().get(timeout=0.01)


class Fragile(Recorder):
    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self.log.append((self.name, "on_failure", exception_type))


def test_a_crash_in_a_tell_calls_on_failure_and_stops_only_that_actor(scheduler, caplog):
    shared: list[Any] = []
    fragile = scheduler.start(Fragile, "fragile", shared)
    bystander = scheduler.start(Recorder, "bystander")
    pending = on_loop(scheduler, lambda: (fragile.tell("boom"), fragile.ask("next", block=False)))
    with pytest.raises(pykka.ActorDeadError):
        pending[1].get(timeout=WAIT)
    assert ("fragile", "on_failure", LookupError) in shared
    assert not fragile.is_alive()
    assert pykka.ActorRegistry.get_by_urn(fragile.actor_urn) is None
    assert "Unhandled exception" in caplog.text
    assert bystander.ask("still here", timeout=WAIT) == "still here"


class Impatient(RunQueueActor):
    """Blocks on an answer from inside the scheduler, which it must not do."""

    def on_receive(self, other: pykka.ActorRef[Any]) -> str:
        try:
            other.ask("question", timeout=1)
        except RuntimeError as error:
            return str(error)
        return "did not raise"


def test_blocking_on_a_future_inside_an_actor_raises_instead_of_deadlocking(scheduler):
    other = scheduler.start(Recorder)
    impatient = scheduler.start(Impatient)
    error = impatient.ask(other, timeout=WAIT)
    assert "would deadlock the scheduler; use tell or future callbacks" in error


class Curious(RunQueueActor):
    """Asks another actor and takes the answer as a message, three ways."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Any] = []
        self.done = threading.Event()

    def on_receive(self, message: Any) -> Any:
        match message:
            case ("go", other):
                self_ref = self.actor_ref
                question = other.ask(20, block=False)
                question.add_done_callback(lambda f: self_ref.tell(("callback", f.get())))
                question.map(lambda v: v + 1).join(other.ask(3, block=False)).add_done_callback(
                    lambda f: self_ref.tell(("joined", f.get()))
                )
                tell_when_done(other.ask("boom", block=False), self_ref, lambda r: ("told", r))
            case ("answers",):
                return list(self.answers)
            case answer:
                self.answers.append(answer)
                if len(self.answers) == 3:
                    self.done.set()
        return None


def test_future_callbacks_carry_actor_to_actor_answers(scheduler):
    other = scheduler.start(Recorder)
    curious = scheduler.start(Curious)
    curious.tell(("go", other))
    assert curious._actor_weakref().done.wait(WAIT)
    answers = dict(curious.ask(("answers",), timeout=WAIT))
    assert answers["callback"] == 20
    assert answers["joined"] == [21, 3]
    assert isinstance(answers["told"], LookupError)


def test_derived_futures_follow_their_sources_like_pykkas():
    source: RunQueueFuture[list[int]] = RunQueueFuture()
    other: RunQueueFuture[str] = RunQueueFuture()
    mapped, filtered = source.map(len), source.filter(lambda v: v > 1)
    reduced, joined = source.reduce(lambda a, b: a + b, 10), source.join(other)
    seen: list[Any] = []
    joined.add_done_callback(lambda f: seen.append(f.get()))
    source.set([1, 2, 3])
    assert (mapped.get(), filtered.get(), reduced.get(), seen) == (3, [2, 3], 16, [])
    other.set("x")
    assert seen == [[[1, 2, 3], "x"]]
    late: list[Any] = []
    joined.add_done_callback(lambda f: late.append(f.get()))  # already done: runs at once
    assert late == seen
    failed: RunQueueFuture[int] = RunQueueFuture()
    failed.set_exception((LookupError, LookupError("gone"), None))
    with pytest.raises(LookupError):
        failed.map(lambda v: v + 1).get()


def test_a_coroutine_on_the_loop_can_await_an_answer(scheduler):
    ref = scheduler.start(Recorder)

    async def ask_and_await() -> Any:
        return await ref.ask("awaited", block=False)

    answer = asyncio.run_coroutine_threadsafe(ask_and_await(), scheduler.loop).result(WAIT)
    assert answer == "awaited"


def test_a_proxy_works_from_another_thread(scheduler):
    proxy = scheduler.start(Recorder, "p").proxy()
    assert proxy.add(2, 3).get(timeout=WAIT) == 5
    assert proxy.name.get(timeout=WAIT) == "p"
    proxy.name = "renamed"
    assert proxy.name.get(timeout=WAIT) == "renamed"


class Hasher(RunQueueActor):
    """Hands slow work to the pool and gets the result back as a message."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        match message:
            case ("hash", value):
                run_blocking(self.actor_ref, _slow_hash, value, reply=lambda r: ("hashed", r))
            case ("hashed", result):
                self.results.append(result)
            case "results":
                return list(self.results)
        return None


def _slow_hash(value: str) -> tuple[str, str]:
    threading.Event().wait(0.05)  # stands in for PBKDF2 or a SQLite query
    if not value:
        raise ValueError("empty")
    return value[::-1], threading.current_thread().name


def test_run_blocking_delivers_its_result_as_a_message(scheduler):
    ref = scheduler.start(Hasher)
    ref.tell(("hash", "abc"))
    ref.tell(("hash", ""))
    results: list[Any] = []
    for _ in range(200):
        results = ref.ask("results", timeout=WAIT)
        if len(results) == 2:
            break
        threading.Event().wait(0.01)
    ok = next(r for r in results if isinstance(r, tuple))
    assert ok[0] == "cba"
    assert ok[1].startswith("xmppd-blocking")
    assert any(isinstance(r, ValueError) for r in results)


def test_a_tell_from_another_thread_wakes_an_idle_actor(scheduler):
    ref = scheduler.start(Recorder)
    settle(scheduler)
    actor = ref._actor_weakref()
    threading.Thread(target=ref.tell, args=("wake up",)).start()
    assert actor.got.wait(WAIT)


class Parent(RunQueueActor):
    def on_receive(self, message: Any) -> Any:
        child = Recorder.start()
        return Scheduler.current(), child.actor_inbox.scheduler


def test_actors_started_by_actors_stay_on_their_scheduler(scheduler):
    parent = scheduler.start(Parent)
    current, childs = parent.ask("spawn", timeout=WAIT)
    assert current is scheduler
    assert childs is scheduler


class Idle(RunQueueActor):
    pass


def test_an_idle_actor_is_small(scheduler):
    n = 2000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        refs = on_loop(scheduler, lambda: [Idle.start() for _ in range(n)])
        settle(scheduler)
        gc.collect()
        per_actor = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert per_actor < 3 * 1024, per_actor
    assert all(ref.is_alive() for ref in refs)


def test_a_scheduler_on_the_running_loop_of_asyncio_run():
    async def main() -> tuple[Any, Any]:
        scheduler = Scheduler(asyncio.get_running_loop())
        try:
            ref = Recorder.start("here")  # on the loop thread: Scheduler.current() finds it
            answer = await ref.ask("hi", block=False)
            stopped = await ref.stop(block=False)
            return answer, stopped
        finally:
            scheduler.close()

    assert asyncio.run(asyncio.wait_for(main(), WAIT)) == ("hi", True)


class Quitter(Recorder):
    def on_receive(self, message: Any) -> Any:
        if message == "exit":
            raise SystemExit
        return super().on_receive(message)


def test_system_exit_in_an_actor_stops_every_actor_as_pykka_does(scheduler):
    quitter = scheduler.start(Quitter)
    shared: list[Any] = []
    bystander = scheduler.start(Stoppable, "bystander", shared)
    quitter.tell("exit")
    for ref in (quitter, bystander):
        for _ in range(500):
            if not ref.is_alive():
                break
            threading.Event().wait(0.01)
        assert not ref.is_alive()
    assert ("bystander", "on_stop") in shared


class FailsToStart(Recorder):
    def on_start(self) -> None:
        raise OSError("no database")


def test_a_failing_on_start_stops_the_actor_and_answers_its_mail(scheduler):
    ref = scheduler.start(FailsToStart)
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("hello", timeout=WAIT)
    assert not ref.is_alive()
