"""Authentication backends: stored SCRAM credentials, and the loopback-only test mode that
replaced the machine's old any-password switch."""

from __future__ import annotations

from storage.auth import AnyPassword, StoredCredentials, is_loopback
from storage.open import memory_storage
from xmpp import sasl


def storage_with_alice():
    storage = memory_storage()
    storage.accounts.create("alice", "localhost", sasl.new_credentials("right"))
    return storage


def test_stored_credentials_check_plain_against_scram_keys():
    backend = StoredCredentials(storage_with_alice().accounts)
    assert backend.check_password("alice", "localhost", "right", "10.1.2.3:5000")
    assert not backend.check_password("alice", "localhost", "wrong", "127.0.0.1:5000")
    assert not backend.check_password("nobody", "localhost", "right", "127.0.0.1:5000")


def test_any_password_lets_a_loopback_user_in_and_makes_the_account():
    storage = storage_with_alice()
    backend = AnyPassword(storage.accounts)
    assert backend.check_password("newcomer", "localhost", "whatever", "127.0.0.1:40000")
    assert storage.accounts.exists("newcomer", "localhost")
    assert backend.check_password("alice", "localhost", "not hers", "[::1]:40000")


def test_any_password_checks_a_peer_that_is_not_on_loopback():
    storage = storage_with_alice()
    backend = AnyPassword(storage.accounts)
    assert not backend.check_password("newcomer", "localhost", "whatever", "192.0.2.7:40000")
    assert not storage.accounts.exists("newcomer", "localhost")
    assert backend.check_password("alice", "localhost", "right", "192.0.2.7:40000")


def test_loopback_addresses():
    assert is_loopback("127.0.0.1:5222") and is_loopback("127.3.4.5:1")
    assert is_loopback("::1:5222") and is_loopback("[::1]:5222")
    assert not is_loopback("192.0.2.1:5222") and not is_loopback("replay")
