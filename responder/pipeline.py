"""The pipeline: one stored inbound email in, exactly one routed draft out.

Runs in the process job, one transaction per message:
``parse -> detect automated mail -> resolve customer/thread -> draft -> route -> enqueue``.
Each step is a small named function over a ``Work`` record; the route comes from the rule table
in ``responder.routing`` and its reasons are stored on the draft. A step that raises rolls the
whole message back; the job records the error and retries it, quarantining it after N tries.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlmodel import Session

from channels.email.autoreply import automated_reason, reply_address
from channels.email.compose import new_message_id, references_for, render_body, reply_subject
from channels.email.parse import ParsedEmail, normalize_subject, parse_email
from responder import outbox
from responder.clock import utcnow
from responder.conversation import resolve_customer, resolve_email_thread, thread_history
from responder.drafting.base import DraftRequest, DraftResult, Turn
from responder.models import Customer, Draft, DraftStatus, Message, MessageStatus, Route, Thread
from responder.routing import Decision, RouteFacts, decide

log = logging.getLogger("deskhand.pipeline")
MAX_DRAFT_INPUT = 20_000  # characters of new text handed to the drafter


@dataclass
class Work:
    message: Message
    parsed: ParsedEmail | None = None     # cleaned; from_address is whom we answer
    original: ParsedEmail | None = None   # as parsed, for the automated-mail rules
    automated: str | None = None
    customer: Customer | None = None
    thread: Thread | None = None
    hits: list = field(default_factory=list)
    knowledge_version: str = ""
    knowledge_empty: bool = False
    draft: DraftResult | None = None
    decision: Decision | None = None
    notes: list[str] = field(default_factory=list)


def process_email(*, session: Session, message: Message, settings, drafter, retriever) -> Draft:
    work = Work(message=message)
    parse(work)
    detect_automated(work, settings)
    if not work.automated:
        resolve(work, session)
        retrieve(work, retriever)
        draft_reply(work, session, drafter)
    route(work, session, settings)
    return store_outcome(work, session, settings)


def _clean(text: str | None, limit: int | None = None) -> str:
    """PostgreSQL text can't hold NUL; column limits are enforced there too."""
    text = (text or "").replace("\x00", "")
    return text[:limit] if limit else text


def parse(work: Work) -> None:
    msg, parsed = work.message, parse_email(work.message.raw or b"")
    work.original = parsed
    address = _clean(reply_address(parsed))
    if len(address) > 320:  # RFC 5321 §4.5.3.1: no real mailbox is longer
        address = ""
    parsed = dataclasses.replace(parsed, from_address=address or None, from_name=_clean(parsed.from_name, 200),
                                 subject=_clean(parsed.subject, 1000), text=_clean(parsed.text),
                                 new_text=_clean(parsed.new_text), message_id=_clean(parsed.message_id, 900) or None,
                                 in_reply_to=_clean(parsed.in_reply_to, 900) or None,
                                 references=[_clean(r, 900) for r in parsed.references[-50:]])
    # From here on ``from_address`` is the customer: the sender, or a contact form's Reply-To.
    work.parsed = parsed
    msg.sender = parsed.from_address or ""
    msg.recipient = _clean(", ".join(parsed.to_addresses), 1000)
    msg.subject = parsed.subject
    msg.text = parsed.text
    msg.new_text = parsed.new_text
    msg.in_reply_to = parsed.in_reply_to
    msg.references = list(parsed.references)
    msg.attachments = [dict(filename=a.filename, content_type=a.content_type, size=a.size, sha256=a.sha256)
                       for a in parsed.attachments]
    if parsed.defects:
        work.notes.extend(parsed.defects[:5])


def detect_automated(work: Work, settings) -> None:
    domain = settings.reply_address.rpartition("@")[2].lower() or None
    work.automated = automated_reason(work.original, own_addresses=settings.own_addresses,
                                      own_message_id_domain=domain)
    if not work.automated and not work.parsed.from_address:
        work.automated = "no sender address to reply to"


def resolve(work: Work, session: Session) -> None:
    parsed = work.parsed
    work.customer = resolve_customer(session=session, kind="email", value=parsed.from_address,
                                     name=parsed.from_name)
    work.thread = resolve_email_thread(session=session, customer=work.customer, subject=parsed.subject,
                                       subject_key=normalize_subject(parsed.subject),
                                       in_reply_to=parsed.in_reply_to, references=list(parsed.references))
    work.message.customer_id, work.message.thread_id = work.customer.id, work.thread.id


def question_of(work: Work) -> str:
    text = (work.parsed.new_text or work.parsed.text).strip()
    return f"{work.parsed.subject}\n{text}" if len(text) < 40 and work.parsed.subject else text


def retrieve(work: Work, retriever) -> None:
    work.hits = retriever.search(question_of(work)[:MAX_DRAFT_INPUT], k=5)
    work.knowledge_version = retriever.version
    work.knowledge_empty = not retriever.index.entries


def draft_reply(work: Work, session: Session, drafter) -> None:
    history = thread_history(session=session, thread_id=work.thread.id, before_id=work.message.id)
    text = (work.parsed.new_text or work.parsed.text).strip()
    request = DraftRequest(text=text[:MAX_DRAFT_INPUT] or work.parsed.subject, subject=work.parsed.subject,
                           channel="email", customer_name=work.customer.name, hits=tuple(work.hits),
                           knowledge_empty=work.knowledge_empty,
                           history=tuple(Turn(m.direction, m.new_text or m.text) for m in history))
    # A backend that raises fails the whole unit: the job retries it and, after
    # max_process_attempts, quarantines it with the error (never a silent skip).
    work.draft = drafter.draft(request)


def route(work: Work, session: Session, settings) -> None:
    since = utcnow() - timedelta(days=1)
    facts = RouteFacts(channel="email", text=(work.parsed.new_text or work.parsed.text or work.parsed.subject),
                       automated=work.automated, draft=work.draft,
                       threshold=settings.routing.auto_send_threshold,
                       auto_send_enabled=settings.routing.auto_send_email,
                       thread_cap=settings.email.max_auto_replies_per_thread_per_day,
                       sender_cap=settings.email.max_auto_replies_per_sender_per_day)
    if work.thread is not None:
        facts.thread_auto_today = outbox.automatic_sent_since(session=session, since=since,
                                                              thread_id=work.thread.id)
        facts.sender_auto_today = outbox.automatic_sent_since(session=session, since=since,
                                                              recipient=work.parsed.from_address)
    work.decision = decide(facts)


def store_outcome(work: Work, session: Session, settings) -> Draft:
    decision, result, msg = work.decision, work.draft, work.message
    status = {Route.AUTO: DraftStatus.QUEUED, Route.IGNORE: DraftStatus.CLOSED}.get(decision.route,
                                                                                  DraftStatus.PENDING)
    reasons = decision.reasons + [r for r in (result.reasons if result else []) if r not in decision.reasons]
    draft = Draft(message_id=msg.id, thread_id=msg.thread_id, route=decision.route, status=status,
                  text=result.reply if result else "", confidence=result.confidence if result else None,
                  reasons=reasons, sources=result.sources if result else [],
                  backend=result.backend if result else "", knowledge_version=work.knowledge_version)
    session.add(draft)
    session.flush()
    if decision.route == Route.AUTO:
        outbox.enqueue(session=session, draft_id=draft.id, thread_id=msg.thread_id, channel="email",
                       recipient=work.parsed.from_address, subject=reply_subject(work.parsed.subject),
                       body_text=render_body(body=draft.text, customer_name=work.customer.name,
                                             store=settings.store),
                       message_id=new_message_id(settings.reply_address),
                       in_reply_to=work.parsed.message_id,
                       references=references_for(work.parsed.message_id, list(work.parsed.references)))
    msg.status, msg.processed_at, msg.last_error = MessageStatus.PROCESSED, utcnow(), None
    msg.next_attempt_at = None
    log.info("message %s from %s: %s%s", msg.id, msg.sender or "?", decision.route,
             f" ({'; '.join(decision.reasons)})" if decision.reasons else "")
    return draft
