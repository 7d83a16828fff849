"""Actor runtime benchmark: memory and start time per idle actor, round trips between two busy
actors with idle actors beside them. Run: .venv/bin/python bench/actors_bench.py"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
import tracemalloc
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pykka  # noqa: E402

from actors.runtime import RunQueueActor, Scheduler, tell_when_done  # noqa: E402


class Idle(RunQueueActor):
    pass


class Ponger(RunQueueActor):
    def on_receive(self, message: Any) -> Any:
        if isinstance(message, tuple):  # ("ping", sender): answer with a tell
            message[1].tell("pong")
            return None
        return message  # an ask: the answer is the reply


class Pinger(RunQueueActor):
    def __init__(self, ponger: pykka.ActorRef[Ponger], done: threading.Event) -> None:
        super().__init__()
        self.ponger = ponger
        self.done = done
        self.left = 0
        self.mode = ""

    def on_receive(self, message: Any) -> None:
        if isinstance(message, tuple):  # ("go", mode, n)
            _, self.mode, self.left = message
        elif self.left <= 1:
            self.done.set()
            return
        else:
            self.left -= 1
        if self.mode == "tell":
            self.ponger.tell(("ping", self.actor_ref))
        else:
            tell_when_done(self.ponger.ask(self.left, block=False), self.actor_ref, _pong)


def _pong(answer: Any) -> str:
    return "pong"


def on_loop(scheduler: Scheduler, fn: Any, *args: Any) -> Any:
    """Run fn on the scheduler's thread and wait for it (the loop thread is the cheap path)."""
    box: list[Any] = []
    ran = threading.Event()

    def call() -> None:
        box.append(fn(*args))
        ran.set()

    scheduler.loop.call_soon_threadsafe(call)
    ran.wait()
    return box[0]


def wait_idle(scheduler: Scheduler) -> None:
    while on_loop(scheduler, lambda: scheduler.run_queue_length):
        time.sleep(0.01)


def start_idle(scheduler: Scheduler, n: int) -> list[pykka.ActorRef[Idle]]:
    refs = on_loop(scheduler, lambda: [Idle.start() for _ in range(n)])
    wait_idle(scheduler)
    return refs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-actors", type=int, default=50_000)
    parser.add_argument("--idle", type=int, default=20_000)
    parser.add_argument("--round-trips", type=int, default=200_000)
    args = parser.parse_args()
    scheduler = Scheduler.in_thread()

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    refs = start_idle(scheduler, args.memory_actors)
    gc.collect()
    per_actor = (tracemalloc.get_traced_memory()[0] - before) / args.memory_actors
    tracemalloc.stop()
    print(f"memory per idle actor: {per_actor:,.0f} B ({per_actor / 1024:.2f} KiB)")
    on_loop(scheduler, lambda: [ref.stop(block=False) for ref in refs])
    wait_idle(scheduler)
    del refs
    gc.collect()

    t = time.perf_counter()
    refs = start_idle(scheduler, args.memory_actors)
    loop_start = time.perf_counter() - t
    print(f"start {args.memory_actors:,} actors on the loop thread: {loop_start:.2f} s")
    on_loop(scheduler, lambda: [ref.stop(block=False) for ref in refs])
    wait_idle(scheduler)

    t = time.perf_counter()
    outside = [scheduler.start(Idle) for _ in range(args.idle)]
    wait_idle(scheduler)
    print(f"start {args.idle:,} actors from another thread: {time.perf_counter() - t:.2f} s")

    done = threading.Event()
    ponger = scheduler.start(Ponger)
    pinger = scheduler.start(Pinger, ponger, done)
    for mode in ("tell", "ask"):
        done.clear()
        t = time.perf_counter()
        pinger.tell(("go", mode, args.round_trips))
        done.wait()
        rate = args.round_trips / (time.perf_counter() - t)
        print(f"{mode} round trips/s with {len(outside):,} idle actors beside: {rate:,.0f}")

    t = time.perf_counter()
    n = 2000
    for i in range(n):
        ponger.ask(i)
    print(f"blocking asks from another thread: {n / (time.perf_counter() - t):,.0f}/s")

    pykka.ActorRegistry.stop_all(block=False)
    wait_idle(scheduler)
    scheduler.close()


if __name__ == "__main__":
    main()
