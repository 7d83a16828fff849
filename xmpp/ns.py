"""XML namespaces used across xmppd, named after the specs that define them."""

CLIENT = "jabber:client"
SERVER = "jabber:server"
STREAM = "http://etherx.jabber.org/streams"
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION = "urn:ietf:params:xml:ns:xmpp-session"
SASL_CB = "urn:xmpp:sasl-cb:0"  # XEP-0440
PING = "urn:xmpp:ping"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
CAPS = "http://jabber.org/protocol/caps"
XML = "http://www.w3.org/XML/1998/namespace"


def q(ns: str, name: str) -> str:
    """Clark notation `{ns}name`, the form lxml uses for qualified names."""
    return f"{{{ns}}}{name}"
