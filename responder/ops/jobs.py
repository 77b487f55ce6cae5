"""The daemon's jobs: poll the mailbox and process stored messages (sending: ``responder.ops.sending``).

Each job is one pass that does what is due and returns how much it did, so the scheduler can
run it on an interval, a kick (IDLE push, new work) can run it at once, and tests can run it
"until idle" (Mailman's ``make_testable_runner``). Each unit of work has its own transaction.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlmodel import col, select

from channels.email.imap import ANSWERED, IMAP_ERRORS, STORED_KEYWORD, ImapMailbox
from responder.core.backoff import server_backoff
from responder.core.clock import as_utc, utcnow
from responder.core.db import DatabaseUnavailable, claim
from responder.core.models import (
    Draft,
    MailboxCursor,
    Message,
    MessageStatus,
    Outbox,
    OutboxKind,
    OutboxStatus,
)
from responder.intake.store import store_inbound_email
from responder.ops import prepare
from responder.ops.context import Context
from responder.orders.lookup import Pending
from responder.pipeline import STEP_ASIDE_S, process_message

log = logging.getLogger("deskhand.jobs")
PROCESS_BACKOFF = [timedelta(seconds=s) for s in (10, 60, 300)]


# --- poll -------------------------------------------------------------------------------------

def poll_mailbox(ctx: Context, on_stored=None) -> int:
    """Fetch mail newer than the cursor, store it, then flag the originals. Returns rows stored.

    ``on_stored()`` is called after each batch is committed (the daemon starts processing it
    while the next batch is fetched: a backlog of thousands is not stored in full first).

    A mailbox that can't be read (login refused, connection dropped mid-FETCH, server down) is
    one log line and a backoff, never a crash. Nothing is lost: the cursor moves only past mail
    whose rows are committed, so the next good poll fetches the rest.
    """
    box = ImapMailbox(ctx.settings.email)
    backoff = server_backoff(f"imap:{box.key}")
    if not backoff.is_due():
        return 0
    stored: list[int] = []
    try:
        with box:
            _poll(ctx, box, stored, on_stored)
    except IMAP_ERRORS as exc:
        delay = backoff.failed()
        log.warning("cannot read the mailbox %s: %s; %s", box.key, str(exc) or type(exc).__name__,
                    backoff.describe(delay))
        return len(stored)
    backoff.succeeded()
    return len(stored)


def _poll(ctx: Context, box: ImapMailbox, stored: list[int], on_stored=None) -> None:
    batch_size = ctx.settings.email.fetch_batch
    cursor = _cursor(ctx, box)
    uids = box.uids_after(cursor.last_uid)
    for start in range(0, len(uids), batch_size):
        if ctx.stopping.is_set():
            break
        new_uids = _store_batch(ctx, box, uids[start:start + batch_size])
        stored += new_uids
        if new_uids and on_stored is not None:
            on_stored()
        _flag(ctx, box, new_uids, [STORED_KEYWORD], "imap_flagged")
    _sync_flags(ctx, box)


def _cursor(ctx: Context, box: ImapMailbox) -> MailboxCursor:
    state = box.state
    with ctx.db.transaction() as session:
        cursor = session.exec(select(MailboxCursor).where(MailboxCursor.mailbox == box.key)).first()
        if cursor is None:
            # First start: only mail newer than now (or the configured backlog) is answered.
            days = ctx.settings.email.answer_backlog_days
            since = utcnow() - timedelta(days=days)
            last_uid = max(state.uidnext - 1, 0)
            if days:
                found = box.uids_since(since.date())
                last_uid = min(found) - 1 if found else last_uid
            cursor = MailboxCursor(mailbox=box.key, uidvalidity=state.uidvalidity, last_uid=last_uid,
                                   since=since)
            session.add(cursor)
            log.info("watching %s from UID %d on (mail before %s is left alone)", box.key, last_uid + 1,
                     since.strftime("%Y-%m-%d %H:%M UTC"))
        elif cursor.uidvalidity != state.uidvalidity:
            # RFC 3501 §2.3.1.1: old UIDs mean nothing now. Re-read everything; Message-IDs
            # already stored and mail older than the cut-off are skipped, so nothing is re-answered.
            log.warning("UIDVALIDITY of %s changed (%d -> %d): full resync", box.key, cursor.uidvalidity,
                        state.uidvalidity)
            cursor.uidvalidity, cursor.last_uid, cursor.updated_at = state.uidvalidity, 0, utcnow()
        return cursor


def _store_batch(ctx: Context, box: ImapMailbox, batch: list[int]) -> list[int]:
    mails = list(box.fetch(batch))
    stored: list[int] = []
    with ctx.db.transaction() as session:
        # Locked: should a poll lock's connection die mid-poll, a second poller waits here rather
        # than move the cursor back.
        cursor = session.exec(select(MailboxCursor).where(MailboxCursor.mailbox == box.key)
                              .with_for_update()).one()
        for mail in mails:
            if mail.internaldate and as_utc(mail.internaldate) < cursor.since - timedelta(minutes=1):
                continue  # older than the cut-off: reached only through a resync
            row = store_inbound_email(session=session, raw=mail.raw, mailbox=box.key,
                                      uidvalidity=box.state.uidvalidity, uid=mail.uid,
                                      received_at=mail.internaldate)
            if row is not None:
                stored.append(mail.uid)
        cursor.last_uid = max(cursor.last_uid, max(batch))
        cursor.updated_at = utcnow()
    if stored:
        log.info("stored %d new message(s) from %s", len(stored), box.key)
    return stored


def _flag(ctx: Context, box: ImapMailbox, uids: list[int], flags: list[bytes], column: str) -> None:
    """Set flags on the originals, then remember that they are set (rows are already committed)."""
    if not uids:
        return
    box.add_flags(uids, flags)
    with ctx.db.transaction() as session:
        rows = session.exec(select(Message).where(Message.mailbox == box.key,
                                                  Message.uidvalidity == box.state.uidvalidity,
                                                  col(Message.uid).in_(uids))).all()
        for row in rows:
            setattr(row, column, True)


def _sync_flags(ctx: Context, box: ImapMailbox) -> None:
    """Catch up flags a crash left unset, and mark ``\\Answered`` the originals that got their
    reply (not a holding note: a handed-off mail still waits for the owner's answer)."""
    with ctx.db.transaction() as session:
        base = select(Message.uid).where(Message.mailbox == box.key, Message.direction == "in",
                                         Message.uidvalidity == box.state.uidvalidity)
        unflagged = session.exec(base.where(Message.imap_flagged == False).limit(500)).all()  # noqa: E712
        answered = session.exec(
            base.join(Draft, Draft.message_id == Message.id).join(Outbox, Outbox.draft_id == Draft.id)
            .where(Message.imap_answered == False, Outbox.status == OutboxStatus.SENT,  # noqa: E712
                   Outbox.kind == OutboxKind.REPLY)  # a holding note or mail to the owner answers nothing
            .limit(500)).all()
    _flag(ctx, box, list(unflagged), [STORED_KEYWORD], "imap_flagged")
    _flag(ctx, box, list(answered), [ANSWERED], "imap_answered")


# --- process ----------------------------------------------------------------------------------

def process_pending(ctx: Context, limit: int = 100, on_routed: Callable[[str, str, str], None] | None = None) -> int:
    """Route stored messages one transaction each; failures are retried, then quarantined.

    Messages are taken in batches (``responder.ops.prepare``): a batch's questions are embedded in one
    model call, outside any transaction, and the next batch is prepared on another thread while
    this one is claimed and routed, message by message. ``on_routed(channel)`` is called after each
    message's transaction commits (the daemon sends a chat reply at once, not after the whole run)."""
    done = 0
    batch = prepare.upcoming(ctx, min(prepare.BATCH, limit))
    prepare.prepare_batch(ctx, batch)
    while batch and not ctx.stopping.is_set():
        following = prepare.ahead(ctx, batch[-1].id, min(prepare.BATCH, limit - done - len(batch)))
        for _ in batch:
            routed = None if ctx.stopping.is_set() else _process_next(ctx)
            if routed is None:
                return done
            done += 1
            if on_routed is not None:
                on_routed(*routed)
        batch = following.result()
    return done


def _process_next(ctx: Context) -> tuple[str, str, str] | None:
    """Claim the next stored message and route it in its own transaction; its (channel, sender,
    route), or None if none is left."""
    with ctx.db.transaction() as session:
        rows = claim(prepare.due(), session, 1)
        if not rows:
            return None
        message = rows[0]
        routed = (message.channel, message.sender or "", "")
        try:
            with session.begin_nested():
                draft = process_message(session=session, message=message, settings=ctx.settings,
                                        drafter=ctx.drafter, retriever=ctx.retriever, orders=ctx.orders)
            routed = (*routed[:2], draft.route if draft is not None else "")
        except Pending:
            # The shop's order API is slow: nothing of this attempt is kept (a burst it folded stays
            # unfolded); the message steps aside and the lookup's end brings it back.
            message.next_attempt_at = utcnow() + timedelta(seconds=STEP_ASIDE_S)
        except DatabaseUnavailable:
            raise  # not the message's fault: it stays received, no attempt counted
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.exception("processing message %s failed", message.id)
            _record_failure(session, message, error, ctx.settings.email.max_process_attempts)
    return routed


def _record_failure(session, message: Message, error: str, max_attempts: int) -> None:
    message.attempts += 1
    message.last_error = error[:2000]
    if message.attempts >= max_attempts:
        message.status = MessageStatus.QUARANTINED
        log.error("message %s quarantined after %d attempts: %s", message.id, message.attempts, error)
    else:
        message.next_attempt_at = utcnow() + PROCESS_BACKOFF[min(message.attempts - 1, 2)]
