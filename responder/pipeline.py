"""The pipeline: one stored inbound message in, exactly one routed draft out.

Runs in the process job, one transaction per message, for every channel:
``normalize -> resolve customer/thread -> signals -> order step -> retrieve -> draft -> check ->
route -> store`` (the last in ``responder.outcome``).
Each step is a small named function over a ``Work`` record; the route comes from the rule table
in ``responder.decide.routing`` and its reasons are stored on the draft. A step that raises rolls the
whole message back; the job records the error and retries it, quarantining it after N tries.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta

from sqlmodel import Session

from channels.email.parse import PARTIAL_READ, normalize_subject
from responder.core.clock import utcnow
from responder.core.models import (
    Customer,
    Draft,
    Message,
    Route,
    Thread,
)
from responder.core.settings import Settings
from responder.decide import limits as cost_limits
from responder.decide import linking, optout
from responder.decide.answerability import shop_words, unanswered
from responder.decide.greeting import checked_greeting_name
from responder.decide.guard import check_claims
from responder.decide.routing import Decision, RouteFacts, decide
from responder.draft.base import Drafter, DraftRequest, DraftResult, Turn
from responder.draft.tone import apply_tone, rules_for
from responder.knowledge.catalog import alternatives
from responder.knowledge.retrieve import Hit, Knowledge
from responder.orders import step as order_step
from responder.orders.lookup import Lookup
from responder.orders.verify import numbers_in, other_questions, without_details
from responder.outcome import store_outcome
from responder.owner import owner_replies
from responder.send import outbox
from responder.understand import customers
from responder.understand.bursts import fold_burst, hold_if_bursting
from responder.understand.conversation import (
    resolve_chat_thread,
    resolve_customer,
    resolve_email_thread,
    thread_history,
)
from responder.understand.normalize import normalize
from responder.understand.question import questions
from responder.understand.signals import Signals, compute_signals

log = logging.getLogger("deskhand.pipeline")
MAX_DRAFT_INPUT = 20_000  # characters of new text handed to the drafter
IDENTITY_KIND = {"email": "email", "sms": "phone", "whatsapp": "phone", "chat": "chat"}
TEXTED = ("sms", "whatsapp")  # phone numbers: STOP/START/HELP and opt-outs apply
STEP_ASIDE_S = 0.5  # a message waiting on the order source comes back after this (the lookup's kick)


@dataclass
class Work:
    message: Message
    sender: str = ""          # whom we answer: an email address or an E.164 number
    sender_name: str = ""
    subject: str = ""
    text: str = ""            # the customer's new words
    full_text: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    automated: str | None = None
    customer: Customer | None = None
    thread: Thread | None = None
    hits: list = field(default_factory=list)
    knowledge_version: str = ""
    knowledge_empty: bool = False
    signals: Signals | None = None
    earlier_turns: int = 0
    check_failures: list[str] = field(default_factory=list)
    greet_name: str = ""      # the name the reply greets, once the guard has passed it
    greeting_notes: list[str] = field(default_factory=list)
    draft: DraftResult | None = None
    decision: Decision | None = None
    notes: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # checks that raised: routing holds the draft
    limits: list[str] = field(default_factory=list)  # budget, hourly cap, loop breaker (responder.decide.limits)
    auto_paused: bool = False
    order: order_step.OrderOutcome | None = None  # the order step's answer or reasons (responder.orders)

    @property
    def channel(self) -> str:
        return self.message.channel


def process_message(*, session: Session, message: Message, settings: Settings, drafter: Drafter,
                    retriever: Knowledge | None, orders: Lookup | None = None) -> Draft | None:
    """The routed draft, or None when the message is held until its burst is over. Raises
    ``responder.orders.lookup.Pending`` while the order source is still answering."""
    work = Work(message=message)
    normalize(work, settings)
    if not work.automated and work.channel == "email":
        # The owner answering a notification or the digest ("approve", new text, "reject"):
        # acted on here, never answered as a customer (responder.owner.owner_replies).
        owner = owner_replies.handle(work, session, settings)
        if owner is not None:
            work.decision = Decision(Route.IGNORE, owner.reasons)
            draft = store_outcome(work, session, settings)
            owner_replies.confirm(session, settings, work, draft, owner)
            return draft
    if not work.automated:
        resolve(work, session)
        if work.channel in TEXTED:  # texts: STOP/START/HELP, opted-out numbers, photos without words
            work.decision = optout.route_for(work, session, settings)
            if work.decision is not None:
                return store_outcome(work, session, settings)
        if work.channel != "email":
            # "my email is …", then the emailed code: one customer across email and texts ("1042
            # jamie@example.com" is an order's details, for the order step).
            linked = None if numbers_in(work.text) else linking.handle_text(
                session, settings, customer=work.customer, channel=work.channel, text=work.text)
            if linked is not None:
                work.customer, work.draft = linked.customer, linked.draft()
                work.decision = Decision(Route.AUTO, linked.reasons)
                draft = store_outcome(work, session, settings)
                if linked.code:
                    linking.enqueue_code_email(session, settings, linked.link, draft.id, linked.code, work.channel)
                return draft
        if hold_if_bursting(session, message, settings):
            return None
        for other in fold_burst(session, message):
            work.text = f"{work.text}\n{other.new_text or other.text}".strip()
        compute(work, session, settings)
        # Raises Pending when the shop's API is slow: the job undoes this attempt and the message
        # steps aside for STEP_ASIDE_S while the queue goes on (responder.ops.jobs).
        work.order = order_step.run(work, session, settings, orders, retriever.facts().policies if retriever else "")
        retrieve(work, retriever, session)
        if budget := cost_limits.budget_note(session, settings):  # today's model spend is used up
            work.limits.append(budget)
            drafter = drafter.offline
        if work.order is not None and work.order.reply:
            answer_from_order(work)
        else:
            draft_reply(work, session, drafter, retriever, settings)
        check(work, retriever, settings)
    route(work, session, settings)
    return store_outcome(work, session, settings)


def resolve(work: Work, session: Session) -> None:
    work.customer = resolve_customer(session=session, kind=IDENTITY_KIND[work.channel], value=work.sender,
                                     name=work.sender_name)
    if work.channel == "email":
        work.thread = resolve_email_thread(session=session, customer=work.customer, subject=work.subject,
                                           subject_key=normalize_subject(work.subject),
                                           in_reply_to=work.in_reply_to, references=list(work.references))
    else:
        work.thread = resolve_chat_thread(session=session, customer=work.customer, channel=work.channel)
    work.message.customer_id, work.message.thread_id = work.customer.id, work.thread.id


def compute(work: Work, session: Session, settings: Settings) -> None:
    """Signals from this message and the customer's earlier ones in the thread."""
    earlier = [m.new_text or m.text for m in thread_history(session=session, thread_id=work.thread.id,
                                                             before_id=work.message.id) if m.direction == "in"]
    work.earlier_turns = len(earlier)
    work.signals = compute_signals(work.text, subject=work.subject, channel=work.channel, earlier=earlier,
                                   settings=settings)
    if work.signals.paste_start:  # a pasted email below the question: answer the question
        work.text = work.text[:work.signals.paste_start].strip() or work.text


def question_of(work: Work) -> str:
    text = work.text.strip()
    return f"{work.subject}\n{text}" if len(text) < 40 and work.subject else text


ANAPHOR = re.compile(r"\b(it|its|it's|that one|this one|the (?:\w+ )?one|them|those|these)\b", re.I)


def product_in_context(work: Work, session: Session, retriever) -> str | None:
    """The product this customer's conversation is about, for "how tall is it?" (never another
    customer's: the history is this thread's only)."""
    if not ANAPHOR.search(work.text):
        return None
    if work.channel == "email" and work.subject and (key := retriever.product_in(work.subject)):
        return key  # Subject "Yellow Wool Jumper", "how easy is it to clean?"
    earlier = thread_history(session=session, thread_id=work.thread.id, before_id=work.message.id)
    if work.channel != "email":
        # A text may follow up the same customer's email or other chat ("I ordered the blue one" by
        # email, "when will it ship?" by SMS): their recent messages on any channel, this week.
        week = utcnow() - timedelta(days=7)
        earlier = [m for m in customers.customer_history(session, customer_id=work.customer.id,
                                                         before_message_id=work.message.id)
                   if m.received_at >= week]
    for message in reversed(earlier):
        key = retriever.product_in(message.new_text or message.text)
        if key:
            return key
    return None


def retrieve(work: Work, retriever, session: Session | None = None) -> None:
    context = product_in_context(work, session, retriever) if session is not None else None
    work.hits = retriever.search(question_of(work)[:MAX_DRAFT_INPUT], k=5, context_product=context)
    work.knowledge_version = retriever.version
    work.knowledge_empty = not retriever.index.entries


def draft_reply(work: Work, session: Session, drafter: Drafter, retriever: Knowledge | None = None,
                settings: Settings | None = None) -> None:
    if drafter.wants_examples and retriever is not None:  # tone, never facts
        work.hits += retriever.search(question_of(work)[:MAX_DRAFT_INPUT], k=3, kinds=("example",))
    history = thread_history(session=session, thread_id=work.thread.id, before_id=work.message.id)
    request = DraftRequest(text=work.text[:MAX_DRAFT_INPUT] or work.subject, subject=work.subject,
                           channel=work.channel, customer_name=work.customer.name, hits=tuple(work.hits),
                           knowledge_empty=work.knowledge_empty,
                           alternatives=tuple(offer_instead(work, retriever)),
                           goods=goods_of(retriever, settings),
                           history=tuple(Turn(m.direction, m.new_text or m.text) for m in history))
    # A backend that raises fails the whole unit: the job retries it and, after
    # max_process_attempts, quarantines it with the error (never a silent skip).
    work.draft = drafter.draft(request)


def answer_from_order(work: Work) -> None:
    """The order step's reply is the draft; the order records join the hits, so the claim guard
    checks every number, date and link in it against them (and the knowledge)."""
    outcome = work.order
    work.hits = [Hit(source="orders", kind="order", title="the customer's order", text=outcome.facts_text,
                     score=1.0)] + list(work.hits)
    work.draft = DraftResult(reply=outcome.reply, confidence=0.95, backend="orders",
                             sources=[f"order #{o.number} ({o.source})" for o in outcome.orders])


def goods_of(retriever: Knowledge | None, settings: Settings | None = None) -> frozenset[str]:
    """The words the shop's goods go by, for the drafter (``answerability.shop_words``)."""
    if retriever is None:
        return frozenset()
    return shop_words(retriever.version, retriever.facts(), settings.store.name if settings else "").goods


def offer_instead(work: Work, retriever: Knowledge | None) -> list[dict]:
    """For a question about a discontinued product: in-stock products of its kind to offer."""
    top = work.hits[0] if work.hits else None
    if retriever is None or top is None or top.kind != "product" or top.facts.get("status") != "discontinued":
        return []
    return alternatives(top.facts, retriever.facts().catalog)


def check(work: Work, retriever, settings: Settings) -> None:
    """Tone fixes what is safe to fix; the guard checks every claim against the knowledge, and the
    name the reply will greet (``decide.greeting``)."""
    if work.channel == "email":
        work.greet_name, work.greeting_notes = checked_greeting_name(work.customer.name if work.customer else "")
    draft = work.draft
    if draft is None or not draft.reply.strip():
        return
    frustrated = bool(work.signals and work.signals.is_frustrated)
    today = utcnow().astimezone(settings.tz).date()
    toned = apply_tone(draft.reply, channel=work.channel, frustrated=frustrated, rules=rules_for(settings.tone),
                       today=today, needs_detail=len(questions(work.text)) > 1)  # each question its answer
    draft.reply = toned.text
    work.check_failures = [f"tone: {v}" for v in toned.violations]
    facts = retriever.facts()
    work.check_failures += check_claims(draft.reply, hits=work.hits, catalog=facts.catalog,
                                        policies_text=facts.policies, customer_text=work.text, customer_address=work.sender,
                                        today=today,
                                        store_facts=facts.store)
    if work.signals is None or work.signals.language in ("en", "und"):  # the check reads English
        names = tuple(h.facts["name"] for h in work.hits if h.kind == "product" and h.facts.get("name"))
        words = shop_words(retriever.version, facts, settings.store.name)
        asked = work.text or work.subject
        if work.order is not None and work.order.reply:  # the record, or the request for details, answers
            asked = other_questions(asked)               # the order's part; the rest is still checked
        if work.order is not None:  # "1043, sam@example.com": order details, no question to answer
            asked = without_details(asked)
        work.check_failures += unanswered(asked, draft.reply, names=names,
                                          known=words.known, goods=words.goods)


def route(work: Work, session: Session, settings: Settings) -> None:
    since = utcnow() - timedelta(days=1)
    thread_cap, sender_cap = settings.daily_caps(work.channel)
    facts = RouteFacts(channel=work.channel, text=work.text or work.subject, automated=work.automated,
                       draft=work.draft, signals=work.signals, customer_turns=work.earlier_turns + 1,
                       check_failures=work.check_failures,
                       media=len(work.message.attachments or []) if work.channel != "email" else 0,
                       threshold=settings.routing.auto_send_threshold,
                       auto_send_enabled=getattr(settings.routing, f"auto_send_{work.channel}"),
                       max_turns=settings.routing.max_customer_turns,
                       thread_cap=thread_cap, sender_cap=sender_cap)
    if not work.automated:
        pauses = [n for n in (cost_limits.hourly_note(session, settings),
                              cost_limits.loop_note(session, settings, work.message)) if n]
        work.limits += pauses
        work.auto_paused = bool(pauses)  # no holding note either
    facts.limits = work.limits
    if work.order is not None:
        facts.order_step, facts.order_reply, facts.order_holds = True, bool(work.order.reply), list(work.order.holds)
    facts.unchecked = work.unchecked
    facts.unread = [n for n in work.notes if n.startswith(PARTIAL_READ)]
    if work.thread is not None:
        facts.thread_auto_today = outbox.automatic_sent_since(session=session, since=since, thread_id=work.thread.id)
        facts.sender_auto_today = outbox.automatic_sent_since(session=session, since=since, recipient=work.sender)
    work.decision = decide(facts)
