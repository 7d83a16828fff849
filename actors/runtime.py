"""The actor runtime: Pykka actors on a run queue, scheduled by the node's asyncio event loop."""

# Pykka internals used here, which is why pyproject.toml pins pykka==4.5.0 (upgrade on purpose,
# with tests/unit/test_runtime.py):
# - Actor._create_actor_inbox / _create_future / _start_actor_loop: the hooks Pykka keeps for
#   "implementors of new actor types" (private, so free to change between releases);
# - Actor._handle_receive, _handle_failure, _stop and _actor_loop_teardown, whose per-message
#   semantics RunQueueActor._run_slice repeats from Actor._actor_loop_running;
# - the four fields Actor.__init__ sets (actor_urn, actor_inbox, actor_stopped, _actor_ref):
#   RunQueueActor.__init__ sets them itself so that actor_stopped is a small flag rather than a
#   threading.Event (1.2 KiB each, a third of the budget below);
# - pykka._envelope.Envelope (message, reply_to), pykka.messages._ActorStop and
#   Future._get_hook (set by Future.map & co. and ActorRef.stop).
#
# Measured with bench/actors_bench.py (CPython 3.11.7, x86-64, 2 cores): an idle started actor
# costs ~0.55 KiB (tracemalloc over 50,000: the actor, its uuid urn, ActorRef, mailbox, stop flag,
# registry slot; RSS agrees at ~0.57 KiB), well under the 3 KiB budget, because its mailbox holds
# a deque (0.75 KiB) only while messages wait and its stop flag is not a threading.Event
# (1.2 KiB). 50,000 actors start in ~0.6 s from the loop thread. Two busy actors beside 20,000
# idle ones: ~300k tell ping-pongs/s, ~165k ask round trips/s (answer via tell_when_done).
# Pykka's ActorRegistry is a list: unregistering is O(n) (cheap in start order), get_by_urn is
# a scan; keep your own dict for lookups on a hot path.

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import queue
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import Any, TypeVar

import pykka
from pykka import ActorDeadError, ActorRegistry, messages

log = logging.getLogger("xmppd.actors")

T = TypeVar("T")
A = TypeVar("A", bound="RunQueueActor")

SLICE_SIZE = 50  # messages an actor handles before the next runnable actor gets its turn
SLICES_PER_ROUND = 500  # slices per event-loop iteration; then I/O callbacks get their turn

_DEADLOCK = (
    "blocking on an unfinished future on the scheduler thread would deadlock the scheduler; "
    "use tell or future callbacks (add_done_callback, tell_when_done, await)"
)

_lock = threading.Lock()  # guards future/flag state shared with non-scheduler threads
_scheduler_threads: dict[int, Scheduler] = {}  # loop thread id -> its scheduler
_local = threading.local()  # .starting: the scheduler Scheduler.start() is starting on


class Scheduler:
    """A run queue of actors drained by one asyncio loop, plus a thread pool for blocking work.

    Actors find their scheduler when constructed: the class attribute
    `RunQueueActor.actor_scheduler` if a subclass sets it, else `Scheduler.current()`: the one
    passed to `Scheduler.start()`, else the one whose loop runs in this thread (so actors started
    by actors stay on their scheduler).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        slice_size: int = SLICE_SIZE,
        blocking_workers: int = 8,
    ) -> None:
        self.loop = loop
        self.slice_size = slice_size
        self.executor = concurrent.futures.ThreadPoolExecutor(
            blocking_workers, thread_name_prefix="xmppd-blocking"
        )
        self._run_queue: deque[RunQueueActor] = deque()
        self._drain_pending = False
        self._thread_id: int | None = None  # the loop's thread, once known
        self._own_thread: threading.Thread | None = None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._bind_thread()
        else:
            loop.call_soon_threadsafe(self._bind_thread)

    @classmethod
    def in_thread(cls, *, name: str = "xmppd-scheduler", **kwargs: Any) -> Scheduler:
        """A scheduler on a new event loop run by a new daemon thread (tests, tools, benches)."""
        loop = asyncio.new_event_loop()
        scheduler = cls(loop, **kwargs)
        bound = threading.Event()
        loop.call_soon(bound.set)
        thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
        scheduler._own_thread = thread
        thread.start()
        bound.wait()
        return scheduler

    @staticmethod
    def current() -> Scheduler:
        """The scheduler an actor constructed here and now would run on."""
        starting = getattr(_local, "starting", None)
        if starting is not None:
            return starting
        scheduler = _scheduler_threads.get(threading.get_ident())
        if scheduler is None:
            msg = "no actor scheduler here: use Scheduler.start()"
            raise RuntimeError(msg)
        return scheduler

    def start(self, actor_class: type[A], *args: Any, **kwargs: Any) -> pykka.ActorRef[A]:
        """`actor_class.start(*args, **kwargs)` on this scheduler, from any thread."""
        previous = getattr(_local, "starting", None)
        _local.starting = self
        try:
            return actor_class.start(*args, **kwargs)
        finally:
            _local.starting = previous

    def on_scheduler_thread(self) -> bool:
        return threading.get_ident() == self._thread_id

    @property
    def run_queue_length(self) -> int:
        return len(self._run_queue)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread pool and, if in_thread() made it, the loop and its thread."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self._own_thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._own_thread.join(timeout)
            if not self._own_thread.is_alive():
                self.loop.close()
        if self._thread_id is not None and _scheduler_threads.get(self._thread_id) is self:
            del _scheduler_threads[self._thread_id]

    def _bind_thread(self) -> None:
        self._thread_id = threading.get_ident()
        _scheduler_threads[self._thread_id] = self

    def _make_runnable(self, actor: RunQueueActor) -> None:
        """Loop thread only: put `actor` at the back of the run queue (the caller checked the
        mailbox's scheduled flag) and make sure a drain is coming."""
        self._run_queue.append(actor)
        if not self._drain_pending:
            self._drain_pending = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        run_queue = self._run_queue
        slice_size = self.slice_size
        for _ in range(SLICES_PER_ROUND):
            if not run_queue:
                break
            actor = run_queue.popleft()
            try:
                more = actor._run_slice(slice_size)
            except Exception:  # a bug here, not in the actor: keep the other actors running
                log.exception("run queue slice of %s failed", actor)
                more = False
            if more:
                run_queue.append(actor)
            else:
                actor.actor_inbox.scheduled = False  # type: ignore[attr-defined]
        if run_queue:
            self.loop.call_soon(self._drain)
        else:
            self._drain_pending = False


class _Mailbox:
    """An actor's inbox (what Pykka calls actor_inbox) and its place on the run queue.

    Only the loop thread touches the deque and the flags: a put from any other thread hops
    over with call_soon_threadsafe, which also keeps one sender's messages in order.
    """

    __slots__ = ("actor", "scheduler", "queue", "scheduled", "started", "epitaph")

    def __init__(self, actor: RunQueueActor, scheduler: Scheduler) -> None:
        self.actor: RunQueueActor | None = actor  # None once torn down, so the actor can go
        self.scheduler = scheduler
        self.queue: deque[Any] | None = None  # only while there are messages: idle is cheap
        self.scheduled = False
        self.started = False
        self.epitaph = ""

    def put(self, envelope: Any, /) -> None:
        if threading.get_ident() == self.scheduler._thread_id:
            self._put_local(envelope)
        else:
            self.scheduler.loop.call_soon_threadsafe(self._put_local, envelope)

    def get(self) -> Any:
        assert self.queue is not None
        return self.queue.popleft()

    def empty(self) -> bool:
        return not self.queue

    def start(self) -> None:
        if threading.get_ident() == self.scheduler._thread_id:
            self._wake()
        else:
            self.scheduler.loop.call_soon_threadsafe(self._wake)

    def _put_local(self, envelope: Any) -> None:
        if self.actor is None:  # already torn down: answer as the teardown would have
            _answer_dead(envelope, self.epitaph)
            return
        if self.queue is None:
            self.queue = deque()
        self.queue.append(envelope)
        self._wake()

    def _wake(self) -> None:
        if not self.scheduled and self.actor is not None:
            self.scheduled = True
            self.scheduler._make_runnable(self.actor)


def _answer_dead(envelope: Any, who: str) -> None:
    if envelope.reply_to is None:
        return
    if isinstance(envelope.message, messages._ActorStop):
        envelope.reply_to.set(None)
    else:
        error = ActorDeadError(f"{who} stopped before handling the message")
        envelope.reply_to.set_exception(exc_info=(ActorDeadError, error, None))


class _StopFlag:
    """What Pykka keeps in actor_stopped (is_set/set/wait), without a threading.Event each."""

    __slots__ = ("_set", "_event")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with _lock:
            self._set = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        if threading.get_ident() in _scheduler_threads:
            raise RuntimeError(_DEADLOCK)
        with _lock:
            if self._set:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)


class RunQueueFuture(pykka.Future[T]):
    """Pykka's Future for run-queue actors: `get()` blocks other threads but refuses to block
    the scheduler; `add_done_callback()` and `await` wait without blocking.

    `map`, `filter`, `reduce` and `join` are computed when the source is set (in the setter's
    thread, usually the scheduler), so derived futures take callbacks too; keep the functions
    cheap. Futures made by `set_get_hook` (as `ActorRef.stop(block=False)` makes) have no
    completion event: they refuse callbacks, and `await` waits for them on a worker thread.
    """

    def __init__(self) -> None:
        super().__init__()
        self._outcome: tuple[Any, Any] | None = None  # (value, exc_info)
        self._callbacks: list[Callable[[RunQueueFuture[T]], Any]] | None = None
        self._waiter: threading.Event | None = None

    def __repr__(self) -> str:
        return f"<RunQueueFuture {'done' if self.done() else 'pending'}>"

    def done(self) -> bool:
        return self._outcome is not None

    def get(self, *, timeout: float | None = None) -> T:
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        outcome = self._outcome
        if outcome is None:
            if threading.get_ident() in _scheduler_threads:
                raise RuntimeError(_DEADLOCK)
            with _lock:
                if self._outcome is None and self._waiter is None:
                    self._waiter = threading.Event()
                waiter = self._waiter
            if waiter is not None and not waiter.wait(timeout):
                raise pykka.Timeout(f"{timeout} seconds")
            outcome = self._outcome
            assert outcome is not None
        value, exc_info = outcome
        if exc_info is None:
            return value
        exc_type, exc_value, traceback = exc_info
        if exc_value is None:
            exc_value = exc_type()
        if exc_value.__traceback__ is not traceback:
            raise exc_value.with_traceback(traceback)
        raise exc_value

    def set(self, value: T | None = None) -> None:
        self._resolve((value, None))

    def set_exception(self, exc_info: Any = None) -> None:
        assert exc_info is None or len(exc_info) == 3
        self._resolve((None, exc_info if exc_info is not None else sys.exc_info()))

    def set_get_hook(self, func: Callable[[float | None], T]) -> None:
        with _lock:
            if self._outcome is not None:
                raise queue.Full
            super().set_get_hook(func)

    def add_done_callback(self, fn: Callable[[RunQueueFuture[T]], Any]) -> None:
        """Call `fn(self)` once set, in the thread that sets it (now, if already set)."""
        if self._get_hook is not None:
            msg = "a future made by set_get_hook (e.g. ActorRef.stop) has no done callbacks"
            raise TypeError(msg)
        with _lock:
            if self._outcome is None:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        _run_callback(fn, self)

    def _resolve(self, outcome: tuple[Any, Any]) -> None:
        with _lock:
            if self._outcome is not None or self._get_hook is not None:
                raise queue.Full
            self._outcome = outcome
            callbacks, self._callbacks = self._callbacks, None
            waiter = self._waiter
        if waiter is not None:
            waiter.set()
        if callbacks:
            for fn in callbacks:
                _run_callback(fn, self)

    def _derive(self, sources: list[pykka.Future[Any]], compute: Callable[[], Any]) -> Any:
        derived: RunQueueFuture[Any] = RunQueueFuture()
        remaining = [len(sources)]

        def source_done(_: Any) -> None:
            with _lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            try:
                derived.set(compute())
            except Exception:
                derived.set_exception()

        for source in sources:
            source.add_done_callback(source_done)  # type: ignore[attr-defined]
        return derived

    def _derivable(self, others: Iterable[pykka.Future[Any]] = ()) -> bool:
        return all(isinstance(f, RunQueueFuture) and f._get_hook is None for f in (self, *others))

    def map(self, func: Callable[[T], Any]) -> pykka.Future[Any]:
        if not self._derivable():
            return super().map(func)
        return self._derive([self], lambda: func(self.get()))

    def filter(self, func: Callable[[Any], bool]) -> pykka.Future[Any]:  # type: ignore[override]
        if not self._derivable():
            return super().filter(func)  # type: ignore[misc]
        items: Callable[[], Any] = self.get
        return self._derive([self], lambda: list(filter(func, items())))

    def reduce(self, func: Callable[[Any, Any], Any], *args: Any) -> pykka.Future[Any]:  # type: ignore[override]
        if not self._derivable():
            return super().reduce(func, *args)  # type: ignore[misc]
        items: Callable[[], Any] = self.get
        return self._derive([self], lambda: functools.reduce(func, items(), *args))

    def join(self, *futures: pykka.Future[Any]) -> pykka.Future[Any]:  # type: ignore[override]
        if not self._derivable(futures):
            return super().join(*futures)
        sources = [self, *futures]
        return self._derive(sources, lambda: [f.get() for f in sources])

    def __await__(self) -> Generator[Any, None, T]:
        if self._get_hook is not None:  # no completion event: wait for it on a worker thread
            loop = asyncio.get_running_loop()
            return (yield from loop.run_in_executor(None, self.get).__await__())
        if self._outcome is None:
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()

            def wake(_: Any) -> None:
                try:
                    same_loop = asyncio.get_running_loop() is loop
                except RuntimeError:
                    same_loop = False
                if same_loop:
                    _wake_waiter(waiter)
                else:
                    loop.call_soon_threadsafe(_wake_waiter, waiter)

            self.add_done_callback(wake)
            yield from waiter.__await__()
        return self.get()

    __iter__ = __await__  # type: ignore[assignment]


def _wake_waiter(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _run_callback(fn: Callable[[Any], Any], future: RunQueueFuture[Any]) -> None:
    try:
        fn(future)
    except Exception:
        log.exception("future callback %r failed", fn)


class RunQueueActor(pykka.Actor):
    """A Pykka actor that is not a thread: it runs in slices on its scheduler's event loop.

    Nothing on the scheduler may block: `ask(...).get()` of an unanswered future raises
    RuntimeError there. Answer with messages (tell, `tell_when_done`, `run_blocking`).
    """

    actor_scheduler: Scheduler | None = None
    """Set on a subclass to pin its actors to one scheduler; on an actor, the one it runs on."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        # pykka.Actor.__init__, with a _StopFlag in place of its threading.Event
        self.actor_urn = uuid.uuid4().urn
        self.actor_inbox = self._create_actor_inbox()
        self.actor_stopped = _StopFlag()  # type: ignore[assignment]
        self._actor_ref = pykka.ActorRef(self)

    def _create_actor_inbox(self) -> _Mailbox:  # type: ignore[override]
        scheduler = type(self).actor_scheduler or Scheduler.current()
        self.actor_scheduler = scheduler
        return _Mailbox(self, scheduler)

    @staticmethod
    def _create_future() -> RunQueueFuture[Any]:
        return RunQueueFuture()

    def _start_actor_loop(self) -> None:
        self.actor_inbox.start()  # type: ignore[attr-defined]

    def _run_slice(self, budget: int) -> bool:
        """Run on_start (first slice) and up to `budget` messages; True if more are waiting.

        Per message this is pykka.Actor._actor_loop_running; once stopped, its teardown.
        """
        mailbox: _Mailbox = self.actor_inbox  # type: ignore[assignment]
        stopped: _StopFlag = self.actor_stopped  # type: ignore[assignment]
        if not mailbox.started:
            mailbox.started = True
            budget -= 1
            try:
                self.on_start()
            except Exception:
                self._handle_failure(*sys.exc_info())
            except BaseException:
                self._stop_everything()
        inbox = mailbox.queue
        while inbox and budget > 0 and not stopped._set:
            budget -= 1
            envelope = inbox.popleft()
            try:
                response = self._handle_receive(envelope.message)
                if envelope.reply_to is not None:
                    envelope.reply_to.set(response)
            except Exception:
                if envelope.reply_to is not None:
                    log.info("Exception returned from %s to caller:", self, exc_info=True)
                    envelope.reply_to.set_exception()
                else:
                    self._handle_failure(*sys.exc_info())
                    try:
                        self.on_failure(*sys.exc_info())
                    except Exception:
                        self._handle_failure(*sys.exc_info())
            except BaseException:
                self._stop_everything()
        if stopped._set:
            self._actor_loop_teardown()
            mailbox.epitaph = str(self.actor_ref)
            mailbox.actor = None
            mailbox.queue = None
            return False
        if not inbox:
            mailbox.queue = None
            return False
        return True

    def _stop_everything(self) -> None:
        # Pykka's answer to KeyboardInterrupt/SystemExit in an actor: stop it, then all actors
        # (without blocking: this is the scheduler).
        log.debug("%r in %s. Stopping all actors.", sys.exc_info()[1], self)
        self._stop()
        ActorRegistry.stop_all(block=False)


def _scheduler_of(actor_ref: pykka.ActorRef[Any]) -> Scheduler:
    mailbox = actor_ref.actor_inbox
    if not isinstance(mailbox, _Mailbox):
        msg = f"{actor_ref} is not a RunQueueActor"
        raise TypeError(msg)
    return mailbox.scheduler


def run_blocking(
    actor_ref: pykka.ActorRef[Any],
    fn: Callable[..., Any],
    *args: Any,
    reply: Callable[[Any], Any],
    executor: concurrent.futures.Executor | None = None,
) -> concurrent.futures.Future[Any]:
    """Run blocking `fn(*args)` (SQLite, PBKDF2 …) on `executor`, by default the actor's
    scheduler's thread pool, then tell the actor `reply(result)`, or `reply(exception)` if fn
    raised. Never blocks the caller.

    Nothing is told if the actor has died meanwhile or the pool was shut down before fn ran.
    """
    done = (executor or _scheduler_of(actor_ref).executor).submit(fn, *args)

    def deliver(done: concurrent.futures.Future[Any]) -> None:
        if done.cancelled():
            return
        error = done.exception()
        _tell(actor_ref, reply, error if error is not None else done.result())

    done.add_done_callback(deliver)
    return done


def tell_when_done(
    future: pykka.Future[Any],
    actor_ref: pykka.ActorRef[Any],
    reply: Callable[[Any], Any],
) -> None:
    """When `future` is set, tell the actor `reply(value)`, or `reply(exception)`: how an actor
    waits for another's answer to an ask (`ref.ask(msg, block=False)`) without blocking."""

    def deliver(future: RunQueueFuture[Any]) -> None:
        try:
            outcome = future.get()
        except Exception as error:
            outcome = error
        _tell(actor_ref, reply, outcome)

    future.add_done_callback(deliver)  # type: ignore[attr-defined]


def _tell(actor_ref: pykka.ActorRef[Any], reply: Callable[[Any], Any], outcome: Any) -> None:
    try:
        actor_ref.tell(reply(outcome))
    except ActorDeadError:
        log.debug("%s died before its answer came back", actor_ref)
    except Exception:
        log.exception("building or telling the answer for %s failed", actor_ref)
