"""JIDs per RFC 7622: splitting, PRECIS normalisation, limits and the JID value."""

import pytest

from xmpp.jid import JID, JIDMalformed, normalize_username


@pytest.mark.parametrize(
    ("text", "local", "domain", "resource"),
    [
        ("Juliet@Example.COM/Balcony", "juliet", "example.com", "Balcony"),
        ("juliet@example.com", "juliet", "example.com", None),
        ("example.com", None, "example.com", None),
        ("example.com/foo", None, "example.com", "foo"),
        ("example.com.", None, "example.com", None),  # one trailing dot stripped
        # RFC 7622 §3.5 examples of valid JIDs
        ("juliet@example.com/foo", "juliet", "example.com", "foo"),
        ("juliet@example.com/foo bar", "juliet", "example.com", "foo bar"),
        ("juliet@example.com/foo@bar", "juliet", "example.com", "foo@bar"),
        ("foo\\20bar@example.com", "foo\\20bar", "example.com", None),
        ("fußball@example.com", "fußball", "example.com", None),
        ("π@example.com", "π", "example.com", None),
        ("ΣΠ@example.com/foo", "σπ", "example.com", "foo"),
        ("σπ@example.com/foo", "σπ", "example.com", "foo"),
        ("ς@example.com/foo", "ς", "example.com", "foo"),
        ("king@example.com/♚", "king", "example.com", "♚"),
        ("example.com/a/b", None, "example.com", "a/b"),
        ("[2001:DB8::1]", None, "[2001:db8::1]", None),
        ("user@192.0.2.1/r", "user", "192.0.2.1", "r"),
        ("user@ÉXAMPLE.com", "user", "éxample.com", None),
        ("user@例子。测试", "user", "例子.测试", None),
        ("user@conference_1.example.com", "user", "conference_1.example.com", None),
    ],
)
def test_parse_normalises(text, local, domain, resource):
    jid = JID.parse(text)
    assert (jid.local, jid.domain, jid.resource) == (local, domain, resource)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a@b@c",  # the domain would be 'b@c'
        '"juliet"@example.com',
        "foo bar@example.com",  # space in localpart
        "henry\u2163@example.com",  # compatibility character in localpart
        "♚@example.com",  # symbol in localpart
        "juliet@",
        "@example.com",
        "juliet@example.com/",
        "example.com/",
        "/foo",
        "juliet@exa mple.com",
        "juliet@exa<mple.com",
        "juliet@example..com",
        "juliet@.",
        "juliet@-example.com",
        "juliet@[not-an-ip]",
        "juliet@example.com/a\u0007b",  # control character in resource
        "a" * 1024 + "@example.com",
        "juliet@" + "a" * 64 + ".com",
        "juliet@example.com/" + "é" * 512,  # 1024 bytes
    ],
)
def test_malformed(text):
    with pytest.raises(JIDMalformed):
        JID.parse(text)


def test_malformed_is_value_error_with_condition():
    with pytest.raises(ValueError) as info:
        JID.parse("a@b@c")
    assert info.value.condition == "jid-malformed"


def test_part_limits_are_bytes():
    assert JID.parse("a" * 1023 + "@example.com").local == "a" * 1023
    assert JID.parse("x@example.com/" + "é" * 511 + "a").resource.endswith("a")


def test_value_semantics():
    full = JID.parse("Juliet@Example.com/Balcony")
    assert full == JID("juliet", "example.com", "Balcony")
    assert hash(full) == hash(JID("juliet", "example.com", "Balcony"))
    assert {full, JID.parse("juliet@example.com/Balcony")} == {full}
    assert full.bare == JID("juliet", "example.com")
    assert full.bare.is_bare and not full.is_bare
    assert full.bare.bare == full.bare
    assert str(full) == "juliet@example.com/Balcony"
    assert str(full.bare) == "juliet@example.com"
    assert str(JID.parse("Example.com/x")) == "example.com/x"
    with pytest.raises(AttributeError):
        full.local = "romeo"


def test_resource_is_case_sensitive():
    assert JID.parse("a@b/Res") != JID.parse("a@b/res")


def test_with_resource_normalises():
    jid = JID.parse("juliet@example.com")
    assert jid.with_resource("Balcony") == JID("juliet", "example.com", "Balcony")
    assert JID.parse("a@b/x").with_resource("y").resource == "y"
    with pytest.raises(JIDMalformed):
        jid.with_resource("")
    with pytest.raises(JIDMalformed):
        jid.with_resource("a\u0000b")


def test_parse_is_cached():
    assert JID.parse("romeo@example.net/orchard") is JID.parse("romeo@example.net/orchard")


def test_normalize_username():
    assert normalize_username("Juliet") == "juliet"
    assert normalize_username("ΣΑΣ") == "σας"
    for bad in ("", "a b", "a@b", "a/b", "a:b", "\u2163"):
        with pytest.raises(JIDMalformed):
            normalize_username(bad)
