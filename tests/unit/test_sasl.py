"""SASL mechanisms: RFC 5802/7677 transcripts, channel binding, PLAIN, ANONYMOUS, advertising."""

from __future__ import annotations

import base64
import datetime
import hashlib
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from tests.support.scram_client import ScramClient
from xmpp.sasl import (
    AnonymousServer,
    Challenge,
    Failure,
    NeedCredentials,
    NeedPasswordCheck,
    PlainServer,
    ScramCredentials,
    ScramServer,
    Success,
    derive_credentials,
    make_mechanism,
    mechanism_names,
    new_credentials,
    tls_server_end_point,
    verify_plain,
)

DOMAIN = "example.org"
SERVER_NONCE = "3rfcNHYJY1ZVvWVs7j"
SECRET = b"per-process secret"
ALL = [
    "SCRAM-SHA-1",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-512-PLUS",
    "PLAIN",
    "ANONYMOUS",
]
_CREDS: dict[tuple[str, str], ScramCredentials] = {}


def creds(hash_name: str, password: str = "pencil") -> ScramCredentials:
    key = (hash_name, password)
    if key not in _CREDS:
        _CREDS[key] = derive_credentials(password, hash_name, b"\x07" * 16, 4096)
    return _CREDS[key]


def server(hash_name="SHA-256", plus=False, cb=None, plus_offered=False) -> ScramServer:
    return ScramServer(hash_name, plus, SERVER_NONCE, cb or {}, plus_offered, DOMAIN, SECRET)


def exchange(srv: ScramServer, client: ScramClient, stored: ScramCredentials | None = None):
    """Run a whole exchange; returns the final result (or the first Failure)."""
    need = srv.step(client.first())
    if isinstance(need, Failure):
        return need
    assert need == NeedCredentials("user", srv.hash_name)
    challenge = srv.credentials(stored)
    assert isinstance(challenge, Challenge)
    return srv.step(client.final(challenge.data))


def client(hash_name="SHA-256", password="pencil", **kw) -> ScramClient:
    args = {"cb_type": None, "cb_data": b"", "nonce": "clientnonce", **kw}
    return ScramClient(hash_name, "user", password, **args)


# --- RFC transcripts, byte for byte ---------------------------------------------------------


@pytest.mark.parametrize(
    "hash_name, cnonce, snonce, salt, client_final, server_final",
    [
        (
            "SHA-1",  # RFC 5802 §5
            "fyko+d2lbbFgONRv9qkxdawL",
            "3rfcNHYJY1ZVvWVs7j",
            "QSXCR+Q6sek8bf92",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ),
        (
            "SHA-256",  # RFC 7677 §3
            "rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ),
    ],
)
def test_rfc_example_exchange(hash_name, cnonce, snonce, salt, client_final, server_final):
    stored = derive_credentials("pencil", hash_name, base64.b64decode(salt), 4096)
    srv = ScramServer(hash_name, False, snonce, {}, False, DOMAIN)
    cli = ScramClient(hash_name, "user", "pencil", None, b"", cnonce)

    assert cli.first() == f"n,,n=user,r={cnonce}".encode()
    assert srv.step(cli.first()) == NeedCredentials("user", hash_name)
    server_first = f"r={cnonce}{snonce},s={salt},i=4096".encode()
    assert srv.credentials(stored) == Challenge(server_first)
    assert cli.final(server_first) == client_final.encode()
    assert srv.step(client_final.encode()) == Success("user", server_final.encode())
    assert cli.verify(server_final.encode())


def test_sha512_round_trip_with_new_credentials():
    stored = new_credentials("pencil", salt=lambda: b"\x01" * 16)["SHA-512"]
    cli = client("SHA-512")
    result = exchange(server("SHA-512"), cli, stored)
    assert isinstance(result, Success) and result.username == "user"
    assert cli.verify(result.data)


def test_no_initial_response_gets_an_empty_challenge_first():
    srv, cli = server(), client()
    assert srv.step(None) == Challenge(b"")
    assert isinstance(exchange(srv, cli, creds("SHA-256")), Success)


# --- channel binding --------------------------------------------------------------------------

BINDINGS = {"tls-unique": b"finished-message", "tls-server-end-point": b"cert-hash"}


@pytest.mark.parametrize("hash_name", ["SHA-1", "SHA-256", "SHA-512"])
@pytest.mark.parametrize("cb_type", ["tls-unique", "tls-server-end-point"])
def test_plus_succeeds_with_matching_binding(hash_name, cb_type):
    cli = client(hash_name, cb_type=cb_type, cb_data=BINDINGS[cb_type])
    srv = server(hash_name, plus=True, cb=BINDINGS, plus_offered=True)
    assert srv.name == f"SCRAM-{hash_name}-PLUS"
    result = exchange(srv, cli, creds(hash_name))
    assert isinstance(result, Success) and cli.verify(result.data)


@pytest.mark.parametrize("cb_type", ["tls-unique", "tls-server-end-point"])
def test_plus_fails_with_other_binding_data(cb_type):
    cli = client(cb_type=cb_type, cb_data=b"what a man in the middle sees")
    srv = server(plus=True, cb=BINDINGS, plus_offered=True)
    assert exchange(srv, cli, creds("SHA-256")) == Failure("not-authorized")


def test_plus_fails_with_unsupported_binding_type():
    srv = server(plus=True, cb={"tls-server-end-point": b"x"}, plus_offered=True)
    result = srv.step(client(cb_type="tls-unique", cb_data=b"x").first())
    assert result == Failure("not-authorized", "unsupported channel binding type")


def test_y_flag_fails_when_plus_was_offered():
    srv = server(plus_offered=True)
    result = srv.step(client(gs2_flag="y").first())
    assert result == Failure("not-authorized", "channel binding downgrade")


def test_y_flag_succeeds_when_plus_was_not_offered():
    cli = client(gs2_flag="y")
    assert isinstance(exchange(server(plus_offered=False), cli, creds("SHA-256")), Success)


def test_p_flag_on_a_non_plus_mechanism_fails():
    cli = client(cb_type="tls-unique", cb_data=BINDINGS["tls-unique"])
    result = server(cb=BINDINGS, plus_offered=True).step(cli.first())
    assert isinstance(result, Failure) and result.condition == "malformed-request"


@pytest.mark.parametrize("flag", ["n", "y"])
def test_plus_mechanism_without_binding_fails(flag):
    result = server(plus=True, cb=BINDINGS).step(client(gs2_flag=flag).first())
    assert isinstance(result, Failure) and result.condition == "malformed-request"


def test_final_message_must_repeat_the_gs2_header():
    srv, cli = server(), client(gs2_flag="y")
    srv.step(cli.first())
    final = cli.final(srv.credentials(creds("SHA-256")).data)
    tampered = final.replace(b"c=eSws", b"c=biws")  # claims 'n' after sending 'y'
    assert tampered != final
    assert srv.step(tampered) == Failure("not-authorized")


# --- wrong passwords and unknown users --------------------------------------------------------


def test_wrong_password_is_not_authorized():
    cli = client(password="pen")
    assert exchange(server(), cli, creds("SHA-256")) == Failure("not-authorized")


def test_unknown_user_continues_and_fails_like_a_wrong_password():
    srv = server()
    assert srv.step(client().first()) == NeedCredentials("user", "SHA-256")
    challenge = srv.credentials(None)
    shape = rb"r=clientnonce3rfcNHYJY1ZVvWVs7j,s=[A-Za-z0-9+/]{22}==,i=4096"
    assert re.fullmatch(shape, challenge.data)
    assert srv.step(client().final(challenge.data)) == Failure("not-authorized")

    known = server()
    known.step(client(password="wrong").first())
    known_challenge = known.credentials(creds("SHA-256"))
    assert re.fullmatch(shape, known_challenge.data)
    wrong = known.step(client(password="wrong").final(known_challenge.data))
    assert wrong == Failure("not-authorized")


def test_fake_salt_is_stable_and_keyed():
    def fake_salt(secret: bytes, username: bytes = b"user") -> bytes:
        srv = ScramServer("SHA-256", False, SERVER_NONCE, {}, False, DOMAIN, secret)
        srv.step(b"n,,n=" + username + b",r=abc")
        return srv.credentials(None).data.split(b",")[1]

    assert fake_salt(SECRET) == fake_salt(SECRET)
    assert fake_salt(SECRET) != fake_salt(b"another secret")
    assert fake_salt(SECRET) != fake_salt(SECRET, b"someone")
    assert fake_salt(SECRET, b"User") == fake_salt(SECRET, b"user")  # after normalisation


def test_unknown_user_cannot_succeed_even_with_the_fake_keys():
    srv = server()
    srv.step(client().first())
    srv.credentials(None)
    # Whatever the client sends, a fake exchange never succeeds.
    final = b"c=biws,r=clientnonce3rfcNHYJY1ZVvWVs7j,p=" + base64.b64encode(b"\0" * 32)
    assert srv.step(final) == Failure("not-authorized")


# --- usernames and authzid --------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent, expected",
    [
        (b"n,,n=User,r=abc", NeedCredentials("user", "SHA-256")),
        (b"n,,n=a=3Db,r=abc", NeedCredentials("a=b", "SHA-256")),
        (b"n,,n=a=2Cb,r=abc", NeedCredentials("a,b", "SHA-256")),
        (b"n,,n=a=41,r=abc", Failure("malformed-request")),
        (b"n,,n=a b,r=abc", Failure("not-authorized")),
        (b"n,,n=a@b,r=abc", Failure("not-authorized")),
    ],
)
def test_username_decoding_and_normalisation(sent, expected):
    assert server().step(sent) == expected


@pytest.mark.parametrize(
    "authzid, ok",
    [
        ("user@example.org", True),
        ("USER@Example.ORG", True),
        ("other@example.org", False),
        ("user@example.net", False),
        ("user@example.org/phone", False),
        ("example.org", False),
    ],
)
def test_scram_authzid_must_be_the_users_own_jid(authzid, ok):
    result = exchange(server(), client(authzid=authzid), creds("SHA-256"))
    assert isinstance(result, Success) if ok else result == Failure("invalid-authzid")


# --- malformed and out-of-order messages ------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"\xff\xfe",
        b"n,,n=user,r=a\0b",
        b"n,,n=user",
        b"n,,r=abc,n=user",
        b"n,,m=ext,n=user,r=abc",
        b"n,,n=user,r=abc,m=ext",
        b"x,,n=user,r=abc",
        b"n,b=x,n=user,r=abc",
        b"n,,n=,r=abc",
        b"n,,n=user,r=",
        b"n,,n=user,r=abc,1=x",
        b"p=bad name,,n=user,r=abc",
    ],
)
def test_malformed_client_first(sent):
    result = server(plus=sent.startswith(b"p="), cb=BINDINGS).step(sent)
    assert isinstance(result, Failure) and result.condition == "malformed-request"


def test_extensions_after_the_nonce_are_ignored():
    assert server().step(b"n,,n=user,r=abc,x=1") == NeedCredentials("user", "SHA-256")


def _at_final(hash_name="SHA-256") -> tuple[ScramServer, bytes]:
    srv, cli = server(hash_name), client(hash_name)
    srv.step(cli.first())
    return srv, cli.final(srv.credentials(creds(hash_name)).data)


@pytest.mark.parametrize(
    "mangle, condition",
    [
        (lambda f: f.replace(b"clientnonce", b"clientnoncf"), "not-authorized"),
        (lambda f: f.rsplit(b",", 1)[0], "malformed-request"),
        (lambda f: f.rsplit(b",", 1)[0] + b",p=!!!", "malformed-request"),
        (lambda f: f.rsplit(b",", 1)[0] + b",p=AAAA", "not-authorized"),
        (lambda f: f.replace(b"c=biws", b"c=*"), "malformed-request"),
        (lambda f: f.replace(b",r=", b",m=x,r="), "malformed-request"),
        (lambda f: b"\xff" + f, "malformed-request"),
        (lambda f: b"", "malformed-request"),
    ],
)
def test_bad_client_final(mangle, condition):
    srv, final = _at_final()
    result = srv.step(mangle(final))
    assert isinstance(result, Failure) and result.condition == condition


def test_out_of_order_steps_fail():
    srv = server()
    assert srv.credentials(creds("SHA-256")).condition == "malformed-request"

    srv = server()
    srv.step(b"n,,n=user,r=abc")
    assert srv.step(b"c=biws,r=abc,p=AAAA").condition == "malformed-request"  # no creds yet

    srv, final = _at_final()
    assert isinstance(srv.step(final), Success)
    assert srv.step(final).condition == "malformed-request"
    assert srv.credentials(creds("SHA-256")).condition == "malformed-request"

    srv = server()
    assert srv.step(None) == Challenge(b"")
    assert srv.step(None).condition == "malformed-request"


def test_failed_exchange_stays_failed():
    srv = server()
    assert srv.step(b"") == Failure("malformed-request")
    assert srv.step(client().first()).condition == "malformed-request"


def test_credentials_of_another_hash_are_refused():
    srv = server("SHA-256")
    srv.step(client().first())
    assert srv.credentials(creds("SHA-1")) == Failure("temporary-auth-failure")


def test_bad_server_nonce_is_a_programming_error():
    with pytest.raises(ValueError):
        ScramServer("SHA-256", False, "a,b", {}, False, DOMAIN)
    with pytest.raises(ValueError):
        ScramServer("SHA-384", False, "abc", {}, False, DOMAIN)


# --- credentials helpers ----------------------------------------------------------------------


def test_new_credentials_salts_and_verify_plain():
    made = new_credentials("pencil", iterations=1000)
    assert sorted(made) == ["SHA-1", "SHA-256", "SHA-512"]
    assert all(len(c.salt) == 16 and c.iterations == 1000 for c in made.values())
    assert len({c.salt for c in made.values()}) == 3
    assert all(verify_plain("pencil", c) for c in made.values())
    assert not verify_plain("Pencil", made["SHA-256"])
    assert not verify_plain("", made["SHA-256"])


def test_passwords_are_prepared_with_opaque_string():
    stored = creds("SHA-256")
    assert verify_plain("pencil", stored)
    assert derive_credentials("pen\u00a0cil", "SHA-256", b"s", 1) == derive_credentials(
        "pen cil", "SHA-256", b"s", 1
    )  # non-ASCII space maps to ASCII space
    with pytest.raises(ValueError):
        derive_credentials("", "SHA-256", b"s", 1)


# --- PLAIN ------------------------------------------------------------------------------------


def test_plain_success_and_failure():
    plain = PlainServer(DOMAIN)
    assert plain.name == "PLAIN"
    assert plain.step(b"\0Juliet\0r0m30myr0m30") == NeedPasswordCheck("juliet", "r0m30myr0m30")
    assert plain.password_checked(True) == Success("juliet", None)

    plain = PlainServer(DOMAIN)
    plain.step(b"\0juliet\0wrong")
    assert plain.password_checked(False) == Failure("not-authorized")


def test_plain_with_verify_plain():
    stored = creds("SHA-256")
    plain = PlainServer(DOMAIN)
    need = plain.step(b"\0user\0pencil")
    assert plain.password_checked(verify_plain(need.password, stored)) == Success("user", None)


def test_plain_without_initial_response():
    plain = PlainServer(DOMAIN)
    assert plain.step(None) == Challenge(b"")
    assert plain.step(b"\0juliet\0secret") == NeedPasswordCheck("juliet", "secret")


@pytest.mark.parametrize(
    "authzid, expected",
    [
        (b"juliet@example.org", NeedPasswordCheck("juliet", "secret")),
        (b"Juliet@EXAMPLE.org", NeedPasswordCheck("juliet", "secret")),
        (b"romeo@example.org", Failure("invalid-authzid")),
        (b"juliet@example.org/balcony", Failure("invalid-authzid")),
    ],
)
def test_plain_authzid(authzid, expected):
    assert PlainServer(DOMAIN).step(authzid + b"\0juliet\0secret") == expected


@pytest.mark.parametrize(
    "sent, condition",
    [
        (b"", "malformed-request"),
        (b"juliet\0secret", "malformed-request"),
        (b"\0\0secret", "malformed-request"),
        (b"\0juliet\0", "malformed-request"),
        (b"\0juliet\0sec\0ret", "malformed-request"),
        (b"\0jul\xffiet\0secret", "malformed-request"),
        (b"\0ju liet\0secret", "not-authorized"),
    ],
)
def test_plain_malformed(sent, condition):
    assert PlainServer(DOMAIN).step(sent).condition == condition


def test_plain_out_of_order():
    plain = PlainServer(DOMAIN)
    assert plain.password_checked(True).condition == "malformed-request"
    plain = PlainServer(DOMAIN)
    plain.step(b"\0juliet\0secret")
    assert plain.step(b"\0juliet\0secret").condition == "malformed-request"
    assert plain.password_checked(True).condition == "malformed-request"


# --- ANONYMOUS --------------------------------------------------------------------------------


@pytest.mark.parametrize("trace", [None, b"", b"sirhc@example.com", b"\xff"])
def test_anonymous(trace):
    anon = AnonymousServer("a1b2c3")
    assert anon.name == "ANONYMOUS"
    assert anon.step(trace) == Success("a1b2c3", None)
    assert anon.step(b"").condition == "malformed-request"


# --- advertising and choosing -----------------------------------------------------------------


def test_mechanism_names_full_order_over_tls_with_binding():
    assert mechanism_names(ALL, True, ["tls-server-end-point"]) == [
        "SCRAM-SHA-512-PLUS",
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-512",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "PLAIN",
        "ANONYMOUS",
    ]


def test_mechanism_names_filters():
    plain_tcp = ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "ANONYMOUS"]
    assert mechanism_names(ALL, False, ["tls-unique"]) == plain_tcp
    assert mechanism_names(ALL, True, [])[0] == "SCRAM-SHA-512"
    assert "PLAIN" in mechanism_names(ALL, True, [])
    assert mechanism_names(["PLAIN", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256"], True, ["x"]) == [
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256",
        "PLAIN",
    ]
    assert mechanism_names(["DIGEST-MD5"], True, ["x"]) == []


@pytest.mark.parametrize("name", ALL)
def test_make_mechanism_builds_every_advertised_name(name):
    mech = make_mechanism(
        name,
        domain=DOMAIN,
        nonce=SERVER_NONCE,
        channel_bindings=BINDINGS,
        plus_offered=True,
        anonymous_username="anon",
        fake_salt_secret=SECRET,
    )
    assert mech is not None and mech.name == name


@pytest.mark.parametrize("name", ["DIGEST-MD5", "SCRAM-SHA-384", "SCRAM-SHA-1-PLUS-PLUS", "SHA-1"])
def test_make_mechanism_unknown(name):
    kw = dict(channel_bindings={}, plus_offered=False, fake_salt_secret=b"")
    assert make_mechanism(name, domain=DOMAIN, nonce="n", anonymous_username="a", **kw) is None


# --- tls-server-end-point ---------------------------------------------------------------------


def _certificate(key, algorithm) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, algorithm)
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    "algorithm, digest", [(hashes.SHA256(), "sha256"), (hashes.SHA384(), "sha384")]
)
def test_tls_server_end_point(algorithm, digest):
    der = _certificate(ec.generate_private_key(ec.SECP256R1()), algorithm)
    assert tls_server_end_point(der) == hashlib.new(digest, der).digest()


def test_tls_server_end_point_uses_sha256_for_sha1_signatures():
    # cryptography no longer signs with SHA-1: relabel sha256WithRSAEncryption (…1.1.11) as
    # sha1WithRSAEncryption (…1.1.5); same length, and the signature is not checked here.
    der = _certificate(rsa.generate_private_key(65537, 2048), hashes.SHA256())
    oid = bytes.fromhex("06092a864886f70d01010b")
    assert der.count(oid) == 2
    der = der.replace(oid, bytes.fromhex("06092a864886f70d010105"))
    assert isinstance(x509.load_der_x509_certificate(der).signature_hash_algorithm, hashes.SHA1)
    assert tls_server_end_point(der) == hashlib.sha256(der).digest()


def test_tls_server_end_point_undefined_for_ed25519():
    with pytest.raises(ValueError):
        tls_server_end_point(_certificate(ed25519.Ed25519PrivateKey.generate(), None))


def test_scram_plus_with_a_real_certificate():
    der = _certificate(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    bindings = {"tls-server-end-point": tls_server_end_point(der)}
    cli = client("SHA-512", cb_type="tls-server-end-point", cb_data=hashlib.sha256(der).digest())
    srv = server("SHA-512", plus=True, cb=bindings, plus_offered=True)
    assert isinstance(exchange(srv, cli, creds("SHA-512")), Success)
