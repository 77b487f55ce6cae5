"""Routing: an ordered table of checks decides where a processed message goes.

Runs last in the pipeline, after drafting. Each rule looks at the facts gathered so far and
returns a plain-words reason or ``None`` (Mailman's rules and chain). The first rule that hits
decides the route; every rule that hit is kept as a reason on the draft, so the owner reads
*why* ("automated mail: Auto-Submitted: auto-replied", "4 automatic replies in this thread
today (cap 4)"). A message no rule holds back is sent automatically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from responder.core.models import Route
from responder.draft.base import DraftResult
from responder.understand.signals import (  # one definition of "asking for a person"
    HUMAN_REQUEST,
    Signals,
)


@dataclass
class RouteFacts:
    channel: str
    text: str
    automated: str | None = None            # reason from the RFC 3834 checks
    draft: DraftResult | None = None
    signals: Signals | None = None          # when computed
    thread_auto_today: int = 0
    sender_auto_today: int = 0
    thread_cap: int = 4
    sender_cap: int = 8
    auto_send_enabled: bool = True
    threshold: float = 0.75
    customer_turns: int = 1       # the customer's messages in this thread, this one included
    max_turns: int = 5
    check_failures: list[str] = field(default_factory=list)  # guard and tone, in plain words
    media: int = 0                # photos/files on a text (MMS, WhatsApp): the drafter can't see them
    limits: list[str] = field(default_factory=list)  # LLM budget spent, hourly cap, loop breaker
    unread: list[str] = field(default_factory=list)  # parts of the mail the parser had to skip
    unchecked: list[str] = field(default_factory=list)  # checks that raised: the draft waits (fail closed)
    order_step: bool = False      # the order step looked this up (responder.orders): it says what holds it
    order_reply: bool = False     # ... and answered from the order's own record, or asked for the details
    order_holds: list[str] = field(default_factory=list)  # what about the order only the owner may do


@dataclass
class Decision:
    route: str
    reasons: list[str] = field(default_factory=list)


Rule = Callable[[RouteFacts], "str | None"]


def is_automated(f: RouteFacts) -> str | None:
    return f"automated mail: {f.automated}" if f.automated else None


def could_not_check(f: RouteFacts) -> str | None:
    """A check that raised decided nothing: hold the draft rather than trust the silence."""
    failed = [*f.unchecked, *([f.signals.failed] if f.signals is not None and f.signals.failed else [])]
    return "; ".join(failed) if failed else None


def is_empty(f: RouteFacts) -> str | None:
    return None if f.text.strip() else "the message has no text to answer"


def wants_human(f: RouteFacts) -> str | None:
    if f.signals is not None and f.signals.wants_human:
        return f"the customer asked for a person ({f.signals.wants_human})"
    return "the customer asked for a person" if HUMAN_REQUEST.search(f.text) else None


def needs_no_reply(f: RouteFacts) -> str | None:
    s = f.signals
    if s is not None and (s.acknowledgement or (s.emoji_only and not s.empty)):
        return "an acknowledgement: no reply needed" if s.acknowledgement else "emoji only: no reply needed"
    return None


def is_frustrated(f: RouteFacts) -> str | None:
    s = f.signals
    if s is not None and s.is_frustrated:
        return "the customer is frustrated: " + "; ".join(s.frustration_reasons)
    return None


def is_sensitive(f: RouteFacts) -> str | None:
    s = f.signals
    return "a topic for the owner: " + "; ".join(s.sensitive) if s is not None and s.sensitive else None


def order_needs_owner(f: RouteFacts) -> str | None:
    """A request the bot must not carry out (cancel, change, refund, a wrong item), a late or lost
    parcel, an order it couldn't match to the sender, or an order source that failed."""
    return "; ".join(f.order_holds) if f.order_holds else None


def about_an_order(f: RouteFacts) -> str | None:
    """Only the order's own data can answer it; unless the order step answered from it, the owner does."""
    s = f.signals
    if s is None or not s.about_order or f.order_step:
        return None
    return f"{s.about_order}: only the order's data can answer this"


def too_long_unresolved(f: RouteFacts) -> str | None:
    if f.customer_turns > f.max_turns:
        return f"{f.customer_turns} customer messages in this thread without resolution"
    return None


def is_injection(f: RouteFacts) -> str | None:
    s = f.signals
    return f"possible {s.injection}" if s is not None and s.injection else None


def unsupported_language(f: RouteFacts) -> str | None:
    s = f.signals
    if s is not None and not s.language_supported:
        return f"written in a language the shop doesn't serve ({s.language})"
    return None


def is_gibberish(f: RouteFacts) -> str | None:
    s = f.signals
    return "the message looks like gibberish" if s is not None and s.gibberish else None


def thread_cap_reached(f: RouteFacts) -> str | None:
    if f.thread_auto_today >= f.thread_cap:
        return f"{f.thread_auto_today} automatic replies in this thread today (cap {f.thread_cap})"
    return None


def sender_cap_reached(f: RouteFacts) -> str | None:
    if f.sender_auto_today >= f.sender_cap:
        return f"{f.sender_auto_today} automatic replies to this sender today (cap {f.sender_cap})"
    return None


def read_in_part(f: RouteFacts) -> str | None:
    return "the message could only be read in part: " + "; ".join(f.unread) if f.unread else None


def limit_reached(f: RouteFacts) -> str | None:
    return "; ".join(f.limits) if f.limits else None


def no_draft(f: RouteFacts) -> str | None:
    if f.draft is None or not f.draft.reply.strip():
        why = "; ".join(f.draft.reasons) if f.draft and f.draft.reasons else "no answer drafted"
        return f"no answer from the knowledge ({why})"
    return None


def low_confidence(f: RouteFacts) -> str | None:
    confidence = f.draft.confidence if f.draft else None
    if confidence is None:
        return "confidence unknown"
    if confidence < f.threshold:
        shown = f"{confidence:.2f}"
        if shown == f"{f.threshold:.2f}":  # 0.749 against 0.75: never "0.75 is below 0.75"
            shown = f"{confidence:.3f}"
        return f"confidence {shown} is below the auto-send threshold {f.threshold:.2f}"
    return None


def failed_checks(f: RouteFacts) -> str | None:
    return "; ".join(f.check_failures) if f.check_failures else None


def auto_send_off(f: RouteFacts) -> str | None:
    return None if f.auto_send_enabled else f"automatic sending is off for {f.channel}"


# (rule, route when it hits). Order matters: the first hit decides.
def has_media(f: RouteFacts) -> str | None:
    if f.media:
        return f"{f.media} photo(s) or file(s) the bot can't see: please look"
    return None


RULES: list[tuple[Rule, str]] = [
    (is_automated, Route.IGNORE),
    (could_not_check, Route.REVIEW),
    (wants_human, Route.HANDOFF),
    (is_frustrated, Route.HANDOFF),
    (is_sensitive, Route.HANDOFF),
    (order_needs_owner, Route.HANDOFF),
    (about_an_order, Route.HANDOFF),
    (too_long_unresolved, Route.HANDOFF),
    (needs_no_reply, Route.IGNORE),
    (is_empty, Route.REVIEW),
    (is_injection, Route.REVIEW),
    (unsupported_language, Route.REVIEW),
    (is_gibberish, Route.REVIEW),
    (read_in_part, Route.REVIEW),
    (has_media, Route.REVIEW),
    (limit_reached, Route.REVIEW),
    (thread_cap_reached, Route.REVIEW),
    (sender_cap_reached, Route.REVIEW),
    (no_draft, Route.REVIEW),
    (low_confidence, Route.REVIEW),
    (failed_checks, Route.REVIEW),
    (auto_send_off, Route.REVIEW),
]


def decide(facts: RouteFacts) -> Decision:
    """The route and every reason that held the message back (the first decides)."""
    hits = [(route, reason) for rule, route in RULES if (reason := rule(facts))]
    if not hits:
        return Decision(Route.AUTO)
    if hits[0][0] == Route.IGNORE:
        return Decision(hits[0][0], [hits[0][1]])
    return Decision(hits[0][0], [reason for _, reason in hits])
