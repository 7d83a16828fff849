"""Self-signed certificates made on first start, and the server TLS context over memory BIOs."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from xmppd.certs import certificate_der, ensure_self_signed, load_tls_context


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    certs = tmp_path / "data" / "certs"
    return certs / "example.org.crt", certs / "example.org.key"


def handshake(server: ssl.SSLObject, client: ssl.SSLObject, wires: list[ssl.MemoryBIO]) -> None:
    """Pump bytes between two SSLObjects until both finish the handshake."""
    server_in, server_out, client_in, client_out = wires
    for _ in range(10):
        done = 0
        for tls, outgoing, peer_incoming in (
            (client, client_out, server_in),
            (server, server_out, client_in),
        ):
            try:
                tls.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            peer_incoming.write(outgoing.read())
        if done == 2:
            return
    raise AssertionError("handshake did not finish")


def connect(context: ssl.SSLContext, cert: Path, server_hostname: str) -> ssl.SSLObject:
    client_context = ssl.create_default_context(cafile=cert)
    client_context.verify_flags |= ssl.VERIFY_X509_STRICT
    wires = [ssl.MemoryBIO() for _ in range(4)]
    server = context.wrap_bio(wires[0], wires[1], server_side=True)
    client = client_context.wrap_bio(wires[2], wires[3], server_hostname=server_hostname)
    handshake(server, client, wires)
    return client


def test_creates_a_key_only_we_can_read_and_a_certificate(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    assert ensure_self_signed(cert_path, key_path, ["example.org", "localhost", "127.0.0.1"])
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.parent.stat().st_mode) == 0o700
    assert not list(cert_path.parent.glob(".*"))  # no partial files left behind

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["example.org", "*.example.org", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert cert.issuer == cert.subject
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert lifetime > datetime.timedelta(days=3640)


def test_a_second_call_keeps_the_pair(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    assert ensure_self_signed(cert_path, key_path, ["example.org"])
    before = cert_path.read_bytes(), key_path.read_bytes()
    assert not ensure_self_signed(cert_path, key_path, ["example.org"])
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


def test_a_lost_key_remakes_the_pair(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    ensure_self_signed(cert_path, key_path, ["example.org"])
    old_cert = cert_path.read_bytes()
    key_path.unlink()
    assert ensure_self_signed(cert_path, key_path, ["example.org"])
    assert cert_path.read_bytes() != old_cert
    load_tls_context(cert_path, key_path)  # the new pair matches


@pytest.mark.parametrize("name", ["example.org", "conference.example.org"])
def test_handshake_over_memory_bios(pair: tuple[Path, Path], name: str) -> None:
    cert_path, key_path = pair
    ensure_self_signed(cert_path, key_path, ["example.org"])
    client = connect(load_tls_context(cert_path, key_path), cert_path, name)
    assert client.version() in ("TLSv1.2", "TLSv1.3")
    # What tls-server-end-point hashes is the certificate the client actually saw.
    assert client.getpeercert(binary_form=True) == certificate_der(cert_path)


def test_handshake_with_a_tls12_client(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    ensure_self_signed(cert_path, key_path, ["localhost"])
    context = load_tls_context(cert_path, key_path)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    client_context = ssl.create_default_context(cafile=cert_path)
    client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    wires = [ssl.MemoryBIO() for _ in range(4)]
    server = context.wrap_bio(wires[0], wires[1], server_side=True)
    client = client_context.wrap_bio(wires[2], wires[3], server_hostname="localhost")
    handshake(server, client, wires)
    assert client.version() == "TLSv1.2"
    assert client.cipher()[0].startswith("ECDHE-ECDSA-")


def test_a_wrong_name_fails_verification(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    ensure_self_signed(cert_path, key_path, ["example.org"])
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(load_tls_context(cert_path, key_path), cert_path, "example.net")


def test_certificate_der_takes_the_leaf_from_a_combined_file(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    cert_path, key_path = pair
    ensure_self_signed(cert_path, key_path, ["example.org"])
    other_cert, other_key = tmp_path / "other.crt", tmp_path / "other.key"
    ensure_self_signed(other_cert, other_key, ["example.net"])
    combined = tmp_path / "combined.pem"
    combined.write_bytes(key_path.read_bytes() + cert_path.read_bytes() + other_cert.read_bytes())
    leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert certificate_der(combined) == leaf.public_bytes(serialization.Encoding.DER)
    der = tmp_path / "leaf.der"
    der.write_bytes(certificate_der(cert_path))
    assert certificate_der(der) == certificate_der(cert_path)
    load_tls_context(combined, combined)  # key and chain from one file


def test_needs_a_host_name(pair: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError):
        ensure_self_signed(*pair, [])
