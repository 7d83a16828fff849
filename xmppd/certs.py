"""TLS certificates: the self-signed pair made on first start, the server-side SSLContext, and
the per-host contexts chosen by SNI."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xmpp import sasl

VALIDITY = datetime.timedelta(days=3650)

# Mozilla's "intermediate" TLS 1.2 suites (forward secret AEAD only); TLS 1.3 suites are
# OpenSSL's defaults and are not affected by set_ciphers().
CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)


def ensure_self_signed(cert_path: Path, key_path: Path, hostnames: list[str]) -> bool:
    """Make a self-signed EC P-256 certificate for `hostnames` unless both files exist.

    Each name is a subjectAltName, with its wildcard (`*.name`, for subdomains such as MUC
    services) unless it has a single label; IP literals become iPAddress entries. Returns True
    when the files were (re)made. The key is written 0600, a directory we create 0700."""
    if cert_path.is_file() and key_path.is_file():
        return False
    if not hostnames:
        raise ValueError("a certificate needs at least one host name")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # tolerate clients' clock skew
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_alt_names(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for directory in {cert_path.parent, key_path.parent}:
        if not directory.is_dir():
            directory.mkdir(parents=True, mode=0o700)
            directory.chmod(0o700)  # mkdir's mode is filtered by the umask
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return True


def load_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context (TLS 1.2 or newer) for ssl.SSLObject over a MemoryBIO pair."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    # No renegotiation (a client-driven CPU sink) and no TLS compression (CRIME).
    context.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    # No TLS 1.3 session tickets: XMPP clients seldom resume TLS sessions (streams are resumed
    # by XEP-0198, a level up), and the two tickets OpenSSL sends by default after every
    # handshake cost the server (and the client) about a fifth of it (bench/, login storm).
    context.num_tickets = 0
    context.load_cert_chain(cert, key)
    return context


def certificate_der(cert_path: Path) -> bytes:
    """The leaf (first) certificate of a PEM file in DER: what tls-server-end-point hashes."""
    data = cert_path.read_bytes()
    if b"-----BEGIN" not in data:
        return x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    leaf = x509.load_pem_x509_certificates(data)[0]
    return leaf.public_bytes(serialization.Encoding.DER)


def _alt_names(hostnames: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
            if "." in host:  # verifiers ignore wildcards directly under a top-level label
                names.append(x509.DNSName(f"*.{host}"))
    return names


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically: a half-written key or certificate must never be found on start."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(partial, mode)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@dataclass
class TLSCertificates:
    """One SSLContext per host, chosen by SNI; the channel-binding digest follows the choice.
    Connections take `default` when TLS starts and ask `digest` for tls-server-end-point."""

    contexts: dict[str, ssl.SSLContext]
    digests: dict[int, bytes] = field(default_factory=dict)
    default: ssl.SSLContext | None = None

    @classmethod
    def load(cls, pairs: dict[str, tuple[str, str]]) -> TLSCertificates:
        """From (certificate, key) file paths per host."""
        contexts, digests = {}, {}
        for host, (cert, key) in pairs.items():
            context = load_tls_context(cert, key)
            contexts[host] = context
            digests[id(context)] = sasl.tls_server_end_point(certificate_der(cert))
        certs = cls(contexts, digests)
        certs.default = next(iter(contexts.values()))
        certs.default.sni_callback = certs._choose
        return certs

    def _choose(self, sslobj: Any, server_name: str | None, _context: Any) -> None:
        context = self.contexts.get((server_name or "").lower())
        if context is not None:
            sslobj.context = context

    def digest(self, context: ssl.SSLContext) -> bytes:
        return self.digests.get(id(context), b"")
