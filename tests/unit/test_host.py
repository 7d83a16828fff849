"""The host of a state machine: one table of action handlers serves the node's actors and the
replay world alike, and the outbox keeps a session's routing in the order the machine chose."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from actors.actor import HostActor
from actors.host import ACTIONS, Host, Outbox
from fsm import core
from routing import actions as routing_actions
from routing.work import AccountWork
from xmppd.replay.world import Machine

ROOT = Path(__file__).resolve().parents[2]


def action_types() -> set[type]:
    names = set(core.__all__) - {"Transition"}
    found = {getattr(core, n) for n in names}
    return {
        t for t in found
        if dataclasses.is_dataclass(t) and t.__name__ not in EVENTS
    } | set(routing_actions.ROUTING_ACTIONS)  # fmt: skip


EVENTS = {
    "StreamOpen", "StreamElement", "StreamClose", "StreamBroken", "TLSEstablished", "Timeout",
    "Deliver", "CredentialsLoaded", "PasswordChecked", "Kick", "ConnectionLost",
    "SessionReplaced", "SessionOpened", "QueryDone",
}  # fmt: skip


def test_every_action_of_fsm_has_exactly_one_handler():
    missing = {t.__name__ for t in action_types()} - {t.__name__ for t in ACTIONS}
    assert not missing


def test_the_node_and_the_replay_world_host_machines_with_the_same_code():
    for host in (HostActor, Machine):
        assert issubclass(host, Host)
        for shared in ("handle", "perform", "start_machine"):
            assert getattr(host, shared) is getattr(Host, shared), (host, shared)


def test_no_other_module_interprets_actions():
    """A second `match` over the action types would drift from the first (the replay world's
    PLAIN check once did)."""
    offenders = []
    for path in ROOT.glob("[!.]*/**/*.py"):
        if path.parts[len(ROOT.parts)] in ("tests", "bench", "build", ".venv"):
            continue
        text = path.read_text()
        if path.relative_to(ROOT).as_posix() in ("actors/host.py", "routing/router.py"):
            continue
        for name in ("Send", "SendHeader", "Query", "OpenSession", "Route", "DeliverToUser"):
            if f"case {name}(" in text:
                offenders.append(f"{path.relative_to(ROOT)}: case {name}(")
    assert not offenders


# --- the outbox --------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.sent: list = []

    def __call__(self, actions: list) -> None:
        self.sent += actions


def test_routing_goes_at_once_when_no_query_is_pending():
    sent = Recorder()
    box = Outbox(sent)
    box.put("a")
    assert sent.sent == ["a"] and box.items == []


def test_routing_after_a_query_waits_and_the_answers_routes_go_first():
    sent = Recorder()
    box = Outbox(sent)
    then = object()
    box.put("before")
    box.barrier(then)
    box.put("after")
    box.release()
    assert sent.sent == ["before"]
    box.answering(then)  # the answer's step: its routes take the barrier's place
    box.put("answer")
    box.release()
    assert sent.sent == ["before", "answer", "after"]
    assert box.items == []


def test_a_second_query_in_the_answer_holds_what_came_after_the_first():
    sent = Recorder()
    box = Outbox(sent)
    first, second = object(), object()
    box.barrier(first)
    box.put("late")
    box.answering(first)
    box.put("from first")
    box.barrier(second)
    box.release()
    assert sent.sent == ["from first"]
    box.answering(second)
    box.release()
    assert sent.sent == ["from first", "late"]


def test_a_session_that_ends_sends_what_waited():
    sent = Recorder()
    box = Outbox(sent)
    box.barrier(object())
    box.put("unavailable")
    box.flush_all()
    assert sent.sent == ["unavailable"] and box.items == []


# --- per-account work ----------------------------------------------------------------------------


class Lanes:
    def __init__(self) -> None:
        self.jobs: list = []

    def submit(self, account, call, args, done) -> None:
        self.jobs.append((call, args, done))

    def finish_one(self) -> None:
        call, args, done = self.jobs.pop(0)
        done(call(None, *args))


def test_a_delivery_waits_behind_work_started_for_its_account():
    lanes = Lanes()
    work = AccountWork(lanes)
    order: list[str] = []
    work.run("alice@x", lambda _s: "stored", (), lambda r: order.append(r))
    assert work.must_wait("alice@x") and not work.must_wait("bob@x")
    work.after("alice@x", lambda: order.append("presence"))
    lanes.finish_one()
    lanes.finish_one()
    assert order == ["stored", "presence"] and not work.pending


def test_what_a_job_delivers_to_its_own_account_does_not_wait_for_itself():
    lanes = Lanes()
    work = AccountWork(lanes)
    seen = []
    work.run("alice@x", lambda _s: None, (), lambda _r: seen.append(work.must_wait("alice@x")))
    work.run("alice@x", lambda _s: None, (), lambda _r: None)
    lanes.finish_one()
    assert seen == [False]  # alice has a second job queued, but this is the first's own output


def test_the_host_has_no_protocol_logic():
    """Every `if` about XMPP belongs in fsm/ or features/: the host names no XMPP element."""
    source = inspect.getsource(Host)
    for word in ("ns.CLIENT", "jabber:client", "stanza", ".tag", '.get("type")', "JID("):
        assert word not in source, word


# --- queries a step returns one after the other: one trip to the lane ------------------------


class BatchingServices:
    node = "test"
    max_sessions = 1

    def __init__(self) -> None:
        self.router = type("R", (), {"perform": lambda self, actions: None})()
        self.sessions = None
        self.jobs: list = []  # ("one", [query]) or ("all", [queries]) in submission order

    def query(self, account: str, query: core.Query, reply) -> None:
        self.jobs.append(("one", [query], [reply]))

    def query_all(self, account: str, queries: list, replies: list) -> None:
        self.jobs.append(("all", list(queries), replies))

    def call_later(self, seconds: float, fn) -> None:
        return None


class TellingHost(Host):
    def __init__(self, services) -> None:
        super().__init__(type("M", (), {"step": None}), type("D", (), {"jid": None})(),
                         services, transport=None, address="conn-1")  # fmt: skip
        self.told: list = []

    def tell(self, event) -> None:
        self.told.append(event)


def _first(result, data):
    return data, []


def _second(result, data):
    return data, []


def test_consecutive_queries_go_to_the_lane_as_one_job_and_answer_one_by_one():
    services = BatchingServices()
    host = TellingHost(services)
    one = core.Query(len, ("a",), _first)
    two = core.Query(len, ("bb",), _second)
    host.perform([one, two])
    assert [(kind, queries) for kind, queries, _ in services.jobs] == [("all", [one, two])]
    for reply, result in zip(services.jobs[0][2], (1, 2), strict=True):
        reply(result)
    assert host.told == [core.QueryDone(_first, 1), core.QueryDone(_second, 2)]


def test_queries_with_another_action_between_them_stay_apart():
    """Whatever the action between them submits to the lane must keep its place."""
    services = BatchingServices()
    host = TellingHost(services)
    one = core.Query(len, ("a",), _first)
    two = core.Query(len, ("bb",), _second)
    host.perform([one, core.SetTimer("idle", 5), two])
    assert [(kind, queries) for kind, queries, _ in services.jobs] == [
        ("one", [one]),
        ("one", [two]),
    ]


def test_the_node_runs_a_batch_in_order_and_a_failing_query_does_not_stop_the_next():
    from actors.node import _run_all

    def fails(storage):
        raise KeyError("gone")

    outcomes = _run_all("storage", [core.Query(lambda s: s, (), _first),
                                    core.Query(fails, (), _first),
                                    core.Query(lambda s, x: x * 2, (21,), _second)])  # fmt: skip
    assert outcomes[0] == "storage" and isinstance(outcomes[1], KeyError) and outcomes[2] == 42
