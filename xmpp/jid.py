"""JIDs (RFC 7622): parsing, PRECIS normalisation and the frozen, hashable JID value."""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from precis_i18n import get_profile

_USERNAME = get_profile("UsernameCaseMapped")
_OPAQUE = get_profile("OpaqueString")

MAX_PART_BYTES = 1023  # RFC 7622 §3.2-§3.4, per part, UTF-8
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")  # RFC 7622 §3.3.1
# UTS-46 maps these ideographic / full-width full stops to '.'.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_ASCII_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class JIDMalformed(ValueError):
    """Not a valid JID; answered with the stanza error condition `jid-malformed`."""

    condition = "jid-malformed"


@dataclass(frozen=True, slots=True)
class JID:
    """A normalised JID. Build one with `JID.parse`; the constructor does not validate."""

    local: str | None
    domain: str
    resource: str | None = None

    @classmethod
    def parse(cls, text: str) -> JID:
        """Parse and normalise `text`; raises JIDMalformed. Results are cached."""
        return _parse(text)

    @property
    def bare(self) -> JID:
        return self if self.resource is None else JID(self.local, self.domain)

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    def with_resource(self, resource: str) -> JID:
        """This JID with `resource` (normalised with OpaqueString); raises JIDMalformed."""
        return JID(self.local, self.domain, _resourcepart(resource))

    def __str__(self) -> str:
        text = self.domain if self.local is None else f"{self.local}@{self.domain}"
        return text if self.resource is None else f"{text}/{self.resource}"


def normalize_username(name: str) -> str:
    """A username as a JID localpart (PRECIS UsernameCaseMapped); raises JIDMalformed."""
    return _localpart(name)


@lru_cache(maxsize=16384)
def _parse(text: str) -> JID:
    # RFC 7622 §3.1: the resource is everything after the first '/', the localpart everything
    # before the first '@' of what remains.
    if len(text) > 3 * (MAX_PART_BYTES + 1):
        raise JIDMalformed("JID too long")
    rest, slash, resource = text.partition("/")
    local, at, domain = rest.partition("@")
    if not at:
        local, domain = "", rest
    return JID(
        _localpart(local) if at else None,
        _domainpart(domain),
        _resourcepart(resource) if slash else None,
    )


def _localpart(local: str) -> str:
    try:
        local = _USERNAME.enforce(local)
    except UnicodeError as exc:
        raise JIDMalformed(f"bad localpart: {exc.reason}") from None
    if not _LOCAL_FORBIDDEN.isdisjoint(local):
        raise JIDMalformed("localpart contains a forbidden character")
    _check_length(local, "localpart")
    return local


def _resourcepart(resource: str) -> str:
    try:
        resource = _OPAQUE.enforce(resource)
    except UnicodeError as exc:
        raise JIDMalformed(f"bad resourcepart: {exc.reason}") from None
    _check_length(resource, "resourcepart")
    return resource


def _domainpart(domain: str) -> str:
    domain = domain.translate(_DOTS)
    if domain.endswith("."):
        domain = domain[:-1]  # RFC 7622 §3.2: one trailing dot is stripped
    if not domain:
        raise JIDMalformed("empty domainpart")
    if domain.startswith("[") and domain.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(domain[1:-1]).compressed}]"
        except ValueError:
            raise JIDMalformed("bad IPv6 literal") from None
    domain = unicodedata.normalize("NFC", unicodedata.normalize("NFKC", domain).lower())
    _check_length(domain, "domainpart")
    for label in domain.split("."):
        _check_label(label)
    return domain


def _check_label(label: str) -> None:
    # Not full IDNA2008: enough to refuse what cannot be a DNS name (empty or long labels,
    # spaces, punctuation, controls); non-ASCII labels must also survive IDNA's ToASCII.
    if not label or label.startswith("-") or label.endswith("-"):
        raise JIDMalformed("bad label in domainpart")
    if label.isascii():
        if len(label) > 63 or not _ASCII_OK.issuperset(label):
            raise JIDMalformed("bad label in domainpart")
        return
    for ch in label:
        if ch.isascii() and ch not in _ASCII_OK:
            raise JIDMalformed("bad label in domainpart")
        if unicodedata.category(ch)[0] in "CZ":  # controls, unassigned, spaces, separators
            raise JIDMalformed("bad label in domainpart")
    try:
        label.encode("idna")
    except UnicodeError:
        raise JIDMalformed("bad internationalised label in domainpart") from None


def _check_length(part: str, what: str) -> None:
    if len(part) > MAX_PART_BYTES // 4 and len(part.encode()) > MAX_PART_BYTES:
        raise JIDMalformed(f"{what} longer than {MAX_PART_BYTES} bytes")
