"""Prepare: the process job's batch step, before each message gets its own transaction.

What is cheaper done for many messages at once, and needs no lock, is done here for the next
batch of stored messages: each is parsed (``normalize``, pure) to find its question, and all
the questions are embedded in one model call and their full-text searches started
(``Retriever.prepare``). The per-message pipeline then finds its vectors ready. Nothing here
writes: a message that fails to parse is skipped, and its own transaction meets the same error
and records it; a message another daemon claims meanwhile only costs its vectors.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from sqlmodel import col, or_, select

from responder.core.clock import utcnow
from responder.core.models import Message, MessageStatus
from responder.core.settings import Settings
from responder.ops.context import Context
from responder.pipeline import MAX_DRAFT_INPUT, Work, question_of
from responder.understand.normalize import normalize
from responder.understand.signals import paste_start

log = logging.getLogger("deskhand.prepare")
BATCH = 32  # MiniLM's cost per question stops falling around here on two cores


_AHEAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")


def due():
    """Stored inbound messages waiting to be routed (retries once their wait is over), oldest
    first: what the process job claims, and so what is prepared for it."""
    return select(Message).where(
        Message.direction == "in", Message.status == MessageStatus.RECEIVED,
        or_(col(Message.next_attempt_at).is_(None), Message.next_attempt_at <= utcnow())).order_by(col(Message.id))


def upcoming(ctx: Context, limit: int = BATCH, after: int = 0) -> list[Message]:
    """The next stored messages the process job will claim, in its order (read, not locked)."""
    if limit <= 0:
        return []
    with ctx.db.read() as session:
        return list(session.exec(due().where(Message.id > after).limit(limit)).all())


def ahead(ctx: Context, after: int, limit: int) -> Future:
    """The batch after ``after``, read and prepared on another thread while this one is routed:
    the model runs in onnxruntime (no GIL) on the second core while the pipeline runs in Python."""
    def next_batch() -> list[Message]:
        batch = upcoming(ctx, limit, after)
        prepare_batch(ctx, batch)
        return batch
    return _AHEAD.submit(next_batch)


def questions(messages: list[Message], settings: Settings) -> list[str]:
    """What retrieval will be asked for each message a customer wrote (automated mail is never
    searched)."""
    found = []
    for message in messages:
        work = Work(message=message)
        try:
            normalize(work, settings)  # on a detached copy: nothing is written
        except Exception:  # the message's own transaction records why
            continue
        if work.automated or not (work.text or work.subject):
            continue
        if (start := paste_start(work.text)) is not None:  # as the pipeline's compute step does
            work.text = work.text[:start].strip() or work.text
        found.append(question_of(work)[:MAX_DRAFT_INPUT])
    return found


def prepare_batch(ctx: Context, messages: list[Message]) -> None:
    if len(messages) < 2 or not hasattr(ctx.retriever, "prepare"):
        return  # one message gains nothing from a batch
    try:
        ctx.retriever.prepare(questions(messages, ctx.settings))
    except Exception:  # an optimisation only: each message embeds its own question instead
        log.exception("preparing a batch of %d messages failed", len(messages))
