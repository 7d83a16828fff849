"""Authentication backends: what checks a PLAIN password and hands out SCRAM credentials.

`StoredCredentials` is the only one a production node runs. `AnyPassword` is the test mode that
`[testing] any_password = true` wires in (as Prosody's insecure backends do): any password logs
in, the account is made at first login, and only peers on loopback are let in this way."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from storage.accounts import AccountExists
from xmpp import sasl

log = logging.getLogger("xmppd.auth")


class StoredCredentials:
    """Passwords checked against the salted SCRAM credentials in the account store."""

    def __init__(self, accounts: Any) -> None:
        self.accounts = accounts

    def credentials(self, username: str, domain: str, hash_name: str) -> Any:
        return self.accounts.credentials(username, domain, hash_name)

    def check_password(self, username: str, domain: str, password: str, peer: str) -> bool:
        creds = self.accounts.credentials(username, domain, "SHA-256")
        if creds is None:
            creds = self.accounts.credentials(username, domain, "SHA-1")
        return creds is not None and sasl.verify_plain(password, creds)


class AnyPassword(StoredCredentials):
    """Test mode: any PLAIN password of a loopback peer logs in (SCRAM still needs the real
    credentials); a peer elsewhere is checked as StoredCredentials would."""

    def check_password(self, username: str, domain: str, password: str, peer: str) -> bool:
        if not is_loopback(peer):
            log.warning("test mode: %s@%s from %s is not on loopback: checked", username, domain,
                        peer)  # fmt: skip
            return super().check_password(username, domain, password, peer)
        try:
            if not self.accounts.exists(username, domain):
                self.accounts.create(username, domain, {})  # no credentials: test mode only
        except AccountExists:
            pass  # another session of the same user made it first: what we wanted
        return True


def is_loopback(peer: str) -> bool:
    """Whether "address:port" (IPv6 with or without brackets) is a loopback address."""
    host = peer.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
