"""The approval queue in the browser: held drafts, one draft with its thread, approve / reject.

Behind the owner's login. Every action calls ``responder.owner.approvals`` in one transaction, so the
rules (pending only, thread moved on, edit kept beside the draft, audit event) live once.
Approving never sends inside the request: the reply goes to the outbox and ``on_outbox`` wakes
the daemon's send worker. When the customer wrote again after the draft, the page comes back
with a warning and a "send anyway" box instead of sending.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse
from sqlmodel import col, select
from starlette.requests import Request

from responder.core.models import (
    Customer,
    Draft,
    Lesson,
    Message,
    Outbox,
    OutboxStatus,
    Thread,
)
from responder.owner import approvals, feedback
from responder.web.auth import require_owner
from responder.web.pages import WebState, clear_page, diff_lines, flash, page
from responder.web.security import checked_form, form_text

router = APIRouter()
ACTOR = "owner (web)"


def customer_label(session, message: Message) -> str:
    customer = session.get(Customer, message.customer_id) if message.customer_id else None
    name = customer.name if customer and customer.name else ""
    return f"{name} <{message.sender}>" if name and message.sender else name or message.sender or "unknown"


def thread_messages(session, thread_id: int | None, fallback: Message) -> list[Message]:
    if thread_id is None:
        return [fallback]
    return list(session.exec(select(Message).where(Message.thread_id == thread_id)
                             .order_by(col(Message.received_at), col(Message.id))).all())


def unsent_replies(session, thread_id: int | None) -> list[Outbox]:
    """Replies of this thread still on their way (or stuck): not yet in the thread's history."""
    if thread_id is None:
        return []
    return list(session.exec(select(Outbox).where(Outbox.thread_id == thread_id,
                                                  Outbox.status != OutboxStatus.SENT)
                             .order_by(col(Outbox.id))).all())


def draft_details(session, draft: Draft) -> dict:
    """Everything the draft page shows, read in the request's one transaction."""
    message = session.get(Message, draft.message_id)
    thread = session.get(Thread, draft.thread_id) if draft.thread_id else None
    lesson = session.exec(select(Lesson).where(Lesson.draft_id == draft.id)).first()
    return dict(draft=draft, message=message, thread=thread, customer=customer_label(session, message),
                history=thread_messages(session, draft.thread_id, message),
                unsent=unsent_replies(session, draft.thread_id), events=approvals.events(session, draft.id),
                newer=approvals.newer_messages(session, draft), lesson=lesson,
                lesson_diff=diff_lines(lesson.diff) if lesson else [])


@router.get("/queue")
def queue(request: Request, st: WebState = Depends(require_owner)):
    with st.ctx.db.transaction() as session:
        rows = []
        for draft in approvals.pending(session):
            message = session.get(Message, draft.message_id)
            thread = session.get(Thread, draft.thread_id) if draft.thread_id else None
            rows.append(dict(draft=draft, customer=customer_label(session, message),
                             subject=(thread.subject if thread else message.subject) or "(no subject)",
                             text=(message.new_text or message.text)[:600]))
        thumbs = []
        for vote in feedback.unseen_thumbs_down(session):
            draft = session.get(Draft, vote.draft_id)
            message = session.get(Message, draft.message_id)
            thumbs.append(dict(vote=vote, customer=customer_label(session, message),
                               question=(message.new_text or message.text)[:300]))
        lessons_waiting = session.exec(select(Lesson.id).where(Lesson.status == "proposed")).all()
    return page(request, "queue.html.j2", rows=rows, thumbs=thumbs, lessons_waiting=len(lessons_waiting))


def draft_page(request: Request, st: WebState, draft_id: int, *, status: int = 200, warning: str = "",
               error: str = "", text: str | None = None, moved_on: bool = False):
    with st.ctx.db.transaction() as session:
        try:
            draft = approvals.get(session, draft_id)
        except approvals.ApprovalError as exc:
            return clear_page(request, "No such draft", str(exc), status=404, link=("/queue", "Back to the queue"))
        details = draft_details(session, draft)
    reply = text if text is not None else draft.sent_text or draft.text
    return page(request, "draft.html.j2", status=status, warning=warning, error=error, reply=reply,
                moved_on=moved_on or bool(details["newer"]), **details)


@router.get("/queue/{draft_id}")
def show_draft(request: Request, draft_id: int, st: WebState = Depends(require_owner)):
    return draft_page(request, st, draft_id)


@router.post("/queue/{draft_id}/approve")
def approve(request: Request, draft_id: int, st: WebState = Depends(require_owner), form=Depends(checked_form)):
    text = form_text(form, "text")
    force = form.get("force") == "1"
    try:
        with st.ctx.db.transaction() as session:
            draft = approvals.approve(session, st.ctx.settings, draft_id, actor=ACTOR, text=text, force=force)
            edited = draft.edited
    except approvals.ThreadMovedOn as exc:
        return draft_page(request, st, draft_id, status=409, warning=str(exc), text=text, moved_on=True)
    except approvals.ApprovalError as exc:
        return draft_page(request, st, draft_id, status=409, error=str(exc), text=text)
    st.kick_outbox()
    flash(request, f"Draft {draft_id} approved{' with your edits' if edited else ''}: "
                   "the reply is queued and goes out within a minute.")
    return RedirectResponse("/queue", status_code=303)


@router.post("/queue/{draft_id}/reject")
def reject(request: Request, draft_id: int, st: WebState = Depends(require_owner), form=Depends(checked_form)):
    try:
        with st.ctx.db.transaction() as session:
            approvals.reject(session, draft_id, actor=ACTOR, reason=form_text(form, "reason", 2000))
    except approvals.ApprovalError as exc:
        return draft_page(request, st, draft_id, status=409, error=str(exc))
    flash(request, f"Draft {draft_id} rejected: nothing was sent.")
    return RedirectResponse("/queue", status_code=303)


@router.post("/feedback/seen")
def feedback_seen(request: Request, st: WebState = Depends(require_owner), form=Depends(checked_form)):
    ids = [int(v) for v in form.getlist("id") if isinstance(v, str) and v.isdigit()]
    with st.ctx.db.transaction() as session:
        feedback.mark_seen(session, ids)
    flash(request, "Marked as seen.")
    return RedirectResponse("/queue", status_code=303)
