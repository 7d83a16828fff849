"""Out of file descriptors: new connections are refused, the ones already there carry on."""

from __future__ import annotations

import socket
import time

from tests.support.xmpp_client import login

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)


def answered(sock: socket.socket) -> bool:
    """Did the server answer our stream header (True) or close/reset the connection (False)?"""
    sock.settimeout(5)
    try:
        sock.sendall(HEADER)
        data = b""
        while b"<stream:features" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            data += chunk
        return True
    except OSError:
        return False


def test_connections_past_the_descriptor_limit_are_refused_and_others_carry_on(fresh_server, run):
    fresh_server.start(open_files=150)  # room for 150 - 64 reserved = 86 connections
    log = fresh_server.log()
    assert "open-file limit 150: room for 86 connections" in log

    async def scenario():
        alice = await login(fresh_server, "alice", resource="before")
        bob = await login(fresh_server, "bob", resource="before")
        sockets = [
            socket.create_connection(("127.0.0.1", fresh_server.starttls_port)) for _ in range(100)
        ]
        outcomes = [answered(s) for s in sockets]
        assert outcomes.count(True) == 84  # 86 minus alice and bob
        assert not any(outcomes[84:]), "the ones past the limit are refused"
        # The sessions that were there carry on.
        alice.send_message(mto="bob@localhost/before", mbody="still here", mtype="chat")
        assert (await bob.next_message())["body"] == "still here"
        assert fresh_server.admin("status")["ok"], "the admin socket still answers"
        for s in sockets:
            s.close()
        deadline = time.monotonic() + 10
        while fresh_server.admin("status")["result"]["connections"] > 2:
            assert time.monotonic() < deadline, "closed connections must be released"
            time.sleep(0.1)
        again = socket.create_connection(("127.0.0.1", fresh_server.starttls_port))
        assert answered(again), "with room again, new connections are accepted"
        again.close()
        await alice.close()
        await bob.close()

    run(scenario())
    assert "out of file descriptors" in fresh_server.log()
