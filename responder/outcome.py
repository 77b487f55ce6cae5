"""Store: the pipeline's last step, the routed draft written and what it sends queued.

Runs inside the message's transaction, after routing (``responder.pipeline.process_message``
calls ``store_outcome`` with its ``Work`` record). The draft row carries every reason: the
route's, the drafter's, the greeting's and the order step's summaries. An automatic reply is
queued with its thumbs up / down links; a handoff (and, in a chat, any held draft) notifies the
owner and, once a day per thread (in a chat: every time, the visitor is watching) and within
the caps, sends the customer an honest holding reply (``templates/replies/holding.txt.j2``).
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlmodel import Session, col, func, select

from responder.core.clock import utcnow
from responder.core.models import (
    Draft,
    DraftStatus,
    MessageStatus,
    Outbox,
    OutboxKind,
    Route,
)
from responder.core.settings import Settings
from responder.core.templating import render
from responder.decide import linking
from responder.owner import links, owner_mail
from responder.send import outbox, reply
from responder.understand.frustration import REPEAT_REASON
from responder.understand.orders import reports_a_problem

log = logging.getLogger("deskhand.pipeline")
# Channels where the customer is waiting on the page: a draft held for review is said to be held too
# (an email or a text can wait for the owner's review in silence; a chat visitor would sit watching).
LIVE = ("chat",)


def store_outcome(work, session: Session, settings: Settings) -> Draft:
    decision, result, msg = work.decision, work.draft, work.message
    status = {Route.AUTO: DraftStatus.QUEUED, Route.IGNORE: DraftStatus.CLOSED,
              Route.THROTTLED: DraftStatus.CLOSED}.get(decision.route, DraftStatus.PENDING)
    notes = [f"order {n}" for n in work.order.notes] if work.order is not None else []
    reasons = decision.reasons + [r for r in (result.reasons if result else []) + work.greeting_notes + notes
                                  if r not in decision.reasons]
    draft = Draft(message_id=msg.id, thread_id=msg.thread_id, route=decision.route, status=status,
                  text=result.reply if result else "", confidence=result.confidence if result else None,
                  reasons=reasons, sources=result.sources if result else [],
                  backend=result.backend if result else "", knowledge_version=work.knowledge_version,
                  signals=work.signals.to_dict() if work.signals else {}, no_match=has_no_match(work))
    record_usage(draft, result, settings)
    session.add(draft)
    session.flush()
    if decision.route == Route.AUTO:
        enqueue_reply(work, draft, draft.text, session, settings)
    if decision.route in (Route.REVIEW, Route.HANDOFF):
        owner_mail.notify_held(session, settings, draft)  # per [approvals] notify
    waiting = decision.route == Route.HANDOFF or (decision.route == Route.REVIEW and work.channel in LIVE)
    if waiting and may_send_holding(work, session, settings):
        # Never leave the customer in silence (but once a day per thread, within the caps).
        signals = work.signals
        frustrated = bool(signals and signals.is_frustrated)
        # Asking the same question again is a reason to hurry, not proof of anger: no "it's frustrating".
        asked_again = frustrated and signals.frustration_reasons == [REPEAT_REASON]
        # Upset without reaching the frustration threshold (ALL CAPS, a swear word, a chargeback, a
        # wrong item): still sorry first.
        upset = bool(signals and (signals.frustration_reasons or signals.sensitive
                                  or reports_a_problem(signals.about_order)))
        holding = render("replies/holding.txt.j2", owner_name=settings.store.owner_name, frustrated=frustrated,
                         upset=upset,
                         asked_again=asked_again, wants_human=bool(signals and signals.wants_human),
                         about_order=bool(signals and signals.about_order),
                         # only an order proved to be theirs is named (responder.orders.verify)
                         order_number=work.order.orders[0].number if work.order and work.order.orders else "").strip()
        enqueue_reply(work, draft, holding, session, settings, kind=OutboxKind.HOLDING)
    msg.status, msg.processed_at, msg.last_error = MessageStatus.PROCESSED, utcnow(), None
    msg.next_attempt_at = None
    log.info("message %s from %s: %s%s", msg.id, work.sender or "?", decision.route,
             f" ({'; '.join(decision.reasons)})" if decision.reasons else "")
    return draft


def has_no_match(work) -> bool:
    """A real question that retrieval found nothing for (the digest's hints for new FAQ entries)."""
    return bool(work.draft is not None and not work.automated and work.text.strip()
                and work.draft.backend != linking.LINK_BACKEND
                and not any(h.kind != "example" for h in work.hits))


def record_usage(draft: Draft, result, settings: Settings) -> None:
    prompt, completion = getattr(result, "prompt_tokens", 0) or 0, getattr(result, "completion_tokens", 0) or 0
    draft.llm_prompt_tokens, draft.llm_completion_tokens = prompt, completion
    draft.llm_cost = settings.llm.cost(prompt, completion)


def may_send_holding(work, session: Session, settings: Settings) -> bool:
    since = utcnow() - timedelta(days=1)
    if work.channel in LIVE:
        # The visitor is watching the panel: each held message is said to be held, even while
        # automatic replies are paused (a note in the chat costs nothing and ends the "typing").
        already = False
    else:  # once a day per thread; none while automatic sending is paused
        already = work.auto_paused or session.exec(select(func.count()).select_from(Outbox).where(
            Outbox.thread_id == work.thread.id, Outbox.kind == OutboxKind.HOLDING, Outbox.created_at >= since)).one()
    if already:
        return False
    thread_cap, sender_cap = settings.daily_caps(work.channel)  # 0: no cap
    return (not thread_cap or outbox.automatic_sent_since(session=session, since=since,
                                                          thread_id=work.thread.id) < thread_cap) and \
        (not sender_cap or outbox.automatic_sent_since(session=session, since=since,
                                                       recipient=work.sender) < sender_cap)


def enqueue_reply(work, draft: Draft, text: str, session: Session, settings: Settings, kind: str = OutboxKind.REPLY) -> None:
    # Automatic email answers end with thumbs up / down links, when customers can reach the server.
    feedback = {vote: links.feedback_link(settings, draft.id, vote, draft.token) for vote in ("up", "down")} \
        if work.channel == "email" and kind == OutboxKind.REPLY and settings.web.public_url else None
    reply.enqueue_reply(session, settings, draft=draft, channel=work.channel, recipient=work.sender,
                        thread_id=work.thread.id, text=text, customer_name=work.greet_name, subject=work.subject,
                        parent=work.message_id, references=work.references, kind=kind, feedback=feedback)
