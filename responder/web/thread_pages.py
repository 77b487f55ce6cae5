"""Conversations: every thread as the customer and the shop saw it, with what the bot decided.

Behind the owner's login; read-only. Each customer message is shown with its draft's route,
reasons, status and the customer's thumbs up or down, so the owner can see why a thread went
the way it did; replies still on their way (or failed) are listed apart from the ones sent.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlmodel import col, func, select
from starlette.requests import Request

from responder.core.models import Customer, Draft, Feedback, Message, Thread
from responder.web.auth import require_owner
from responder.web.owner_pages import customer_label, thread_messages, unsent_replies
from responder.web.pages import WebState, clear_page, page

router = APIRouter()


@router.get("/conversations")
def conversations(request: Request, limit: int = 50, st: WebState = Depends(require_owner)):
    limit = max(1, min(limit, 500))
    with st.ctx.db.transaction() as session:
        threads = session.exec(select(Thread).order_by(col(Thread.updated_at).desc(), col(Thread.id).desc())
                               .limit(limit)).all()
        rows = []
        for thread in threads:
            customer = session.get(Customer, thread.customer_id)
            count = session.exec(select(func.count()).select_from(Message)
                                 .where(Message.thread_id == thread.id)).one()
            latest = session.exec(select(Draft).where(Draft.thread_id == thread.id)
                                  .order_by(col(Draft.id).desc())).first()
            rows.append(dict(thread=thread, customer=customer.name if customer else "", messages=count,
                             latest=latest))
    return page(request, "conversations.html.j2", rows=rows)


@router.get("/conversations/{thread_id}")
def conversation(request: Request, thread_id: int, st: WebState = Depends(require_owner)):
    with st.ctx.db.transaction() as session:
        thread = session.get(Thread, thread_id)
        if thread is None:
            return clear_page(request, "No such conversation", f"There is no conversation {thread_id}.",
                              status=404, link=("/conversations", "All conversations"))
        history = thread_messages(session, thread.id, None)
        drafts = {d.message_id: d for d in session.exec(select(Draft).where(Draft.thread_id == thread.id)).all()}
        votes = {f.draft_id: f for f in session.exec(select(Feedback).where(Feedback.thread_id == thread.id)).all()}
        first_in = next((m for m in history if m.direction == "in"), None)
        customer = customer_label(session, first_in) if first_in else ""
        unsent = unsent_replies(session, thread.id)
    return page(request, "conversation.html.j2", thread=thread, customer=customer, history=history,
                drafts=drafts, votes=votes, unsent=unsent)
