"""Configuration, node wiring and the xmppd/xmppctl commands."""

__version__ = "0.1.0"
