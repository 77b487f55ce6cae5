"""The one way a reply to a customer's message becomes an outbox row, whoever wrote it.

Runs when the pipeline sends an automatic reply or a holding note (``outcome.enqueue_reply``)
and when the owner approves a held draft from any place (``approvals.enqueue_reply``: the queue,
the web pages, a one-click link, a reply to the digest). An email reply gets the subject
"Re: …", the greeting and signature (``templates/email/reply.txt.j2``) and threading headers
(In-Reply-To, References); a text is the words alone. The send job delivers it.
"""
from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from channels.email.compose import (
    new_message_id,
    references_for,
    render_body,
    reply_subject,
)
from responder.core.models import Draft, Outbox, OutboxKind
from responder.core.settings import Settings
from responder.send import outbox


def enqueue_reply(session: Session, settings: Settings, *, draft: Draft, channel: str, recipient: str,
                  thread_id: int | None, text: str, customer_name: str = "", subject: str = "",
                  parent: str | None = None, references: Sequence[str] = (), kind: str = OutboxKind.REPLY,
                  automatic: bool = True, feedback: dict | None = None) -> Outbox:
    """Queue ``text`` as the reply to the message ``parent`` (its Message-ID; None for texts and
    for mail that had none), in the draft's thread."""
    common = dict(session=session, draft_id=draft.id, thread_id=thread_id, channel=channel, recipient=recipient,
                  kind=kind, automatic=automatic, message_id=new_message_id(settings.reply_address))
    if channel != "email":  # a text message: the reply alone, no greeting or signature
        return outbox.enqueue(subject="", body_text=text, **common)
    return outbox.enqueue(subject=reply_subject(subject),
                          body_text=render_body(body=text, customer_name=customer_name, store=settings.store,
                                                signed_by_owner=kind != OutboxKind.HOLDING),
                          in_reply_to=parent, references=references_for(parent, list(references)),
                          extra={"feedback": feedback} if feedback else None, **common)
