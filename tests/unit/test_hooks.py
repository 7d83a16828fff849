"""Hooks with many subscribers: several feature modules on one hook run in their declared order,
and any of them may stop the chain (what blocking, carbons and the archive will need)."""

from __future__ import annotations

import types

import pytest

from features import offline, presence
from features.hooks import Continue, ServerContext, Stop, hook
from features.registry import Registry
from fsm.core import Route, Send
from routing.router import Router
from routing.sessions import LocalSessionManager
from tests.unit.fsm_helpers import element
from xmppd.node import feature_modules
from xmppd.replay.world import World

PRESENCE = "<presence xmlns='jabber:client' from='alice@localhost/a'/>"


def module(name: str, **functions) -> types.ModuleType:
    made = types.ModuleType(name)
    for key, value in functions.items():
        setattr(made, key, value)
    return made


def test_two_modules_on_client_presence_run_in_order_and_the_first_may_stop():
    seen = []

    @hook("client_presence", order=10)
    def first(stanza, data):
        seen.append("first")
        return Continue([Send(stanza)], data={"by": "first"})

    @hook("client_presence", order=90)
    def second(stanza, data):
        seen.append(("second", data))
        return Stop([Route(stanza)])

    registry = Registry.from_modules([module("late", f=second), module("early", f=first)])
    stanza = element(PRESENCE).element
    data, actions, stopped = registry.run("client_presence", stanza, {"by": "nobody"})
    assert seen == ["first", ("second", {"by": "first"})]  # by order, not by loading
    assert [type(a).__name__ for a in actions] == ["Send", "Route"] and stopped
    assert data == {"by": "first"}

    @hook("client_presence", order=5)
    def gatekeeper(stanza, data):
        return Stop()

    registry.add_module(module("gate", f=gatekeeper))
    seen.clear()
    assert registry.run("client_presence", stanza, {}) == ({}, [], True)
    assert seen == []  # stopped before the others ran


def test_equal_orders_run_in_the_order_the_modules_came():
    calls = []
    subscribers = [hook("session_closed")(lambda s, d, n=n: calls.append(n)) for n in range(3)]
    registry = Registry.from_modules([module(f"m{n}", f=f) for n, f in enumerate(subscribers)])
    registry.run("session_closed", None, {})
    assert calls == [0, 1, 2]


def test_an_unknown_hook_name_is_refused():
    with pytest.raises(ValueError, match="no hook named"):
        hook("client_mesage")


def test_the_node_features_share_hooks_rather_than_one_slot_each():
    registry = Registry.from_modules(feature_modules())
    assert presence.client_presence in registry.subscribers("client_presence")
    assert offline.undeliverable_message in registry.subscribers("undeliverable_message")
    assert registry.subscribers("roster_changed") == [presence.roster_changed]


def test_two_modules_on_undeliverable_message_through_the_router():
    """A message to alice, who has no session: an archive-like module sees it first, then
    offline storage keeps it; a blocking-like module placed before both stops it."""
    world = World(("localhost",))
    world.add_account("alice", "localhost", "pw")
    seen = []

    @hook("undeliverable_message", order=10)
    def archive(stanza, context: ServerContext):
        seen.append(("archive", stanza.get("to")))
        return Continue()

    world.features.add_module(module("archive", f=archive))
    message = element(
        "<message xmlns='jabber:client' from='bob@localhost/b' to='alice@localhost' "
        "type='chat'><body>hi</body></message>"
    ).element
    world.router.route(message)
    world.run_due()
    assert seen == [("archive", "alice@localhost")]
    assert len(world.storage.offline.pop_all("alice", "localhost")) == 1

    @hook("undeliverable_message", order=1)
    def blocking(stanza, context):
        seen.append(("blocking", stanza.get("to")))
        return Stop()

    world.features.add_module(module("blocking", f=blocking))
    seen.clear()
    world.router.route(element(
        "<message xmlns='jabber:client' from='bob@localhost/b' to='alice@localhost' "
        "type='chat'><body>again</body></message>"
    ).element)  # fmt: skip
    world.run_due()
    assert seen == [("blocking", "alice@localhost")]
    assert world.storage.offline.pop_all("alice", "localhost") == []


def test_without_subscribers_an_undeliverable_message_bounces():
    bounced = []

    class Lanes:
        def submit(self, *args):
            raise AssertionError("no work expected")

    sessions = LocalSessionManager()
    from routing.work import AccountWork

    router = Router("n1", ["localhost"], sessions, None, AccountWork(Lanes()))
    router.route = _recording(router.route, bounced)
    router.route(element(
        "<message xmlns='jabber:client' from='bob@localhost/b' to='alice@localhost' "
        "type='chat'><body>hi</body></message>"
    ).element)  # fmt: skip
    assert [s.get("type") for s in bounced] == ["chat", "error"]


def _recording(route, into):
    def wrapped(stanza):
        into.append(stanza)
        return original(stanza)

    original = route
    return wrapped


# --- order: the host's outbox and the router's per-account work ----------------------------------


def test_a_message_after_a_subscription_request_waits_for_it_in_the_world():
    """The request needs alice's roster first (a query); the message does not: the host holds
    the message until the request has gone, so bob gets them in the order alice sent them."""
    from fsm.session import Env
    from tests.unit.fsm_helpers import config as machine_config
    from xmppd.replay.world import ReplayClock, ReplayRandom

    world = World(("localhost",))
    names = {}
    for user in ("alice", "bob"):
        world.add_account(user, "localhost", "pw")
        config = machine_config(hosts=("localhost",), mechanisms={"localhost": ("PLAIN",)})
        m = names[user] = world.machine(user, config, Env(ReplayClock(), ReplayRandom()))
        auth = "AGFsaWNlAHB3" if user == "alice" else "AGJvYgBwdw=="
        header = ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
                  "streams' to='localhost' version='1.0'>")  # fmt: skip
        for chunk in (
            header,
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            header,
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>",
            header,
            "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>r</resource></bind></iq>",
            "<presence/>",
        ):
            world.feed(m, chunk.encode())
            world.run()
    bob = names["bob"]
    seen = len(bob.out)
    world.feed(
        names["alice"],
        b"<presence type='subscribe' to='bob@localhost'/>"
        b"<message to='bob@localhost' type='chat'><body>second</body></message>",
    )
    world.run()
    got = b"".join(bob.out[seen:])
    assert b'type="subscribe"' in got or b"type='subscribe'" in got, got
    assert got.index(b"subscribe") < got.index(b"second"), got
