"""Lessons from the owner's edits: each proposal as a diff, accepted or dismissed in one click.

Behind the owner's login (and, through ``decide_lesson``, behind the signed /l/ email links).
Accepting writes the addition into the knowledge folder (``responder.owner.lessons.accept``) and then
re-indexes, so the next draft already knows it; the request runs in FastAPI's threadpool, so the
re-embedding never blocks the event loop.
"""
from __future__ import annotations

import logging
from typing import Callable

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse
from sqlmodel import col, select
from starlette.requests import Request

from responder.core.models import Draft, Lesson, Message
from responder.owner import lessons
from responder.web.auth import require_owner
from responder.web.pages import WebState, diff_lines, flash, page
from responder.web.security import checked_form, is_local_path

log = logging.getLogger("deskhand.web")
router = APIRouter()


def decide_lesson(st: WebState, lesson_id: int, action: str, *, first: Callable | None = None) -> str:
    """Accept or dismiss in one transaction (``first(session)`` runs inside it, e.g. burning a
    single-use link); returns a sentence for the owner. Raises ``LessonError``."""
    with st.ctx.db.transaction() as session:
        if first is not None:
            first(session)
        if action == "accept":
            path = lessons.accept(session, st.ctx.settings, lesson_id)
        else:
            lessons.dismiss(session, lesson_id)
            return f"Lesson {lesson_id} dismissed; the knowledge folder is unchanged."
    try:
        st.ctx.retriever.refresh(force=True)
    except Exception as exc:
        log.exception("re-indexing after lesson %s failed", lesson_id)
        return (f"Added to {path.name}, but re-indexing failed ({exc}); the daemon picks the change up "
                "on its next knowledge check.")
    return f"Added to {path.name} and re-indexed: new drafts use it from now on."


def lesson_rows(session, found: list[Lesson]) -> list[dict]:
    rows = []
    for lesson in found:
        draft = session.get(Draft, lesson.draft_id)
        message = session.get(Message, draft.message_id) if draft else None
        rows.append(dict(lesson=lesson, diff=diff_lines(lesson.diff), thread_id=draft.thread_id if draft else None,
                         question=(message.new_text or message.text)[:300] if message else ""))
    return rows


@router.get("/lessons")
def lesson_list(request: Request, st: WebState = Depends(require_owner)):
    with st.ctx.db.transaction() as session:
        waiting = lesson_rows(session, lessons.proposed(session, limit=100))
        decided = lesson_rows(session, list(session.exec(
            select(Lesson).where(Lesson.status != "proposed").order_by(col(Lesson.id).desc()).limit(20)).all()))
    return page(request, "lessons.html.j2", waiting=waiting, decided=decided)


def _decide(request: Request, st: WebState, lesson_id: int, action: str, form) -> RedirectResponse:
    try:
        flash(request, decide_lesson(st, lesson_id, action))
    except lessons.LessonError as exc:
        flash(request, str(exc))
    back = str(form.get("back") or "/lessons")
    return RedirectResponse(back if is_local_path(back) else "/lessons", status_code=303)


@router.post("/lessons/{lesson_id}/accept")
def accept(request: Request, lesson_id: int, st: WebState = Depends(require_owner), form=Depends(checked_form)):
    return _decide(request, st, lesson_id, "accept", form)


@router.post("/lessons/{lesson_id}/dismiss")
def dismiss(request: Request, lesson_id: int, st: WebState = Depends(require_owner), form=Depends(checked_form)):
    return _decide(request, st, lesson_id, "dismiss", form)
