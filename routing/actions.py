"""The routing actions: what a machine or a server-side feature asks the router to do. The router
carries them out (routing/router.py); fsm/core.py re-exports them beside the session actions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree


@dataclass(frozen=True, slots=True)
class Route:
    """Hand a stanza (with `from` already stamped) to the router."""

    stanza: etree._Element


@dataclass(frozen=True, slots=True)
class DeliverToUser:
    """Hand a copy of `stanza` to every session of the account `bare` (with 'to' set to each
    session's full JID, unless `keep_to`: a contact's stanza to the bare JID keeps its address,
    as Prosody delivers it): to those that asked for the roster when `interested_only`, to the
    available ones when `available_only`; never to `except_jid`."""

    bare: Any  # xmpp.jid.JID
    stanza: etree._Element
    interested_only: bool = False
    available_only: bool = False
    except_jid: Any = None
    keep_to: bool = False


@dataclass(frozen=True, slots=True)
class RoutePresencesOf:
    """Route the current presence of each available session of account `bare` to `to` (as
    unavailable when `unavailable`); when it has none, route `otherwise` if given."""

    bare: Any
    to: str
    unavailable: bool = False
    otherwise: etree._Element | None = None
    except_jid: Any = None


@dataclass(frozen=True, slots=True)
class Work:
    """Server-side work for the account `account` (a bare JID string): run `call(storage,
    *args)` on that account's lane, then carry out the actions it returns. Work for one
    account runs in order, and stanzas to the account wait behind work already started."""

    account: str
    call: Callable[..., list]
    args: tuple = ()


ROUTING_ACTIONS = (Route, DeliverToUser, RoutePresencesOf, Work)
