"""SASL server mechanisms (RFC 4422): SCRAM-SHA-1/256/512 and -PLUS, PLAIN, ANONYMOUS."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import precis_i18n
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

# Hash names as they appear in mechanism names (SCRAM-<hash>[-PLUS]).
SCRAM_HASHES = ("SHA-1", "SHA-256", "SHA-512")


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What is stored per account and hash instead of the password (RFC 5802 §3)."""

    hash_name: str  # one of SCRAM_HASHES
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


# --- step results ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send <challenge/> with `data` (base64 by the caller; empty data is sent as '=')."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated as the normalised localpart `username`; `data` goes into <success/>."""

    username: str
    data: bytes | None


@dataclass(frozen=True, slots=True)
class Failure:
    """Send <failure/> with this RFC 6120 §6.5 condition; the exchange is over."""

    condition: str
    text: str | None = None


@dataclass(frozen=True, slots=True)
class NeedCredentials:
    """Look up the stored ScramCredentials, then call the mechanism's `credentials()`."""

    username: str
    hash_name: str


@dataclass(frozen=True, slots=True)
class NeedPasswordCheck:
    """Check the password (on a thread pool), then call the mechanism's `password_checked()`."""

    username: str
    password: str


StepResult = Challenge | Success | Failure | NeedCredentials | NeedPasswordCheck

# --- credentials ----------------------------------------------------------------------------

_HASHLIB = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}
_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE = precis_i18n.get_profile("OpaqueString")


def _algo(hash_name: str) -> str:
    try:
        return _HASHLIB[hash_name]
    except KeyError:
        raise ValueError(f"unknown SCRAM hash {hash_name!r}") from None


def _hmac(algo: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, algo).digest()


def derive_credentials(
    password: str, hash_name: str, salt: bytes, iterations: int
) -> ScramCredentials:
    """RFC 5802 §3 keys of a password (PRECIS OpaqueString). Slow: not on the event loop.
    Raises ValueError for an unknown hash or a password OpaqueString refuses (e.g. empty)."""
    algo = _algo(hash_name)
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salted = hashlib.pbkdf2_hmac(algo, _OPAQUE.enforce(password).encode(), salt, iterations)
    client_key = _hmac(algo, salted, b"Client Key")
    stored_key = hashlib.new(algo, client_key).digest()
    return ScramCredentials(
        hash_name, salt, iterations, stored_key, _hmac(algo, salted, b"Server Key")
    )


def new_credentials(
    password: str,
    iterations: int = 4096,
    hashes: Iterable[str] = SCRAM_HASHES,
    salt: Callable[[], bytes] | None = None,
) -> dict[str, ScramCredentials]:
    """Credentials for every hash, each with its own salt (16 random bytes unless given)."""
    make_salt = salt or (lambda: os.urandom(16))
    return {h: derive_credentials(password, h, make_salt(), iterations) for h in hashes}


def verify_plain(password: str, creds: ScramCredentials) -> bool:
    """Does `password` match the stored credentials? Slow: not on the event loop."""
    try:
        derived = derive_credentials(password, creds.hash_name, creds.salt, creds.iterations)
    except ValueError:
        return False
    return hmac.compare_digest(derived.stored_key, creds.stored_key)


# --- names and JIDs -------------------------------------------------------------------------

_LOCALPART_EXCLUDED = frozenset("\"&'/:<>@")  # RFC 7622 §3.3.1


def _localpart(raw: str) -> str | None:
    """The normalised localpart (PRECIS UsernameCaseMapped, RFC 7622), or None if invalid."""
    try:
        local = _USERNAME.enforce(raw)
    except ValueError:
        return None
    if _LOCALPART_EXCLUDED.intersection(local) or len(local.encode()) > 1023:
        return None
    return local


def _authzid_ok(authzid: str, username: str, domain: str) -> bool:
    """An authorization identity is allowed only as the user's own bare JID."""
    local, at, host = authzid.partition("@")
    if not at or "/" in host:
        return False
    return _localpart(local) == username and _domain(host) == _domain(domain)


def _domain(domain: str) -> str:
    return domain.rstrip(".").lower()


def _text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\0" in text else text


# --- SCRAM (RFC 5802, RFC 7677) --------------------------------------------------------------

_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # nonce characters: printable ASCII but ','
_SASLNAME = re.compile(r"(?:[^,=]|=2C|=3D)+")
_CB_NAME = re.compile(r"[A-Za-z0-9.-]+")
_EXTENSION = re.compile(r"[A-Za-z]=[^,]*")
_MALFORMED = Failure("malformed-request")


def _saslname(value: str) -> str | None:
    if not _SASLNAME.fullmatch(value):
        return None
    return value.replace("=2C", ",").replace("=3D", "=")


def _b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class ScramServer:
    """One SCRAM exchange, server side: step(client-first) → NeedCredentials;
    credentials(creds) → Challenge(server-first); step(client-final) → Success(v=...)."""

    __slots__ = (
        "name", "hash_name", "plus", "_algo", "_server_nonce", "_channel_bindings",
        "_plus_offered", "_domain", "_fake_secret", "_fake_iterations", "_state",
        "_username", "_gs2_header", "_first_bare", "_nonce", "_server_first", "_creds", "_fake",
    )  # fmt: skip

    def __init__(
        self,
        hash_name: str,
        plus: bool,
        nonce: str,
        channel_bindings: dict[str, bytes],
        plus_offered: bool,
        domain: str,
        fake_salt_secret: bytes = b"",
        *,
        fake_iterations: int = 4096,
    ) -> None:
        self._algo = _algo(hash_name)
        if not _PRINTABLE.fullmatch(nonce):
            raise ValueError("the server nonce must be printable ASCII without ','")
        self.name = f"SCRAM-{hash_name}-PLUS" if plus else f"SCRAM-{hash_name}"
        self.hash_name = hash_name
        self.plus = plus
        self._server_nonce = nonce
        self._channel_bindings = channel_bindings
        self._plus_offered = plus_offered
        self._domain = domain
        self._fake_secret = fake_salt_secret
        self._fake_iterations = fake_iterations
        self._state = "start"
        self._fake = False

    def step(self, data: bytes | None) -> StepResult:
        """`data` is the decoded response; None means <auth/> carried no initial response."""
        state, self._state = self._state, "done"  # whatever fails ends the exchange
        if state == "start" and data is None:
            self._state = "started"
            return Challenge(b"")
        if state in ("start", "started") and data is not None:
            return self._client_first(data)
        if state == "final" and data is not None:
            return self._client_final(data)
        return Failure("malformed-request", "unexpected SCRAM message")

    def credentials(self, creds: ScramCredentials | None) -> Challenge | Failure:
        """The answer to NeedCredentials; None for an unknown user (or one without this hash)."""
        if self._state != "credentials":
            self._state = "done"
            return Failure("malformed-request", "unexpected SCRAM message")
        if creds is None:
            creds, self._fake = self._fake_credentials(), True
        elif creds.hash_name != self.hash_name:
            self._state = "done"
            return Failure("temporary-auth-failure")
        self._creds = creds
        self._server_first = f"r={self._nonce},s={_b64(creds.salt)},i={creds.iterations}"
        self._state = "final"
        return Challenge(self._server_first.encode())

    def _client_first(self, data: bytes) -> StepResult:
        msg = _text(data)
        parts = msg.split(",", 2) if msg else []
        if len(parts) != 3:
            return _MALFORMED
        flag, authz, bare = parts
        cb_data = self._channel_binding(flag)
        if isinstance(cb_data, Failure):
            return cb_data
        attrs = bare.split(",")
        if any(a.startswith("m=") for a in attrs):
            return Failure("malformed-request", "unsupported mandatory extension")
        if (
            len(attrs) < 2
            or not attrs[0].startswith("n=")
            or not attrs[1].startswith("r=")
            or not _PRINTABLE.fullmatch(attrs[1][2:])
            or not all(_EXTENSION.fullmatch(a) for a in attrs[2:])
            or (authz and not authz.startswith("a="))
        ):
            return _MALFORMED
        raw_user = _saslname(attrs[0][2:])
        authzid = _saslname(authz[2:]) if authz else ""
        if raw_user is None or authzid is None:
            return _MALFORMED
        username = _localpart(raw_user)
        if username is None:
            return Failure("not-authorized")
        if authzid and not _authzid_ok(authzid, username, self._domain):
            return Failure("invalid-authzid")
        self._username = username
        self._gs2_header = f"{flag},{authz},".encode() + cb_data
        self._first_bare = bare
        self._nonce = attrs[1][2:] + self._server_nonce
        self._state = "credentials"
        return NeedCredentials(username, self.hash_name)

    def _channel_binding(self, flag: str) -> bytes | Failure:
        """The channel binding data the GS2 flag commits to (RFC 5802 §6)."""
        if flag.startswith("p="):
            if not self.plus:
                return Failure("malformed-request", "channel binding on a non-PLUS mechanism")
            if not _CB_NAME.fullmatch(flag[2:]):
                return _MALFORMED
            data = self._channel_bindings.get(flag[2:])
            if data is None:
                return Failure("not-authorized", "unsupported channel binding type")
            return data
        if flag not in ("n", "y"):
            return _MALFORMED
        if self.plus:
            return Failure("malformed-request", "-PLUS mechanism without channel binding")
        if flag == "y" and self._plus_offered:
            return Failure("not-authorized", "channel binding downgrade")
        return b""

    def _client_final(self, data: bytes) -> Success | Failure:
        msg = _text(data) or ""
        without_proof, _, proof_attr = msg.rpartition(",")
        attrs = without_proof.split(",")
        if (
            len(attrs) < 2
            or not proof_attr.startswith("p=")
            or not attrs[0].startswith("c=")
            or not attrs[1].startswith("r=")
            or not all(_EXTENSION.fullmatch(a) and a[0] != "m" for a in attrs[2:])
        ):
            return _MALFORMED
        binding, proof = _b64decode(attrs[0][2:]), _b64decode(proof_attr[2:])
        if binding is None or proof is None:
            return _MALFORMED
        if attrs[1][2:] != self._nonce or not hmac.compare_digest(binding, self._gs2_header):
            return Failure("not-authorized")
        creds, algo = self._creds, self._algo
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(algo, creds.stored_key, auth_message)
        if len(proof) != len(signature):
            return Failure("not-authorized")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        proven = hmac.compare_digest(hashlib.new(algo, client_key).digest(), creds.stored_key)
        if not proven or self._fake:
            return Failure("not-authorized")
        verifier = _b64(_hmac(algo, creds.server_key, auth_message))
        return Success(self._username, b"v=" + verifier.encode())

    def _fake_credentials(self) -> ScramCredentials:
        """Stable, secret-keyed stand-ins so an unknown user looks like a known one."""
        seed = f"{self.hash_name}\0{self._username}".encode()
        salt = hmac.new(self._fake_secret, b"salt\0" + seed, "sha256").digest()[:16]
        key = _hmac(self._algo, self._fake_secret, b"key\0" + seed)
        return ScramCredentials(self.hash_name, salt, self._fake_iterations, key, key)


# --- PLAIN (RFC 4616) and ANONYMOUS (RFC 4505) ----------------------------------------------


class PlainServer:
    """step(authzid NUL authcid NUL passwd) → NeedPasswordCheck; password_checked(ok)."""

    __slots__ = ("name", "_domain", "_state", "_username")

    def __init__(self, domain: str) -> None:
        self.name = "PLAIN"
        self._domain = domain
        self._state = "start"
        self._username = ""

    def step(self, data: bytes | None) -> StepResult:
        state, self._state = self._state, "done"
        if state == "start" and data is None:
            self._state = "started"
            return Challenge(b"")
        if state not in ("start", "started") or data is None:
            return Failure("malformed-request", "unexpected PLAIN message")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _MALFORMED
        parts = text.split("\0")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            return _MALFORMED
        authzid, authcid, password = parts
        username = _localpart(authcid)
        if username is None:
            return Failure("not-authorized")
        if authzid and not _authzid_ok(authzid, username, self._domain):
            return Failure("invalid-authzid")
        self._username = username
        self._state = "check"
        return NeedPasswordCheck(username, password)

    def password_checked(self, ok: bool) -> Success | Failure:
        """The answer to NeedPasswordCheck."""
        state, self._state = self._state, "done"
        if state != "check":
            return Failure("malformed-request", "unexpected PLAIN message")
        return Success(self._username, None) if ok else Failure("not-authorized")


class AnonymousServer:
    """Any trace data (or none) → Success with the username handed in."""

    __slots__ = ("name", "_username", "_done")

    def __init__(self, username: str) -> None:
        self.name = "ANONYMOUS"
        self._username = username
        self._done = False

    def step(self, data: bytes | None) -> Success | Failure:
        if self._done:
            return Failure("malformed-request", "unexpected ANONYMOUS message")
        self._done = True
        return Success(self._username, None)


Mechanism = ScramServer | PlainServer | AnonymousServer

# --- advertising, choosing, channel binding data ----------------------------------------------

_PREFERENCE = (
    *(f"SCRAM-{h}-PLUS" for h in reversed(SCRAM_HASHES)),
    *(f"SCRAM-{h}" for h in reversed(SCRAM_HASHES)),
    "PLAIN",
    "ANONYMOUS",
)


def mechanism_names(allowed: list[str], tls: bool, channel_binding_types: list[str]) -> list[str]:
    """The mechanisms to advertise, most preferred first."""
    return [
        name
        for name in _PREFERENCE
        if name in allowed
        and (not name.endswith("-PLUS") or (tls and channel_binding_types))
        and (name != "PLAIN" or tls)
    ]


def make_mechanism(
    name: str,
    *,
    domain: str,
    nonce: str,
    channel_bindings: dict[str, bytes],
    plus_offered: bool,
    anonymous_username: str | None,
    fake_salt_secret: bytes,
    fake_iterations: int = 4096,
) -> Mechanism | None:
    """The server side of mechanism `name`, or None if there is no such mechanism here."""
    if name == "PLAIN":
        return PlainServer(domain)
    if name == "ANONYMOUS":
        return None if anonymous_username is None else AnonymousServer(anonymous_username)
    hash_name, plus = name.removeprefix("SCRAM-"), name.endswith("-PLUS")
    hash_name = hash_name.removesuffix("-PLUS")
    if not name.startswith("SCRAM-") or hash_name not in SCRAM_HASHES:
        return None
    return ScramServer(
        hash_name,
        plus,
        nonce,
        channel_bindings,
        plus_offered,
        domain,
        fake_salt_secret,
        fake_iterations=fake_iterations,
    )


def tls_server_end_point(cert_der: bytes) -> bytes:
    """RFC 5929 §4.1 channel binding data of the server certificate (DER). Raises ValueError
    when the signature has no single hash (e.g. Ed25519): do not offer the type then."""
    cert = x509.load_der_x509_certificate(cert_der)
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"unsupported certificate signature: {exc}") from None
    if algorithm is None:
        raise ValueError("certificate signature has no hash; tls-server-end-point undefined")
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert_der)
    return digest.finalize()
