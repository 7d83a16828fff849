"""`xmppctl ... --watch`: how the transitions and the counts by state are shown."""

from __future__ import annotations

from xmppd.watch import counts_table, watch_session


def transition(n: int, event: str = "timeout ping") -> dict:
    return {"n": n, "from": "session_established", "event": event, "to": "session_established",
            "at": 1_700_000_000.0 + n}  # fmt: skip


def test_the_watch_prints_new_transitions_says_what_it_missed_and_ends_with_the_session(capsys):
    looks = iter([
        {"id": "c1", "node": "n2", "jid": "a@x/r", "state": "session_established",
         "transitions": [transition(1), transition(2)]},
        {"state": "session_established", "transitions": [transition(3, "<message type='chat'>")]},
        {"state": "session_established", "transitions": [transition(60)]},
        {"state": "closed", "ended_at": 1.0, "transitions": [transition(61, "</stream:stream>")]},
    ])  # fmt: skip
    asked = []

    def ask(**args):
        asked.append(args)
        return next(looks)

    said = watch_session(ask, "a@x/r", interval=0)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("watching session c1 on node n2 (a@x/r)")
    assert "#3" in out[1] and "--<message type='chat'>--> session_established" in out[1]
    assert "56 transitions came faster" in out[2]
    assert "#60" in out[3] and "#61" in out[4]
    assert said == "session c1 ended in closed"
    # After the first look it follows the connection on its node, from the last one seen.
    assert asked[1] == {"id": "c1", "since": 2, "node": "n2"}
    assert asked[3]["since"] == 60


def test_counts_put_states_down_and_nodes_across_with_totals():
    table = counts_table({
        "n1": {"session_established": 3, "wait_for_stream": 1},
        "n2": {"session_established": 2},
        "n3": {"error": "node n3 did not answer within 5 s (is it down?)"},
    }).splitlines()  # fmt: skip
    assert table[0].split() == ["STATE", "n1", "n2", "n3", "TOTAL"]
    assert table[1].split() == ["session_established", "3", "2", "?", "5"]
    assert table[2].split() == ["wait_for_stream", "1", "0", "?", "1"]
    assert table[3].split() == ["total", "4", "2", "?", "6"]
    assert table[4].startswith("n3: node n3 did not answer")
