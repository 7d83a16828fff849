"""A message for offline storage that the database cannot take goes back to its sender with an
error; it is never dropped without a word (as when PostgreSQL is down)."""

from __future__ import annotations

from types import SimpleNamespace

from lxml import etree

from features.offline import store_offline
from fsm.core import Route


class Unreachable:
    def exists(self, *_args):
        return True

    def push(self, *_args):
        raise ConnectionError("connection to server at 127.0.0.1 refused")


def test_a_message_the_database_cannot_store_bounces_with_internal_server_error():
    message = etree.fromstring(
        "<message xmlns='jabber:client' from='alice@localhost/desk' to='bob@localhost' "
        "type='chat' id='m1'><body>for later</body></message>"
    )
    storage = SimpleNamespace(accounts=Unreachable(), offline=Unreachable())
    [action] = store_offline(storage, message, 100)
    assert type(action) is Route
    reply = action.stanza
    assert (reply.get("type"), reply.get("to"), reply.get("id")) == (
        "error", "alice@localhost/desk", "m1")  # fmt: skip
    ns = {"s": "urn:ietf:params:xml:ns:xmpp-stanzas", "c": "jabber:client"}
    assert reply.find("c:error/s:internal-server-error", ns) is not None
    assert "could not be stored" in reply.findtext("c:error/s:text", namespaces=ns)
    assert reply.find("{urn:xmpp:delay}delay") is None, "no offline stamp on the bounce"
