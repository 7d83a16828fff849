"""RFC 6121 presence-subscription state machine (§3, Appendix A) as two pure tables: what the
server does with a subscription stanza its user sends (outbound) or receives (inbound).

A `RosterItem` stores the state in parts (subscription, ask, pending_in); `state_of` names the
Appendix A.1 state and `item_for` builds the parts back. `OUTBOUND` and `INBOUND` are Appendix
A.2 and A.3 row by row; the pre-approval rules of §3.4 lie on top of them in two small tables
(`PREAPPROVABLE`, `PREAPPROVED_INBOUND`), so the Appendix A rows stay exactly as printed.

Decisions where the RFC leaves room:
- Roster pushes carry subscription, ask and approved only (§2.1.2); pending-in is not part of a
  roster item, so a change of pending-in alone pushes nothing.
- An inbound subscribe from a contact not in the roster is kept as a *hidden* record ("None +
  Pending In", no name, no groups): §3.1.3 keeps the request, but the contact is not added to
  the roster before the user approves, as in ejabberd. `visible(item)` is False for such a
  record, and roster results leave it out. When that record falls back to plain "None"
  (the request is withdrawn or denied), the outcome says `remove=True`: §3.3.3 drops the record,
  as there is no roster item to change. RosterItem has no field saying "the user added this
  contact", so a user-added item with no name and no groups that is "None + Pending In" looks
  hidden too (ejabberd hides every such item).
- A second subscribe while one is pending keeps the first stored request (§3.1.3 lets the server
  keep either the first or the last).
- `approved` is cleared once the contact has a 'from' subscription (the pre-approval has been
  used up) and when the user sends 'unsubscribed' (§3.4 cancels the pre-approval).
- "None + Pending Out/In" is the spelling used here; RFC 6121 prints "None + Pending Out+In", and
  `item_for` accepts both spellings.
- `send_presence` tells the host the presence §3.1.5/§3.4 ("available": the contact just got a
  'from' subscription, so send the user's current presence) and §3.2.2/§3.3.3 ("unavailable":
  'from' just ended) ask for, sent from each of the user's available resources to the contact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from storage.im import RosterItem

NONE = "None"
NONE_PENDING_OUT = "None + Pending Out"
NONE_PENDING_IN = "None + Pending In"
NONE_PENDING_OUT_IN = "None + Pending Out/In"
TO = "To"
TO_PENDING_IN = "To + Pending In"
FROM = "From"
FROM_PENDING_OUT = "From + Pending Out"
BOTH = "Both"

# Appendix A.1 state -> (subscription, ask, pending_in)
PARTS: dict[str, tuple[str, bool, bool]] = {
    NONE: ("none", False, False),
    NONE_PENDING_OUT: ("none", True, False),
    NONE_PENDING_IN: ("none", False, True),
    NONE_PENDING_OUT_IN: ("none", True, True),
    TO: ("to", False, False),
    TO_PENDING_IN: ("to", False, True),
    FROM: ("from", False, False),
    FROM_PENDING_OUT: ("from", True, False),
    BOTH: ("both", False, False),
}
STATES = tuple(PARTS)
KINDS = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")
_ALIASES = {"None + Pending Out+In": NONE_PENDING_OUT_IN}

SAME = "no state change"


class Row(NamedTuple):
    """One row of an Appendix A table. `send` is ROUTE? (A.2) or DELIVER? (A.3)."""

    new: str
    send: bool
    push: bool
    auto_reply: str | None = None


N = False  # the tables' "no"
Y = True  # the tables' "yes"

# Appendix A.2, stanzas the user sends to the contact: Row(new state, ROUTE?, push?)
OUTBOUND: dict[tuple[str, str], Row] = {
    # A.2.1 subscribe (§3.1.2)
    (NONE, "subscribe"): Row(NONE_PENDING_OUT, Y, Y),
    (NONE_PENDING_OUT, "subscribe"): Row(SAME, Y, N),
    (NONE_PENDING_IN, "subscribe"): Row(NONE_PENDING_OUT_IN, Y, Y),
    (NONE_PENDING_OUT_IN, "subscribe"): Row(SAME, Y, N),
    (TO, "subscribe"): Row(SAME, Y, N),
    (TO_PENDING_IN, "subscribe"): Row(SAME, Y, N),
    (FROM, "subscribe"): Row(FROM_PENDING_OUT, Y, Y),
    (FROM_PENDING_OUT, "subscribe"): Row(SAME, Y, N),
    (BOTH, "subscribe"): Row(SAME, Y, N),
    # A.2.2 unsubscribe (§3.3.2)
    (NONE, "unsubscribe"): Row(SAME, Y, N),
    (NONE_PENDING_OUT, "unsubscribe"): Row(NONE, Y, Y),
    (NONE_PENDING_IN, "unsubscribe"): Row(SAME, Y, N),
    (NONE_PENDING_OUT_IN, "unsubscribe"): Row(NONE_PENDING_IN, Y, Y),
    (TO, "unsubscribe"): Row(NONE, Y, Y),
    (TO_PENDING_IN, "unsubscribe"): Row(NONE_PENDING_IN, Y, Y),
    (FROM, "unsubscribe"): Row(SAME, Y, N),
    (FROM_PENDING_OUT, "unsubscribe"): Row(FROM, Y, Y),
    (BOTH, "unsubscribe"): Row(FROM, Y, Y),
    # A.2.3 subscribed (§3.1.5; the "no" rows None, None + Pending Out, To become §3.4)
    (NONE, "subscribed"): Row(SAME, N, N),
    (NONE_PENDING_OUT, "subscribed"): Row(SAME, N, N),
    (NONE_PENDING_IN, "subscribed"): Row(FROM, Y, Y),
    (NONE_PENDING_OUT_IN, "subscribed"): Row(FROM_PENDING_OUT, Y, Y),
    (TO, "subscribed"): Row(SAME, N, N),
    (TO_PENDING_IN, "subscribed"): Row(BOTH, Y, Y),
    (FROM, "subscribed"): Row(SAME, N, N),
    (FROM_PENDING_OUT, "subscribed"): Row(SAME, N, N),
    (BOTH, "subscribed"): Row(SAME, N, N),
    # A.2.4 unsubscribed (§3.2.2)
    (NONE, "unsubscribed"): Row(SAME, N, N),
    (NONE_PENDING_OUT, "unsubscribed"): Row(SAME, N, N),
    (NONE_PENDING_IN, "unsubscribed"): Row(NONE, Y, N),
    (NONE_PENDING_OUT_IN, "unsubscribed"): Row(NONE_PENDING_OUT, Y, N),
    (TO, "unsubscribed"): Row(SAME, N, N),
    (TO_PENDING_IN, "unsubscribed"): Row(TO, Y, N),
    (FROM, "unsubscribed"): Row(NONE, Y, Y),
    (FROM_PENDING_OUT, "unsubscribed"): Row(NONE_PENDING_OUT, Y, Y),
    (BOTH, "unsubscribed"): Row(TO, Y, Y),
}

# Appendix A.3, stanzas the contact sends to the user: Row(new state, DELIVER?, push?, auto-reply)
INBOUND: dict[tuple[str, str], Row] = {
    # A.3.1 subscribe (§3.1.3); "no *": the server auto-replies 'subscribed' (step 2)
    (NONE, "subscribe"): Row(NONE_PENDING_IN, Y, N),
    (NONE_PENDING_OUT, "subscribe"): Row(NONE_PENDING_OUT_IN, Y, N),
    (NONE_PENDING_IN, "subscribe"): Row(SAME, N, N),
    (NONE_PENDING_OUT_IN, "subscribe"): Row(SAME, N, N),
    (TO, "subscribe"): Row(TO_PENDING_IN, Y, N),
    (TO_PENDING_IN, "subscribe"): Row(SAME, N, N),
    (FROM, "subscribe"): Row(SAME, N, N, "subscribed"),
    (FROM_PENDING_OUT, "subscribe"): Row(SAME, N, N, "subscribed"),
    (BOTH, "subscribe"): Row(SAME, N, N, "subscribed"),
    # A.3.2 unsubscribe (§3.3.3)
    (NONE, "unsubscribe"): Row(SAME, N, N),
    (NONE_PENDING_OUT, "unsubscribe"): Row(SAME, N, N),
    (NONE_PENDING_IN, "unsubscribe"): Row(NONE, Y, N),
    (NONE_PENDING_OUT_IN, "unsubscribe"): Row(NONE_PENDING_OUT, Y, N),
    (TO, "unsubscribe"): Row(SAME, N, N),
    (TO_PENDING_IN, "unsubscribe"): Row(TO, Y, N),
    (FROM, "unsubscribe"): Row(NONE, Y, Y),
    (FROM_PENDING_OUT, "unsubscribe"): Row(NONE_PENDING_OUT, Y, Y),
    (BOTH, "unsubscribe"): Row(TO, Y, Y),
    # A.3.3 subscribed (§3.1.6): ignored unless we asked
    (NONE, "subscribed"): Row(SAME, N, N),
    (NONE_PENDING_OUT, "subscribed"): Row(TO, Y, Y),
    (NONE_PENDING_IN, "subscribed"): Row(SAME, N, N),
    (NONE_PENDING_OUT_IN, "subscribed"): Row(TO_PENDING_IN, Y, Y),
    (TO, "subscribed"): Row(SAME, N, N),
    (TO_PENDING_IN, "subscribed"): Row(SAME, N, N),
    (FROM, "subscribed"): Row(SAME, N, N),
    (FROM_PENDING_OUT, "subscribed"): Row(BOTH, Y, Y),
    (BOTH, "subscribed"): Row(SAME, N, N),
    # A.3.4 unsubscribed (§3.2.3)
    (NONE, "unsubscribed"): Row(SAME, N, N),
    (NONE_PENDING_OUT, "unsubscribed"): Row(NONE, Y, Y),
    (NONE_PENDING_IN, "unsubscribed"): Row(SAME, N, N),
    (NONE_PENDING_OUT_IN, "unsubscribed"): Row(NONE_PENDING_IN, Y, Y),
    (TO, "unsubscribed"): Row(NONE, Y, Y),
    (TO_PENDING_IN, "unsubscribed"): Row(NONE_PENDING_IN, Y, Y),
    (FROM, "unsubscribed"): Row(SAME, N, N),
    (FROM_PENDING_OUT, "unsubscribed"): Row(FROM, Y, Y),
    (BOTH, "unsubscribed"): Row(FROM, Y, Y),
}

# §3.4: an outbound 'subscribed' in these states (the contact has not asked) is a pre-approval:
# set approved, push, do not route. A contact not in the roster gets a "None" item.
PREAPPROVABLE = frozenset({NONE, NONE_PENDING_OUT, TO})
# §3.4: an inbound subscribe to a pre-approved item is answered by the server: auto-reply
# 'subscribed', nothing delivered, the contact gets 'from'.
PREAPPROVED_INBOUND: dict[str, str] = {NONE: FROM, NONE_PENDING_OUT: FROM_PENDING_OUT, TO: BOTH}

_SECTIONS = {
    ("out", "subscribe"): "A.2.1, §3.1.2",
    ("out", "unsubscribe"): "A.2.2, §3.3.2",
    ("out", "subscribed"): "A.2.3, §3.1.5",
    ("out", "unsubscribed"): "A.2.4, §3.2.2",
    ("in", "subscribe"): "A.3.1, §3.1.3",
    ("in", "unsubscribe"): "A.3.2, §3.3.3",
    ("in", "subscribed"): "A.3.3, §3.1.6",
    ("in", "unsubscribed"): "A.3.4, §3.2.3",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the server does with a subscription stanza the user sent. `item` is the item to
    store (None: no change); `remove` asks to delete the stored (hidden) record instead."""

    item: RosterItem | None
    route: bool
    push: bool
    note: str
    remove: bool = False
    send_presence: str | None = None  # "available" / "unavailable" to the contact, see above


@dataclass(frozen=True, slots=True)
class InboundOutcome:
    """What the server does with a subscription stanza the contact sent to the user. `hidden`:
    the stored item is a pending request only, not shown in the roster and never pushed."""

    item: RosterItem | None
    deliver: bool
    push: bool
    note: str
    auto_reply: str | None = None
    hidden: bool = False
    remove: bool = False
    send_presence: str | None = None


def state_of(item: RosterItem | None) -> str:
    """The Appendix A.1 name of the item's state. Combinations the RFC does not name are read
    as the nearest state: ask is ignored with 'to'/'both', pending-in with 'from'/'both'."""
    if item is None:
        return NONE
    sub = item.subscription
    ask = item.ask and sub in ("none", "from")
    pending_in = item.pending_in and sub in ("none", "to")
    for state, parts in PARTS.items():
        if parts == (sub, ask, pending_in):
            return state
    raise ValueError(f"unknown subscription {sub!r}")


def item_for(state: str, jid: str, base_item: RosterItem | None = None) -> RosterItem:
    """An item in `state`, keeping name, groups, approved and the stored request of base_item."""
    sub, ask, pending_in = PARTS[_ALIASES.get(state, state)]
    base = base_item if base_item is not None else RosterItem(jid=jid)
    return replace(
        base,
        subscription=sub,
        ask=ask,
        pending_in=pending_in,
        pending_in_stanza=base.pending_in_stanza if pending_in else None,
        approved=base.approved and sub in ("none", "to"),
    )


def visible(item: RosterItem) -> bool:
    """Whether the item belongs in roster results and pushes: False for a record that only
    holds a contact's pending request (see the module docstring)."""
    return not (
        state_of(item) == NONE_PENDING_IN
        and not item.approved
        and item.name is None
        and not item.groups
    )


def outbound(item: RosterItem | None, kind: str, contact: str) -> Outcome:
    """The user sent a presence of type `kind` to `contact`, whose roster item is `item`."""
    state, row = _row(OUTBOUND, item, kind)
    note = f"{_SECTIONS['out', kind]}: {state} -> {row.new}"
    if kind == "subscribed" and state in PREAPPROVABLE:
        if item is not None and item.approved:
            return Outcome(None, route=False, push=False, note=f"§3.4: {state}, already approved")
        base = item if item is not None else RosterItem(jid=contact)
        return Outcome(replace(base, approved=True), False, True, f"§3.4 pre-approval: {state}")
    new = _next(item, contact, state, row.new)
    push = row.push
    if kind == "unsubscribed" and item is not None and item.approved:
        new = replace(new if new is not None else item, approved=False)
        push, note = True, f"{note}; §3.4 pre-approval cancelled"
    remove = _drop(item, new)
    return Outcome(
        None if remove else new,
        route=row.send,
        push=push and not remove,
        note=note,
        remove=remove,
        send_presence=_presence(item, new),
    )


def inbound(
    item: RosterItem | None, kind: str, contact: str, stanza_xml: str | None
) -> InboundOutcome:
    """The contact `contact` sent the user a presence of type `kind` (serialised: stanza_xml)."""
    state, row = _row(INBOUND, item, kind)
    note = f"{_SECTIONS['in', kind]}: {state} -> {row.new}"
    if kind == "subscribe" and item is not None and item.approved:
        new_state = PREAPPROVED_INBOUND.get(state)
        if new_state is not None:
            new = replace(item_for(new_state, item.jid, item), approved=False)
            return InboundOutcome(
                new,
                deliver=False,
                push=True,
                note=f"§3.4 pre-approved: {state} -> {new_state}",
                auto_reply="subscribed",
                send_presence="available",
            )
    new = _next(item, contact, state, row.new)
    if new is not None and kind == "subscribe" and new.pending_in:
        new = replace(new, pending_in_stanza=stanza_xml)
    remove = _drop(item, new)
    hidden = new is not None and not visible(new)
    return InboundOutcome(
        None if remove else new,
        deliver=row.send,
        push=row.push and not remove and not hidden,
        note=note,
        auto_reply=row.auto_reply,
        hidden=hidden,
        remove=remove,
        send_presence=_presence(item, new),
    )


def _row(table: dict[tuple[str, str], Row], item: RosterItem | None, kind: str) -> tuple[str, Row]:
    if kind not in KINDS:
        raise ValueError(f"not a subscription stanza type: {kind!r}")
    state = state_of(item)
    return state, table[state, kind]


def _next(item: RosterItem | None, contact: str, state: str, new_state: str) -> RosterItem | None:
    """The item after the row; None when the row changes nothing."""
    if new_state == SAME or new_state == state:
        return None
    return item_for(new_state, contact, item)


def _drop(old: RosterItem | None, new: RosterItem | None) -> bool:
    """A hidden pending-request record that falls back to plain "None" has no reason to exist."""
    return (
        old is not None
        and new is not None
        and not visible(old)
        and state_of(new) == NONE
        and not new.approved
    )


def _has_from(item: RosterItem | None) -> bool:
    return item is not None and item.subscription in ("from", "both")


def _presence(old: RosterItem | None, new: RosterItem | None) -> str | None:
    if new is None or _has_from(old) == _has_from(new):
        return None
    return "available" if _has_from(new) else "unavailable"
