"""Privacy: forget one customer on request, and purge conversations older than the retention period.

Runs beside the message flow, never inside it: ``python run.py forget CUSTOMER`` (``commands.cmd_forget`` ->
``forget_customer``) and the daemon's daily job (``responder.ops.retention.purge_expired``, which
erases with the helpers here). Rows are deleted, not blanked.
For a set of threads that means their messages (the raw mail too), drafts with their events,
feedback and lessons, and outbox rows (unsent ones are cancelled: they never go out). Forgetting
a customer also takes the mail stored outside any thread that carries their address or number
(their out-of-office replies, bounces, the owner's answers quoting them), their identities and
link requests (and other customers' requests naming their address), and the customer row.
Mentions left in other rows (another customer's "my wife's email is …", an owner mail about
them) are replaced by "[forgotten]"; a digest that quoted them is rendered again when it is
still unsent, else its body is replaced by a note.

``TABLES`` says what happens in every table; a test fails when a new table is not listed. Not in
the database, so not touched: the mailbox itself (Deskhand never deletes mail), Twilio's message
log, and knowledge files an accepted lesson wrote; ``Erased.notes`` tells the owner. The
knowledge index (SQLite) is built from the knowledge folder only and holds no customer text.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import String, and_, cast, delete, func, or_
from sqlmodel import Session, col, select

from responder.core.clock import as_utc, utcnow
from responder.core.errors import DeskhandError
from responder.core.models import (
    Alert,
    Customer,
    CustomerLink,
    Digest,
    Draft,
    DraftEvent,
    Feedback,
    ChatSession,
    Identity,
    Lesson,
    Message,
    OrderCheck,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Thread,
)
from responder.core.settings import Settings
from responder.owner import digest as digests
from responder.understand.customers import find_customer, phone_of

log = logging.getLogger("deskhand.privacy")
TABLES = {
    "customer": "erased", "identity": "erased", "thread": "erased", "message": "erased (raw mail too)",
    "draft": "erased", "draftevent": "erased with the draft", "feedback": "erased with the draft or thread",
    "lesson": "erased with the draft", "customerlink": "erased (theirs, and others naming their address)",
    "outbox": "erased, or cancelled when unsent; owner mail mentioning them re-rendered or scrubbed",
    "digest": "erased drafts' numbers blanked (a reply 'approve 2' must not hit another draft)",
    "usedlink": "random nonces only: no customer data", "mailboxcursor": "mailbox positions: no customer data",
    "ownersetting": "the owner's password hash: no customer data",
    "alert": "a quoted message mentioning them is replaced by a note; erased after the retention period",
    "ordercheck": "erased with the message, and every order check from their addresses or numbers",
    "chatsession": "erased with their chat identity (the widget's token stops working), and after "
                   "[privacy] retention_days idle",
}
UNSENT = (OutboxStatus.QUEUED, OutboxStatus.RETRY)
FORGOTTEN = "[forgotten]"
NOTE = "This mail was erased on {day}: a customer it mentioned asked to be forgotten."
BATCH = 200   # threads per purge transaction: short transactions, the daemon's jobs keep flowing
CHUNK = 500   # ids per IN (...) list, under SQLite's bound-parameter limit


class PrivacyError(DeskhandError):
    """Erasing can't go ahead now; the message is one sentence for the owner."""


@dataclass
class Erased:
    counts: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    digests: set = field(default_factory=set)  # outbox ids of digests that listed an erased draft

    def summary(self) -> str:
        return ", ".join(f"{n} {what}" for what, n in self.counts.items() if n) or "nothing"


def _chunks(ids) -> list[list]:
    ids = sorted(ids)
    return [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)]


def _ids(session: Session, column, where_column, values) -> set:
    return {v for part in _chunks(values) for v in session.exec(select(column).where(col(where_column).in_(part)))}


def _delete(session: Session, model, column, ids) -> int:
    return sum(session.exec(delete(model).where(col(column).in_(part))).rowcount for part in _chunks(ids))


# --- finding who to forget ---------------------------------------------------------------------------

def find(session: Session, who: str) -> Customer | None:
    """CUSTOMER as an email address, a phone number with its country code, or a customer id."""
    who = who.strip().lstrip("#")
    if who.isdigit() and len(who) < 9:
        return session.get(Customer, int(who))
    if "@" in who:
        return find_customer(session, email=who)
    phone = phone_of(who)
    identity = session.exec(select(Identity).where(Identity.value == phone)).first() if phone else None
    return session.get(Customer, identity.customer_id) if identity else None


def needles(session: Session, customer_id: int) -> list[str]:
    """Their addresses and numbers, lowercased, in the forms they are stored and written in."""
    found = set()
    for identity in session.exec(select(Identity).where(Identity.customer_id == customer_id)):
        value = identity.value.strip().lower()
        found |= {value, value.lstrip("+")} if identity.kind != "email" else {value}
    return sorted(v for v in found if len(v) >= 6)


# --- erasing ------------------------------------------------------------------------------------------

def _erase(session: Session, erased: Erased, *, threads: set, messages: set, outbox: set = frozenset(),
           dry_run: bool) -> set:
    """Delete threads, messages and outbox rows with everything that hangs off them; returns the
    draft ids."""
    messages = set(messages) | _ids(session, Message.id, Message.thread_id, threads)
    drafts = _ids(session, Draft.id, Draft.message_id, messages) | _ids(session, Draft.id, Draft.thread_id, threads)
    outbox = set(outbox) | _ids(session, Outbox.id, Outbox.draft_id, drafts) | \
        _ids(session, Outbox.id, Outbox.thread_id, threads)
    rows = [session.get(Outbox, o) for o in outbox]
    if any(r.status == OutboxStatus.SENDING and r.next_attempt_at and as_utc(r.next_attempt_at) > utcnow()
           for r in rows):
        raise PrivacyError("A message to them is being sent right now; try again in a minute.")
    lessons = [session.get(Lesson, i) for i in _ids(session, Lesson.id, Lesson.draft_id, drafts)]
    for lesson in lessons:
        if lesson.status == "accepted":
            erased.notes.append(f"lesson {lesson.id} was accepted into knowledge/{lesson.path} and may quote "
                                "them: edit that file by hand (knowledge is never changed here)")
    erased.counts.update({
        "messages": len(messages), "drafts": len(drafts), "threads": len(threads),
        "outbox rows (sent, erased)": sum(r.status == OutboxStatus.SENT for r in rows),
        "outbox rows (unsent, cancelled)": sum(r.status in UNSENT for r in rows),
        "outbox rows (failed or unknown, erased)": sum(r.status not in (*UNSENT, OutboxStatus.SENT) for r in rows),
        "lessons (pending)": sum(x.status == "proposed" for x in lessons),
        "lessons (decided)": sum(x.status != "proposed" for x in lessons)})
    feedback = _ids(session, Feedback.id, Feedback.draft_id, drafts) | _ids(session, Feedback.id, Feedback.thread_id,
                                                                             threads)
    events = _ids(session, DraftEvent.id, DraftEvent.draft_id, drafts)
    checks = _ids(session, OrderCheck.id, OrderCheck.message_id, messages)
    erased.counts.update({"feedback votes": len(feedback), "draft events": len(events), "order checks": len(checks)})
    if not dry_run:
        for model, ids in ((Feedback, feedback), (DraftEvent, events), (OrderCheck, checks),
                           (Lesson, {x.id for x in lessons}),
                           (Outbox, outbox), (Draft, drafts), (Message, messages), (Thread, threads)):
            _delete(session, model, model.id, ids)
        _blank_digest_numbers(session, erased, drafts)
    return drafts


def _blank_digest_numbers(session: Session, erased: Erased, drafts: set) -> None:
    """A digest numbers its drafts; an erased one becomes 0 so "approve 2" never reaches a new draft
    that reuses the id (SQLite may reuse the highest id after a delete)."""
    for digest in session.exec(select(Digest)) if drafts else ():
        if set(digest.draft_ids or []) & drafts:
            digest.draft_ids = [0 if d in drafts else d for d in digest.draft_ids]
            if digest.outbox_id is not None:
                erased.digests.add(digest.outbox_id)
            session.add(digest)


def _erase_customers(session: Session, erased: Erased, customer_ids: set, *, keep_opted_out: bool,
                     dry_run: bool) -> None:
    for customer_id in sorted(customer_ids):
        identities = list(session.exec(select(Identity).where(Identity.customer_id == customer_id)))
        kept = [i for i in identities if keep_opted_out and i.opted_out_at is not None]
        links = _ids(session, CustomerLink.id, CustomerLink.customer_id, {customer_id})
        emails = [i.value for i in identities if i.kind == "email" and i not in kept]
        if emails:  # others' requests to link their address are about them too
            links |= {x for x in session.exec(select(CustomerLink.id).where(col(CustomerLink.email).in_(emails)))}
        checks = _ids(session, OrderCheck.id, OrderCheck.sender, {i.value for i in identities})
        chats = _ids(session, ChatSession.id, ChatSession.sender, {i.value for i in identities if i.kind == "chat"})
        erased.counts.update({"identities": len(identities) - len(kept), "link requests": len(links),
                              "customers": 0 if kept else 1, "order checks": len(checks), "chat sessions": len(chats)})
        if dry_run:
            continue
        _delete(session, CustomerLink, CustomerLink.id, links)
        _delete(session, OrderCheck, OrderCheck.id, checks)
        _delete(session, ChatSession, ChatSession.id, chats)
        _delete(session, Identity, Identity.id, {i.id for i in identities if i not in kept})
        if kept:  # an opted-out number stays, so STOP is still honoured when they text again
            session.get(Customer, customer_id).name = ""
        else:
            _delete(session, Customer, Customer.id, {customer_id})


def _mentions(session: Session, words: list[str]) -> set:
    """Messages outside any thread (automated mail, owner replies, unprocessed) that carry a word."""
    found = set()
    query = select(Message.id, Message.sender, Message.recipient, Message.text, Message.raw).where(
        col(Message.thread_id).is_(None)).execution_options(yield_per=200)
    for message_id, *parts in session.exec(query):
        blob = " ".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else p or "" for p in parts).lower()
        if any(w in blob for w in words):
            found.add(message_id)
    return found


SCRUBBED = ((Message, ("subject", "text", "new_text")), (Draft, ("text", "sent_text", "reasons")),
            (DraftEvent, ("detail",)), (Lesson, ("addition", "diff")), (Feedback, ("comment",)))


def _scrub(session: Session, erased: Erased, words: list[str], snippets: list[str], settings: Settings) -> None:
    """Replace what is left of them in other rows; owner mail that quoted them is redone or noted."""
    for model, columns in SCRUBBED:
        hits = or_(*[func.lower(cast(getattr(model, c), String)).contains(w, autoescape=True)
                     for c in columns for w in words])
        for row in session.exec(select(model).where(hits)):
            for c in columns:
                setattr(row, c, _replace(getattr(row, c), words))
            session.add(row)
            erased.counts["other rows mentioning them (scrubbed)"] += 1
    # Their words (not just their address) are looked for in digests only: a digest lists questions
    # without their sender; a reply to another customer who asked the same thing must stay.
    hits = or_(col(Outbox.id).in_(erased.digests or [0]),
               *[func.lower(getattr(Outbox, c)).contains(w, autoescape=True)
                 for c in ("recipient", "subject", "body_text") for w in words],
               and_(Outbox.kind == OutboxKind.DIGEST, or_(*[func.lower(Outbox.body_text).contains(w, autoescape=True)
                                                    for w in snippets or words])))
    for row in session.exec(select(Outbox).where(hits)):
        digest = session.exec(select(Digest).where(Digest.outbox_id == row.id)).first()
        if digest is not None and row.status in UNSENT and settings is not None:
            _render_digest_again(session, settings, digest, row)
        else:
            row.subject, row.body_text = "[Deskhand] (erased)", NOTE.format(day=utcnow().date().isoformat())
            row.body_html, row.extra = None, {k: v for k, v in (row.extra or {}).items() if k != "images"}
        session.add(row)
        erased.counts["owner mails mentioning them (redone or erased)"] += 1
    for alert in session.exec(select(Alert).where(or_(*[func.lower(Alert.detail).contains(w, autoescape=True)
                                                        for w in words + snippets]))):
        alert.detail = NOTE.format(day=utcnow().date().isoformat())  # e.g. the loop breaker's sample
        session.add(alert)
        erased.counts["alerts quoting them (erased)"] += 1


def _render_digest_again(session: Session, settings: Settings, digest: Digest, row: Outbox) -> None:
    mail = digests.build(session, settings, now=as_utc(digest.created_at), token=digest.token)
    row.subject, row.body_text, row.body_html = mail.subject, mail.text, mail.html
    digest.draft_ids = mail.draft_ids
    session.add(digest)


def _replace(value, words: list[str]):
    if isinstance(value, list):
        return [_replace(v, words) for v in value]
    if not isinstance(value, str):
        return value
    for word in words:
        lowered = value.lower()
        while (at := lowered.find(word)) >= 0:
            value = value[:at] + FORGOTTEN + value[at + len(word):]
            lowered = value.lower()
    return value


def forget_customer(session: Session, customer: Customer, *, settings: Settings | None = None, dry_run: bool = False) -> Erased:
    """Erase everything about ``customer`` in this transaction (``dry_run``: only count it).
    ``settings`` lets an unsent digest that listed them be rendered again instead of noted."""
    if not dry_run:  # PostgreSQL: a link or merge of this customer running now finishes first
        session.exec(select(Customer.id).where(Customer.id == customer.id).with_for_update())
    erased, words, snippets = Erased(), needles(session, customer.id), []
    for text in session.exec(select(Message.new_text).where(Message.customer_id == customer.id,
                                                             Message.direction == "in")):
        line = next((s.strip() for s in (text or "").splitlines() if s.strip()), "")
        if len(line) >= 24:  # shorter lines ("Thanks!") are everybody's words
            snippets.append(line[:60].lower())
    threads = set(session.exec(select(Thread.id).where(Thread.customer_id == customer.id)))
    messages = set(session.exec(select(Message.id).where(Message.customer_id == customer.id)))
    # Outbox rows to them that no thread or draft of theirs ties to (a link code another number asked for).
    to_them = set(session.exec(select(Outbox.id).where(func.lower(Outbox.recipient).in_(
        words + [f"whatsapp:{w}" for w in words]), Outbox.kind != OutboxKind.DIGEST)))
    _erase(session, erased, threads=threads, messages=messages | _mentions(session, words), outbox=to_them,
           dry_run=dry_run)
    _erase_customers(session, erased, {customer.id}, keep_opted_out=False, dry_run=dry_run)
    if not dry_run and words:
        session.flush()
        _scrub(session, erased, words, snippets, settings)
    return erased


def _audit(settings: Settings, entry: dict, level: int = logging.WARNING) -> None:
    """A line in <data_dir>/privacy.log (and the log): what was erased and when, never whose data
    it was (a customer id means nothing once the row is gone)."""
    entry = {"at": utcnow().isoformat(timespec="seconds"), **entry}
    log.log(level, "privacy: %s", json.dumps(entry))
    path = settings.data_dir / "privacy.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
