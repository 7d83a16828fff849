"""Profanity, a real terminal client (Debian's package), driven in tmux as a person would."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path


def available() -> bool:
    return bool(shutil.which("profanity") and shutil.which("tmux"))


class Profanity:
    def __init__(self, home: Path) -> None:
        self.session = f"xmppd-{uuid.uuid4().hex[:8]}"
        home.mkdir(parents=True, exist_ok=True)
        command = f"HOME={home} TERM=xterm profanity"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.session, "-x", "220", "-y", "50", command],
            check=True,
        )

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, text, "Enter"], check=True)

    def type_literally(self, text: str) -> None:
        """Text that tmux must not read as key names (XML for the XML console)."""
        subprocess.run(["tmux", "send-keys", "-t", self.session, "-l", text], check=True)
        subprocess.run(["tmux", "send-keys", "-t", self.session, "Enter"], check=True)

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

    def connect(self, jid: str, password: str, port: int, *, trust: bool = True) -> None:
        """/connect, the password, and (our certificate is self-signed) trust it once."""
        self.type(f"/connect {jid} server 127.0.0.1 port {port}")
        self.wait_for("password")
        self.type(password)
        if trust:
            self.wait_for("/tls always")
            self.type("/tls always")

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
        subprocess.run(
            ["tmux", "kill-session", "-t", self.session], check=False, capture_output=True
        )
