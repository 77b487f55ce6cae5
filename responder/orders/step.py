"""The order step: a question about a particular order, answered to its own customer only.

Runs in the pipeline after the signals (``understand.orders`` found "where is my order?", "cancel
my order", an order number …) and before drafting; with ``[orders] source = "none"`` it never
runs and routing hands order questions to the owner as before. In order:

1. **Limit.** A sender with ``max_failed_checks_per_hour`` wrong guesses in the last hour gets no
   more lookups; the owner is told (``responder.pipeline`` raises the alert).
2. **Find.** The order numbers the customer typed (this message and their earlier ones in the
   thread) are looked up by number; with none, the orders placed with the sender's own email or
   phone (or another of their confirmed identities) are.
3. **Prove.** An order is discussed only with its customer (``verify.proof``): the reply goes to
   the order's email or phone, or the customer typed its number *and* the email it was placed
   with. Anything else gets the same request for both details, whether the number exists or
   not, so no reply ever tells a guesser which part was wrong; each miss is a row that counts
   toward the limit.
4. **Answer or hand over.** Status questions are answered from the record
   (``answer.status_reply``). The bot never carries out a request itself: a cancellation, a
   change, a wrong or missing item, a payment problem, a delivered parcel that didn't arrive, a
   late order and a refund the record doesn't show go to the owner with a one-line summary of
   the order and a link to it in the shop's admin, while the customer gets the holding reply.

A failing source is an outage, never a guess: the draft waits with the reason.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from sqlmodel import Session, col, delete, select

from responder.core.clock import utcnow
from responder.core.models import Alert, OrderCheck
from responder.core.settings import Settings
from responder.core.templating import render
from responder.decide.limits import tell_owner
from responder.orders.answer import (
    ShopTimes,
    amount,
    day_in_words,
    late,
    owner_summary,
    shop_times,
    state_of,
    status_reply,
)
from responder.orders.base import Order, OrderSourceError
from responder.orders.lookup import Lookup, Pending
from responder.orders.verify import (
    STATUS_ASK,
    emails_in,
    intent_of,
    not_received,
    numbers_in,
    proof,
    without_details,
)
from responder.understand import customers
from responder.understand.conversation import thread_history

log = logging.getLogger("deskhand.orders")
STATUS = ("where the order is", "an order number", "a refund for an order")
RECENT_DAYS = 60
MAX_ORDERS = 3


@dataclass
class OrderOutcome:
    reply: str = ""                                      # the answer, or the request for details
    holds: list[str] = field(default_factory=list)       # the owner answers (handoff), with why
    notes: list[str] = field(default_factory=list)       # order summaries for the owner
    orders: list[Order] = field(default_factory=list)    # proved to be the sender's
    limited: bool = False
    unavailable: str = ""                                # the source's failure, for the outage alert

    facts_text: str = ""                                 # the records, for the claim guard (``record_text``)


def record_text(o: Order, *, tz: tzinfo, today: date) -> str:
    """An order as the claim guard reads it: every number, date (in words, as replies write them)
    and link a reply about it may state."""
    when = lambda moment: day_in_words(moment, tz, today)  # noqa: E731
    parts = [f"order #{o.number}", amount(o.total, o.currency), f"placed {when(o.created_at)}",
             f"cancelled {when(o.cancelled_at)}" if o.cancelled_at else "",
             *(f"{i.quantity} {i.name}" for i in o.line_items)]
    for f in o.fulfillments:
        parts += [f"shipped {when(f.shipped_at)} with {f.carrier}", f"tracking number {f.tracking_number}",
                  f.tracking_url, f"estimated delivery {when(f.estimated_delivery_at)}",
                  f"delivered {when(f.delivered_at)}"]
    parts += [f"refund of {amount(r.amount, o.currency)} on {when(r.created_at)}" for r in o.refunds]
    return "; ".join(p for p in parts if p and not p.endswith((" ", "with ")))


def checks_recently(session: Session, sender: str, now: datetime) -> tuple[int, int]:
    """Wrong guesses, and messages that looked an order up, from this sender in the last hour."""
    rows = session.exec(select(OrderCheck.outcome, OrderCheck.message_id).where(
        OrderCheck.sender == sender, col(OrderCheck.at) >= now - timedelta(hours=1))).all()
    return (sum(r.outcome == "mismatch" for r in rows),
            len({r.message_id for r in rows if r.outcome in ("verified", "asked", "mismatch")}))


def awaiting_details(session: Session, sender: str, now: datetime) -> str | None:
    """The intent of the request for details this sender was sent in the last day, if it is the
    latest check: their next message ("1043, sam@example.com") carries on with it."""
    last = session.exec(select(OrderCheck).where(OrderCheck.sender == sender, col(OrderCheck.at) >= now - timedelta(days=1))
                        .order_by(col(OrderCheck.id).desc()).limit(1)).first()
    return last.intent or STATUS[0] if last is not None and last.outcome in ("asked", "mismatch") else None


def handle(session: Session, lookup: Lookup, *, message_id: int | None, sender: str,
           identities: list[tuple[str, str]], text: str, earlier: list[str], intent: str, times: ShopTimes,
           tz: tzinfo, now: datetime, owner_name: str, max_failed: int, max_lookups: int = 20,
           late_after_days: int = 0) -> OrderOutcome:
    out = OrderOutcome()

    def record(outcome: str, number: str = "", detail: str = "") -> None:
        session.add(OrderCheck(message_id=message_id, sender=sender, order_number=number[:64], intent=intent[:40],
                               outcome=outcome, detail=detail, at=now))

    failed, asked = checks_recently(session, sender, now)
    if failed >= max_failed or asked >= max_lookups:
        out.limited = True
        out.holds.append(f"{failed} wrong order details from this sender in the last hour: order lookups "
                         "for them are paused" if failed >= max_failed else
                         f"{asked} order lookups for this sender in the last hour: paused")
        record("limited")
        return out
    words = "\n".join([*earlier, text])
    # A bare order number is a status question only when they ask where it stands ("order #1043,
    # wrong scent", "can I purchase 100 candles?" are not): held before any lookup or guess is
    # counted. With only details, what they asked before counts.
    if intent == "an order number" and not STATUS_ASK.search(without_details(text) or words):
        out.holds.append("the customer names an order but doesn't ask where it stands: the owner reads what they want")
        return out
    numbers, typed = numbers_in(text) or numbers_in(words), emails_in(words)
    try:
        if numbers:
            found = [o for n in numbers[:MAX_ORDERS] for o in lookup.by_number(n)]
        else:
            found = []
            for kind, value in identities:
                found += lookup.by_contact(email=value) if kind == "email" else lookup.by_contact(phone=value)
    except OrderSourceError as exc:
        out.unavailable = str(exc)
        out.holds.append(f"the order source couldn't answer: {exc}")
        record("unavailable", ",".join(numbers), str(exc)[:500])
        return out
    mine, seen = [], set()
    for order in found:
        if order.number not in seen and (how := proof(order, identities=identities, typed_emails=typed)):
            seen.add(order.number)
            mine.append(order)
            record("verified", order.number, how)
    if not mine:
        guessed = bool(numbers)  # a number that isn't the sender's, or doesn't exist: the same miss
        record("mismatch" if guessed else "asked", ",".join(numbers),
               "the order number and email don't match an order" if guessed else "no order for this sender")
        if intent in STATUS:
            out.reply = render("replies/order_ask.txt.j2", again=guessed and bool(typed)).strip()
        else:
            out.holds.append(f"{intent}: no order could be matched to this sender"
                             + (f" (they mentioned #{', #'.join(numbers)})" if numbers else ""))
        return out
    out.orders = pick(mine, numbers, now)
    out.notes = [owner_summary(o, now=now, tz=tz) for o in out.orders]
    today = now.astimezone(tz).date()
    out.facts_text = "\n".join(record_text(o, tz=tz, today=today) for o in out.orders)
    if intent not in STATUS:
        out.holds.append(f"{intent}: the bot doesn't act on orders, the owner decides")
        return out
    out.holds += hold_reasons(out.orders, intent=intent, text=text, times=times, today=today,
                              late_after_days=late_after_days)
    if not out.holds:
        out.reply = status_reply(out.orders, times, tz=tz, today=today, owner_name=owner_name)
    return out


def pick(orders: list[Order], numbers: list[str], now: datetime) -> list[Order]:
    """The orders to talk about: those named; else the open ones of the last 60 days; else the newest."""
    if numbers:
        return orders[:MAX_ORDERS]
    newest = sorted(orders, key=lambda o: o.created_at or now, reverse=True)
    open_ = [o for o in newest if state_of(o) in ("unfulfilled", "partial", "shipped")
             and (o.created_at is None or o.created_at >= now - timedelta(days=RECENT_DAYS))]
    return open_[:MAX_ORDERS] or newest[:1]


def hold_reasons(orders: list[Order], *, intent: str, text: str, times: ShopTimes, today: date,
                 late_after_days: int) -> list[str]:
    reasons = []
    for order in orders:
        state = state_of(order)
        if why := late(order, times, today=today, late_after_days=late_after_days):
            reasons.append(f"order #{order.number} is late: {why}")
        elif state == "delivered" and not_received(text):
            reasons.append(f"order #{order.number} shows as delivered, but the customer says it hasn't arrived")
        elif intent == "a refund for an order" and not order.refunds:
            reasons.append(f"the customer asks about a refund, and order #{order.number} shows none")
    return reasons


def run(work, session: Session, settings: Settings, lookup: Lookup | None, policies_text: str) -> OrderOutcome | None:
    """The step as the pipeline calls it, on its ``Work`` record; None when it doesn't apply."""
    signals = work.signals
    if lookup is None or work.customer is None or signals is None or not work.sender:
        return None
    now = utcnow()
    if signals.about_order:
        intent = intent_of(signals.about_order, work.text)
    elif (numbers_in(work.text) or emails_in(work.text)) and (waiting := awaiting_details(session, work.sender, now)):
        intent = waiting  # "1043, sam@example.com" after we asked for them
    else:
        return None
    identities = [(i.kind, i.value) for i in customers.identities(session, work.customer.id)]
    earlier = [m.new_text or m.text for m in thread_history(session=session, thread_id=work.thread.id,
                                                             before_id=work.message.id) if m.direction == "in"][-10:]
    was_down = lookup.down
    try:
        outcome = handle(session, lookup, message_id=work.message.id, sender=work.sender,
                         identities=identities or [("email" if "@" in work.sender else "phone", work.sender)],
                         text=work.text, earlier=earlier, intent=intent, times=shop_times(policies_text),
                         tz=settings.tz, now=now, owner_name=settings.store.owner_name,
                         max_failed=settings.orders.max_failed_checks_per_hour,
                         max_lookups=settings.orders.max_lookups_per_hour,
                         late_after_days=settings.orders.late_after_days)
    except Pending:
        raise
    except Exception as exc:  # fail closed: a record the step can't read is the owner's to answer
        log.exception("the order step failed on message %s", work.message.id)
        return OrderOutcome(holds=[f"the order step failed ({type(exc).__name__}): the owner answers"])
    day = now.astimezone(settings.tz).date().isoformat()
    if outcome.unavailable:
        tell_owner(session, settings, kind="orders", key=f"down:{day}", subject="Order lookups are failing",
                   body=f"Deskhand couldn't reach your order data, so order questions wait for you:\n\n"
                        f"{outcome.unavailable}\n\nYou're told once per outage; answered order questions "
                        f"start again by themselves when it's back.")
    elif was_down and not lookup.down:  # back: the next outage is told again
        session.exec(delete(Alert).where(Alert.kind == "orders", col(Alert.key).startswith("down:")))
    if outcome.limited:
        tell_owner(session, settings, kind="orders", key=f"limited:{work.sender}:{day}"[:64],
                   subject=f"Order lookups paused for {work.sender}",
                   body=f"{work.sender} reached the hourly limit on order lookups ({outcome.holds[0]}). "
                        "Wrong order details again and again is how guessing looks. Deskhand stopped looking "
                        "up orders for them for now; their messages wait for you in the queue.")
    return outcome
