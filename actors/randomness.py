"""The random values of real connections: the OS's CSPRNG, read a block at a time. The
machines get them through fsm.session.Random; a replay injects recorded ones instead."""

from __future__ import annotations

import base64
import os
import threading


class Entropy:
    """Bytes from the OS's CSPRNG, read a block at a time and handed out once each.

    A login takes several random values (stream ids, the SCRAM nonce); one getrandom() call
    per value also releases and retakes the GIL each time, which under load means waiting for
    the storage threads. One call per block does not."""

    BLOCK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()  # features may draw from storage threads too
        self._block = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            pos = self._pos
            if pos + n > len(self._block):
                self._block, pos = os.urandom(max(self.BLOCK, n)), 0
            self._pos = pos + n
            return self._block[pos : pos + n]

    def hex(self, n: int) -> str:
        return self.take(n).hex()


ENTROPY = Entropy()


class SystemRandom:
    """Random values from the OS, for real connections (as secrets.token_* would give)."""

    __slots__ = ()

    def stream_id(self) -> str:
        return ENTROPY.hex(8)

    def nonce(self) -> str:
        return base64.b64encode(ENTROPY.take(18)).decode()

    def resource(self) -> str:
        return "xmppd-" + ENTROPY.hex(6)

    def iq_id(self) -> str:
        return ENTROPY.hex(6)
