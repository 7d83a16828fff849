"""Two well-behaved slixmpp users who keep chatting on a node while a test misbehaves on it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import TypeVar

from tests.support.server import Server
from tests.support.xmpp_client import login

T = TypeVar("T")
_names = itertools.count(1)


async def while_chatting(node: Server, misbehave: Callable[[], T]) -> T:
    """Log alice and bob in, run `misbehave` (blocking socket work) in a thread while alice
    keeps writing to bob, then check that bob got every message, in order and nothing else,
    that bob can still answer, and that neither saw a stream error."""
    resource = f"calm{next(_names)}"
    alice = await login(node, "alice", resource=resource)
    bob = await login(node, "bob", resource=resource)
    sent = 0
    done = asyncio.Event()

    async def chatter() -> None:
        nonlocal sent
        while not done.is_set():
            alice.send_message(mto=bob.boundjid.full, mbody=f"chat {sent}", mtype="chat")
            sent += 1
            await asyncio.sleep(0.1)  # pacing only; nothing is measured

    try:
        task = asyncio.create_task(chatter())
        try:
            result = await asyncio.to_thread(misbehave)
        finally:
            done.set()
            await task
        for i in range(sent):
            assert (await bob.next_message())["body"] == f"chat {i}"
        bob.send_message(mto=alice.boundjid.full, mbody="still here", mtype="chat")
        assert (await alice.next_message())["body"] == "still here"
        assert bob.messages.empty(), "bob got a message nobody well-behaved sent"
        assert alice.stream_errors == [] and bob.stream_errors == []
        return result
    finally:
        await alice.close()
        await bob.close()
