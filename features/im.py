"""The instant-messaging state each c2s session carries, and the settings features read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from fsm.core import replace


@dataclass(frozen=True, slots=True)
class IM:
    """Kept in the c2s data (`data.im`), replaced, never mutated."""

    interested: bool = False  # asked for the roster: gets roster pushes
    roster_loaded: bool = False
    pres_from: frozenset[str] = frozenset()  # contacts subscribed to us: they get our presence
    pres_to: frozenset[str] = frozenset()  # contacts we are subscribed to: we probe them
    directed: frozenset[str] = frozenset()  # who got directed available presence from us
    presence: etree._Element | None = None  # the last presence we broadcast
    held: tuple[etree._Element, ...] = ()  # presence sent before the roster was loaded
    pending_requests: tuple[str, ...] = ()  # subscription requests awaiting an answer (XML)


@dataclass(frozen=True, slots=True)
class Settings:
    """Limits and facts the IM features need, from the node's configuration."""

    max_roster_items: int = 1000
    max_roster_name: int = 1023  # bytes of a roster item's name, and of a group name
    max_offline_messages: int = 1000
    max_vcard_bytes: int = 65536
    max_private_bytes: int = 65536
    started: float = 0.0  # when the node started (XEP-0012 uptime)
    version: str = ""


def im(data: Any) -> IM:
    return data.im if data.im is not None else IM()


def with_im(data: Any, **changes: Any) -> Any:
    return replace(data, im=replace(im(data), **changes))
