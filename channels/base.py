"""The channel interface (after Chatwoot's ``SendOnChannelService``): one template method, ``send``.

Runs in the send job (``responder.ops.sending``), once per claimed outbox row. ``Channel.send``
is the same for every channel: it runs the shared rules over the row's ``SendFacts`` (a table
of small rules, Mailman's chain: each answers nothing, or a verdict with a plain-words reason),
applies what they change, then calls the channel's ``deliver`` — the only thing a channel
implements (SMTP, Twilio). The rules:

1. ``refuse_opted_out``: the number texted STOP -> never sent, whoever wrote the text.
2. ``keep_whatsapp_window``: WhatsApp allows free text only within 24 hours of the customer's
   last message (Twilio error 63016 otherwise) -> the approved template ``[twilio]
   whatsapp_template_sid`` instead, or not sent and the draft back to the owner.
3. ``keep_daily_caps``: an automatic reply or holding note when this thread or this customer
   already got ``max_auto_replies_per_thread_per_day`` / ``_per_sender_per_day`` automatic
   messages in the last 24 hours -> not sent, the draft to the owner. Routing checks the same caps
   when it queues the reply; this catches what another process sent in between.
4. ``wait_for_new_words``: an approved reply when the customer wrote again after the owner
   approved it -> not sent, the draft back to the owner (it may no longer fit).
5. ``fit_sms_segments``: at most ``[tone] sms_max_segments`` segments (GSM-7 vs UCS-2) -> an
   automatic text is cut at a sentence boundary when what is kept still says something, else
   held; the owner's own approved words are never cut: the draft goes back to them.

A refusal raises ``Refused`` (a ``PermanentError``: the row fails with the reason; with
``to_owner`` the draft waits for the owner again). ``deliver`` returns a ``Receipt`` with the
provider's id, or raises ``TransientError`` (try again later), ``PermanentError`` (never) or
``UnknownOutcome`` (handed over, answer lost: maybe delivered, so never retried). The facts are
gathered from the database by the send job; nothing here touches it.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from responder.core.errors import (
    DeliveryError,
    PermanentError,
    TransientError,
    UnknownOutcome,
)
from responder.core.models import CUSTOMER_KINDS, OutboxKind
from responder.core.text import sms_segments, split_sentences

WHATSAPP_WINDOW = timedelta(hours=24)  # WhatsApp's customer-service window (Twilio error 63016)
OPTED_OUT = "the customer opted out (STOP): nothing is sent to this number"
OUTSIDE_WINDOW = "outside WhatsApp's 24-hour window"
# A dropped sentence that starts like this qualifies what came before: cutting it is not safe.
CAVEATS = ("but", "however", "except", "unless", "although", "though", "note", "please note", "only",
           "that said", "otherwise", "important", "warning", "just so you know", "keep in mind")


@dataclass(frozen=True)
class SendFacts:
    """What the rules read, gathered by the send job in the transaction that claimed the row."""
    channel: str
    kind: str
    automatic: bool
    body: str
    opted_out: bool = False
    last_inbound_at: datetime | None = None  # the customer's last WhatsApp message to us
    now: datetime | None = None
    max_segments: int = 2
    template_sid: str = ""            # [twilio] whatsapp_template_sid
    templated: bool = False           # the row already asks for the template
    unreadable: str = ""              # why the facts could not be read: the row is refused
    thread_sent_today: int = 0        # automatic customer messages gone out to this thread in 24 h
    sender_sent_today: int = 0        # ... and to this recipient
    thread_cap: int = 0               # [email] max_auto_replies_per_thread_per_day (0: no cap)
    sender_cap: int = 0               # [email] max_auto_replies_per_sender_per_day (0: no cap)
    wrote_since: int = 0              # customer messages in the thread since the row was queued
    present: bool = False             # chat: the visitor's panel asked for news in the last minute
    visitor_email: str = ""           # chat: the address the visitor left for answers by mail


@dataclass(frozen=True)
class Outbound:
    """What the outbox hands a channel: everything needed to deliver, nothing to decide."""
    outbox_id: int
    recipient: str
    subject: str
    body_text: str
    message_id: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    automatic: bool = True
    body_html: str | None = None  # else the channel builds HTML from body_text
    # feedback: {"up": url, "down": url}; images: [{"cid", "content_type", "data" (base64)}];
    # auto_generated: True for mail to the owner (RFC 3834 "auto-generated", not a reply);
    # template: {"content_sid"} for a WhatsApp template; original_text/changed: what a rule changed
    extra: dict = field(default_factory=dict)
    channel: str = "email"
    kind: str = OutboxKind.REPLY
    facts: SendFacts | None = None  # None: no rule applies (a test's hand-made outbound)


@dataclass(frozen=True)
class Receipt:
    provider_id: str
    detail: str = ""
    sent: Outbound | None = None  # what went out, when a rule or the channel changed it
    notes: tuple[str, ...] = ()   # the rules' reasons for what they changed


@dataclass(frozen=True)
class Verdict:
    reason: str
    send: bool = True          # False: not sent; the row fails with the reason
    to_owner: bool = False     # and the draft goes back to the owner's queue
    body: str | None = None    # send this text instead
    template: str | None = None  # send this approved template instead of free text


class Refused(PermanentError):
    """A rule said no: never sent. ``to_owner``: the draft goes back to the owner with the reason."""

    def __init__(self, reason: str, *, to_owner: bool = False, code=None):
        super().__init__(reason, code=code)
        self.to_owner = to_owner


# --- the rules: plain facts in, a verdict out -----------------------------------------------------

def refuse_opted_out(f: SendFacts) -> Verdict | None:
    return Verdict(OPTED_OUT, send=False) if f.opted_out else None


def keep_whatsapp_window(f: SendFacts) -> Verdict | None:
    if f.channel != "whatsapp" or f.kind not in CUSTOMER_KINDS or f.templated:
        return None
    if f.last_inbound_at is not None and f.now - f.last_inbound_at < WHATSAPP_WINDOW:
        return None
    ago = f"{(f.now - f.last_inbound_at).total_seconds() / 3600:.0f} h ago" if f.last_inbound_at else "never"
    return window_closed(f.template_sid, f"the customer last wrote {ago}")


def window_closed(template_sid: str, detail: str) -> Verdict:
    if template_sid:
        return Verdict(f"{OUTSIDE_WINDOW} ({detail}): sent the approved template {template_sid} instead",
                       template=template_sid)
    return Verdict(f"{OUTSIDE_WINDOW} ({detail}): WhatsApp allows only an approved template there and "
                   "[twilio] whatsapp_template_sid is empty; approve it again after the customer writes, "
                   "or reach them another way", send=False, to_owner=True)


def keep_daily_caps(f: SendFacts) -> Verdict | None:
    if not f.automatic or f.kind not in CUSTOMER_KINDS:
        return None
    for sent, cap, where in ((f.thread_sent_today, f.thread_cap, "this conversation"),
                             (f.sender_sent_today, f.sender_cap, "this customer")):
        if cap and sent >= cap:
            return Verdict(f"not sent: {sent} automatic messages already went to {where} in the last 24 hours "
                           f"(cap {cap})", send=False, to_owner=True)
    return None


def wait_for_new_words(f: SendFacts) -> Verdict | None:
    if f.automatic or f.kind != OutboxKind.REPLY or not f.wrote_since:
        return None
    n = f.wrote_since
    return Verdict(f"not sent: the customer wrote {n} more message{'s' if n != 1 else ''} after you approved "
                   "this reply, so it may no longer fit; look at the thread, then approve it again",
                   send=False, to_owner=True)


def fit_sms_segments(f: SendFacts) -> Verdict | None:
    if f.channel != "sms" or f.templated or (n := sms_segments(f.body)) <= f.max_segments:
        return None
    limit = f"{n} SMS segments; the limit is {f.max_segments} ([tone] sms_max_segments)"
    if f.kind == OutboxKind.NOTIFY_SMS:  # our own note to the owner: cutting it loses nothing that matters
        return Verdict(f"cut to fit: {limit}", body=clip_to_segments(f.body, f.max_segments))
    if not f.automatic:
        return Verdict(f"not sent: your reply is {limit}; shorten it and approve it again",
                       send=False, to_owner=True)
    short = shorten_at_sentence(f.body, f.max_segments)
    if short:
        return Verdict(f"shortened at a sentence boundary: it was {limit}", body=short)
    return Verdict(f"not sent: the reply is {limit} and can't be shortened safely", send=False, to_owner=True)


RULES = (refuse_opted_out, keep_whatsapp_window, keep_daily_caps, wait_for_new_words, fit_sms_segments)


def decide_before_send(facts: SendFacts, rules=RULES) -> list[Verdict]:
    """The verdicts of the rules in order; a refusal ends the list (rewrites feed later rules)."""
    verdicts = []
    for rule in rules:
        verdict = rule(facts)
        if verdict is None:
            continue
        verdicts.append(verdict)
        if not verdict.send:
            break
        facts = dataclasses.replace(facts, body=verdict.body if verdict.body is not None else facts.body,
                                    templated=facts.templated or bool(verdict.template))
    return verdicts


def shorten_at_sentence(text: str, max_segments: int) -> str | None:
    """The longest run of whole leading sentences within ``max_segments``, cut from the text as
    written; None when not even the first sentence fits or a dropped sentence is a caveat."""
    sentences, kept_end, pos, kept = split_sentences(text), 0, 0, 0
    for sentence in sentences:
        start = text.find(sentence, pos)
        if start < 0:
            return None
        end = start + len(sentence)
        if sms_segments(text[:end].strip()) > max_segments:
            break
        kept_end, pos, kept = end, end, kept + 1
    if not kept or text[:kept_end].rstrip()[-1:] not in ".!?":
        return None
    if any(s.lower().lstrip("\"'(").startswith(CAVEATS) for s in sentences[kept:]):
        return None
    return text[:kept_end].strip()


def clip_to_segments(text: str, max_segments: int) -> str:
    text = text.strip()
    while text and sms_segments(text) > max_segments:
        text = text[:-10].rstrip() + "..."
    return text


def apply_verdict(outbound: Outbound, verdict: Verdict) -> Outbound:
    """The outbound with a rule's change, keeping what it replaced in ``extra``."""
    extra, body = dict(outbound.extra), outbound.body_text
    if verdict.body is not None:
        extra.update(original_text=body, changed=verdict.reason)
        body = verdict.body
    if verdict.template:
        extra.update(template={"content_sid": verdict.template}, unsent_text=body, changed=verdict.reason)
        # The thread's history must say what the customer got: the template, not the reply.
        body = f"[WhatsApp template {verdict.template}: {OUTSIDE_WINDOW}, the drafted reply was not sent]"
    facts = outbound.facts and dataclasses.replace(outbound.facts, body=body,
                                                   templated=outbound.facts.templated or bool(verdict.template))
    return dataclasses.replace(outbound, body_text=body, extra=extra, facts=facts)


# --- the template method ---------------------------------------------------------------------------

class Channel(ABC):
    """A way out. ``async with channel:`` opens it (a connection, a client), ``send`` checks and
    delivers one outbound; subclasses implement ``deliver`` (and ``open``/``close`` if they hold one)."""

    rules = RULES
    key = ""  # names the server for the send job's backoff ("smtp:host:port")

    async def __aenter__(self) -> "Channel":
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect; raise ``TransientError`` (try later) or ``ConfigError`` (the owner must fix it)."""

    async def close(self) -> None:
        pass

    @property
    def is_connected(self) -> bool:
        return True

    def check(self, outbound: Outbound) -> tuple[Outbound, list[str]]:
        """The shared rules over the outbound's facts: the outbound to deliver and the reasons
        for what changed, or ``Refused``. A rule that fails refuses too: never send unchecked."""
        if outbound.facts is None:
            return outbound, []
        if outbound.facts.unreadable:
            raise Refused(f"not sent: checking it before sending failed ({outbound.facts.unreadable})")
        try:
            verdicts = decide_before_send(outbound.facts, self.rules)
        except Exception as exc:
            raise Refused(f"not sent: checking it before sending failed ({type(exc).__name__}: {exc})") from exc
        for verdict in verdicts:
            if not verdict.send:
                raise Refused(verdict.reason, to_owner=verdict.to_owner)
            outbound = apply_verdict(outbound, verdict)
        return outbound, [v.reason for v in verdicts]

    async def send(self, outbound: Outbound) -> Receipt:
        outbound, notes = self.check(outbound)
        try:
            receipt = await self.deliver(outbound)
        except DeliveryError as exc:
            exc.sent = getattr(exc, "sent", None) or outbound  # what may have gone out (unknown outcome)
            raise
        return dataclasses.replace(receipt, sent=receipt.sent or outbound, notes=tuple(notes) + receipt.notes)

    @abstractmethod
    async def deliver(self, outbound: Outbound) -> Receipt:
        """Hand one message to the provider; nothing to decide here."""


__all__ = ["Channel", "Outbound", "Receipt", "SendFacts", "Verdict", "Refused", "TransientError",
           "PermanentError", "UnknownOutcome", "decide_before_send", "shorten_at_sentence"]
