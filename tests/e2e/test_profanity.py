"""Profanity, a real terminal client (Debian's package), driven in tmux as a person would."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest

from tests.support.xmpp_client import login

pytestmark = pytest.mark.skipif(
    not (shutil.which("profanity") and shutil.which("tmux")),
    reason="needs Debian's profanity and tmux (apt install profanity tmux; .ci/run does)",
)


class Profanity:
    def __init__(self, home) -> None:
        self.session = f"xmppd-{uuid.uuid4().hex[:8]}"
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                self.session,
                "-x",
                "220",
                "-y",
                "50",
                f"HOME={home} TERM=xterm profanity",
            ],
            check=True,
        )

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, text, "Enter"], check=True)

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.session],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def wait_for(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared on Profanity's screen:\n{self.screen()}")

    def find_in_windows(self, text: str, windows: int = 4) -> None:
        """Profanity opens a window per conversation: look through the first few."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for number in range(1, windows + 1):
                self.type(f"/win {number}")
                time.sleep(0.3)
                if text in self.screen():
                    return
        raise AssertionError(f"{text!r} is in none of Profanity's windows")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], check=False)


def test_profanity_logs_in_and_chats_with_a_slixmpp_user(server, run, tmp_path):
    profanity = Profanity(tmp_path / "home")
    try:
        profanity.wait_for("Profanity")
        profanity.type(f"/connect alice@localhost server 127.0.0.1 port {server.starttls_port}")
        profanity.wait_for("password")
        profanity.type(server.passwords["alice"])
        profanity.wait_for("/tls always")  # our certificate is self-signed: trust it once
        profanity.type("/tls always")
        profanity.wait_for("logged in successfully")

        async def scenario():
            bob = await login(server, "bob", resource="slix")
            profanity.type("/msg bob@localhost/slix Hello from Profanity")
            got = await bob.next_message(timeout=20)
            assert got["body"] == "Hello from Profanity"
            assert got["from"].bare == "alice@localhost"
            bob.send_message(mto=got["from"], mbody="Hello back from slixmpp", mtype="chat")
            await bob.close()

        run(scenario())
        profanity.find_in_windows("Hello back from slixmpp")
        profanity.type("/quit")
    finally:
        profanity.close()
