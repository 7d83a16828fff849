"""Profanity, a real terminal client (Debian's package), driven in tmux as a person would."""

from __future__ import annotations

import pytest

from tests.support.profanity import Profanity, available
from tests.support.xmpp_client import login

pytestmark = pytest.mark.skipif(
    not available(),
    reason="needs Debian's profanity and tmux (apt install profanity tmux; .ci/run does)",
)


def test_profanity_logs_in_and_chats_with_a_slixmpp_user(server, run, tmp_path):
    profanity = Profanity(tmp_path / "home")
    try:
        profanity.wait_for("Profanity")
        profanity.connect("alice@localhost", server.passwords["alice"], server.starttls_port)
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
