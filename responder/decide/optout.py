"""Opt-out and HELP for text messages: STOP, START, HELP, and photos without words.

Runs in the pipeline for SMS and WhatsApp, right after the customer and thread are resolved and
before bursts, signals and drafting (a STOP inside a flood is honoured at once). ``route_for``
answers like a routing rule: a ``Decision`` with a plain-words reason, or None to go on as usual.

- STOP (and Twilio's other opt-out words) marks the number opted out: ``Identity.opted_out_at``.
  Nothing is ever sent to it again; Twilio itself sends the carrier-required confirmation on
  long codes, so we send nothing. START/UNSTOP clear it; YES does only when the number is opted
  out (otherwise "yes" is an answer to a question and is drafted as usual).
- Any other message from an opted-out number goes to the owner: it can't be answered by text.
- HELP/INFO gets ``[twilio] help_text`` as an automatic reply (no drafter), once a day per thread.
- A photo or file without text goes to review: the drafter can't see media.

Keywords are Twilio's defaults for long codes (Advanced Opt-Out docs): the whole message, any
case, surrounding punctuation ignored ("Stop.", "opt-out"); "stop sending me ads" is a sentence,
not a keyword, and is drafted (and will likely go to the owner) like any message.
"""
from __future__ import annotations

import re
from datetime import timedelta

from sqlmodel import Session, col, select

from responder.core.clock import utcnow
from responder.core.models import Draft, DraftStatus, Route
from responder.core.settings import Settings
from responder.decide.routing import Decision
from responder.draft.base import DraftResult
from responder.knowledge.retrieve import Hit
from responder.understand.customers import apply, phone_identity

OPT_OUT = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
OPT_IN = {"start", "unstop", "yes"}
HELP = {"help", "info"}
ONLY_WHEN_OPTED_OUT = {"yes"}
HELP_BACKEND = "keyword:help"
HELP_EVERY = timedelta(days=1)

STOP_REASON = "the customer opted out (STOP): nothing more is sent to this number"
START_REASON = "the customer opted back in (START)"
OPTED_OUT_REASON = ("this number opted out (STOP): nothing can be sent to it by text until the customer "
                    "texts START; reach them another way if it needs an answer")
HELP_AGAIN_REASON = "HELP again: the help text was already sent to this number today"


def _word(text: str) -> str:
    text = (text or "").strip()
    return re.sub(r"[\W_]+", "", text.lower()) if len(text) <= 20 else ""


def keyword(text: str) -> str | None:
    """"stop", "start" or "help" when the whole message is one of those keywords, else None."""
    word = _word(text)
    if word in OPT_OUT:
        return "stop"
    if word in OPT_IN:
        return "start"
    if word in HELP:
        return "help"
    return None


def help_text(settings: Settings) -> str:
    return settings.twilio.help_text.replace("{store}", settings.store.name).strip()


def help_sent_recently(session: Session, thread_id: int) -> bool:
    since = utcnow() - HELP_EVERY
    return session.exec(select(Draft.id).where(Draft.thread_id == thread_id, Draft.backend == HELP_BACKEND,
                                               Draft.route == Route.AUTO, col(Draft.created_at) >= since)
                        ).first() is not None


def held_opted_out(session: Session, thread_id: int) -> bool:
    drafts = session.exec(select(Draft).where(Draft.thread_id == thread_id, Draft.status == DraftStatus.PENDING,
                                              Draft.route == Route.REVIEW)).all()
    return any(OPTED_OUT_REASON in (d.reasons or []) for d in drafts)


def route_for(work, session: Session, settings: Settings) -> Decision | None:
    """The decision for a keyword, an opted-out number or a photo without text; None otherwise.
    ``work`` is the pipeline's record after ``resolve`` (sender is E.164)."""
    word = keyword(work.text)
    identity = phone_identity(session, work.sender)
    opted_out = identity is not None and identity.opted_out_at is not None
    if word == "stop":
        if identity is not None:
            apply(session, identity, "stop")
        return Decision(Route.IGNORE, [STOP_REASON])
    if word == "start" and (opted_out or _word(work.text) not in ONLY_WHEN_OPTED_OUT):
        if identity is not None:
            apply(session, identity, "start")
        return Decision(Route.IGNORE, [START_REASON])
    if opted_out:
        # One held message at a time: a flood from an opted-out number is not a flood of notices.
        if held_opted_out(session, work.thread.id):
            return Decision(Route.IGNORE, [OPTED_OUT_REASON + " (an earlier message of theirs is already held)"])
        return Decision(Route.REVIEW, [OPTED_OUT_REASON])
    if word == "help":
        if help_sent_recently(session, work.thread.id):
            return Decision(Route.IGNORE, [HELP_AGAIN_REASON])
        text = help_text(settings)
        # The reply comes from the setting, not the knowledge: say so, so it is not counted as
        # a question the knowledge had no answer for.
        work.hits = [Hit(source="[twilio] help_text", kind="setting", title="help text", text=text, score=1.0)]
        work.draft = DraftResult(reply=text, confidence=1.0, sources=["[twilio] help_text"], backend=HELP_BACKEND)
        return Decision(Route.AUTO)
    media = work.message.attachments or []
    if media and not work.text.strip():
        return Decision(Route.REVIEW, [f"a photo or file without text: please look ({len(media)} attachment(s))"])
    return None
