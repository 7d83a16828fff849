"""A small SCRAM client (RFC 5802) for tests, written apart from xmpp.sasl on purpose."""

from __future__ import annotations

import base64
import hashlib
import hmac

import precis_i18n

_HASHLIB = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}


def _escape(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    """first() → client-first; final(server-first) → client-final; verify(server-final).

    `cb_type` None means no channel binding ('n'); `gs2_flag` overrides the flag sent
    ('y', 'n' or 'p=<type>') to exercise the server's downgrade checks.
    """

    def __init__(
        self,
        hash_name: str,
        username: str,
        password: str,
        cb_type: str | None,
        cb_data: bytes,
        nonce: str,
        authzid: str | None = None,
        gs2_flag: str | None = None,
    ) -> None:
        self.algo = _HASHLIB[hash_name]
        self.username = username
        self.password = password
        self.cb_data = cb_data
        self.nonce = nonce
        flag = gs2_flag or (f"p={cb_type}" if cb_type else "n")
        authz = f"a={_escape(authzid)}" if authzid else ""
        self.gs2_header = f"{flag},{authz},"
        self.first_bare = f"n={_escape(username)},r={nonce}"
        self.server_signature: bytes | None = None

    def first(self) -> bytes:
        return (self.gs2_header + self.first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = dict(part.split("=", 1) for part in text.split(","))
        combined = attrs["r"]
        if not combined.startswith(self.nonce) or combined == self.nonce:
            raise ValueError("bad server nonce")
        salt, iterations = base64.b64decode(attrs["s"]), int(attrs["i"])
        password = precis_i18n.get_profile("OpaqueString").enforce(self.password).encode()
        salted = hashlib.pbkdf2_hmac(self.algo, password, salt, iterations)
        client_key = hmac.new(salted, b"Client Key", self.algo).digest()
        stored_key = hashlib.new(self.algo, client_key).digest()
        server_key = hmac.new(salted, b"Server Key", self.algo).digest()
        binding = base64.b64encode(self.gs2_header.encode() + self.cb_data).decode()
        without_proof = f"c={binding},r={combined}"
        auth_message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, self.algo).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.server_signature = hmac.new(server_key, auth_message, self.algo).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> bool:
        if self.server_signature is None:
            return False
        expected = b"v=" + base64.b64encode(self.server_signature)
        return hmac.compare_digest(server_final, expected)
