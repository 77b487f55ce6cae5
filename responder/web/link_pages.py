"""The pages behind one-click links in emails: /a (a held draft), /f (feedback), /l (a lesson).

No login: the signed token is the proof (``responder.owner.links``). A GET only ever shows a page with
one button, because mail clients' link scanners open every link; the POST does the work. Draft
and lesson links work once: the nonce is burned (``links.use_once``) in the same transaction as
the action, so when the action is refused (the customer wrote again, the draft was already
handled) everything rolls back and the link still works; a lesson's nonce is burned before the
knowledge file is written, so a double click can't write it twice. Feedback links are signed and expire
but may be used again: a customer may change their vote. A bad link gets a clear page and
nothing happens: 400 for a changed link, 410 for an expired or used one.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData

from responder.core.models import Draft, DraftStatus, Lesson, Message
from responder.owner import approvals, feedback, lessons, links
from responder.web.lesson_pages import decide_lesson
from responder.web.owner_pages import customer_label
from responder.web.pages import WebState, clear_page, diff_lines, page, state
from responder.web.security import form_text, posted_form

router = APIRouter()
ACTOR = "owner (email link)"
ACTIONS = {"draft": ("approve", "edit", "reject"), "lesson": ("accept", "dismiss"), "feedback": ("up", "down")}
DONE_WORDS = {DraftStatus.APPROVED: "approved and is being sent", DraftStatus.SENT: "approved and sent",
              DraftStatus.REJECTED: "rejected", DraftStatus.EXPIRED: "expired without being sent",
              DraftStatus.CLOSED: "closed", DraftStatus.QUEUED: "answered automatically"}


class Refused(Exception):
    def __init__(self, title: str, message: str, status: int):
        super().__init__(message)
        self.title, self.status = title, status


def _verified(st: WebState, purpose: str, token: str) -> dict:
    try:
        data = links.verify(st.ctx.settings, purpose, token, max_age_s=links.ttl_s(st.ctx.settings, purpose))
    except links.LinkError as exc:
        raise Refused("Link not valid" if exc.reason == "tampered" else "Link expired", str(exc),
                      400 if exc.reason == "tampered" else 410) from None
    key = "v" if purpose == "feedback" else "a"
    if data.get(key) not in ACTIONS[purpose] or not isinstance(data.get("l" if purpose == "lesson" else "d"), int):
        raise Refused("Link not valid", links.LinkError("wrong").args[0], 400)
    return data


def _refused(request: Request, exc: Refused, public: bool = False):
    return clear_page(request, exc.title, str(exc), status=exc.status, public=public)


def _used_page(request: Request):
    return clear_page(request, "Link already used", links.LinkError("used").args[0], status=410)


# --- /a: approve, edit or reject a held draft --------------------------------------------

def _draft_page(request: Request, st: WebState, data: dict, *, status: int = 200, warning: str = "",
                text: str | None = None):
    with st.ctx.db.transaction() as session:
        if links.is_used(session, data):
            return _used_page(request)
        draft = session.get(Draft, data["d"])
        if not links.is_for(data, draft) or draft.route not in approvals.HELD:
            return clear_page(request, "No such draft", "The draft this link points to no longer exists. "
                              "Nothing was done.", status=404)
        if draft.status != DraftStatus.PENDING:
            who = f" by {draft.decided_by}" if draft.decided_by else ""
            return clear_page(request, "Already handled", f"This draft was already "
                              f"{DONE_WORDS.get(draft.status, draft.status)}{who}. Nothing more was done.",
                              status=409)
        message = session.get(Message, draft.message_id)
        newer = approvals.newer_messages(session, draft)
        customer = customer_label(session, message)
    return page(request, "link_draft.html.j2", status=status, action=data["a"], draft=draft, message=message,
                customer=customer, newer=newer, warning=warning, reply=text if text is not None else draft.text)


@router.get("/a/{token}")
def draft_link(request: Request, token: str):
    st = state(request)
    try:
        return _draft_page(request, st, _verified(st, "draft", token))
    except Refused as exc:
        return _refused(request, exc)


@router.post("/a/{token}")
def act_on_draft(request: Request, token: str, form: FormData = Depends(posted_form)):
    st = state(request)
    try:
        data = _verified(st, "draft", token)
    except Refused as exc:
        return _refused(request, exc)
    action, force = data["a"], form.get("force") == "1"
    text = form_text(form, "text") if action == "edit" else None
    try:
        with st.ctx.db.transaction() as session:
            if links.is_used(session, data):
                raise links.LinkError("used")
            if not links.is_for(data, session.get(Draft, data["d"])):
                raise approvals.ApprovalError("The draft this link points to no longer exists. Nothing was done.")
            if action == "reject":
                approvals.reject(session, data["d"], actor=ACTOR, reason=form_text(form, "reason", 2000))
            else:
                approvals.approve(session, st.ctx.settings, data["d"], actor=ACTOR, text=text, force=force)
            # Burned last, in the same transaction: a refused action (the customer wrote again, the
            # draft was handled elsewhere) leaves the link usable, and of two concurrent clicks the
            # second fails here and rolls back whole.
            links.use_once(session, data, "draft")
    except links.LinkError:
        return _used_page(request)
    except approvals.ThreadMovedOn as exc:
        return _draft_page(request, st, data, status=409, warning=str(exc), text=text)
    except approvals.ApprovalError as exc:  # the page says what happened to the draft, or why not
        return _draft_page(request, st, data, status=409, warning=str(exc), text=text)
    if action == "reject":
        return clear_page(request, "Rejected", "The draft was rejected. Nothing was sent to the customer.")
    st.kick_outbox()
    return clear_page(request, "Approved", "Approved: the reply is queued and will be sent within a minute.",
                      link=("/queue", "Open the queue"))


# --- /f: did this answer your question? (customers) ---------------------------------------

@router.get("/f/{token}")
def feedback_link(request: Request, token: str):
    st = state(request)
    try:
        data = _verified(st, "feedback", token)
    except Refused as exc:
        return _refused(request, exc, public=True)
    return page(request, "link_feedback.html.j2", public=True, vote=data["v"], done=False)


@router.post("/f/{token}")
def record_feedback(request: Request, token: str, form: FormData = Depends(posted_form)):
    st = state(request)
    try:
        data = _verified(st, "feedback", token)
    except Refused as exc:
        return _refused(request, exc, public=True)
    vote = form.get("vote") if form.get("vote") in ("up", "down") else data["v"]
    try:
        with st.ctx.db.transaction() as session:
            if not links.is_for(data, session.get(Draft, data["d"])):
                raise feedback.FeedbackError("This reply no longer exists.")
            feedback.record_vote(session, data["d"], vote, form_text(form, "comment", 500))
    except feedback.FeedbackError as exc:
        return clear_page(request, "Feedback not recorded", str(exc), status=400, public=True)
    return page(request, "link_feedback.html.j2", public=True, vote=vote, done=True)


# --- /l: accept or dismiss a lesson (the owner, from the digest) -----------------------------

@router.get("/l/{token}")
def lesson_link(request: Request, token: str):
    st = state(request)
    try:
        data = _verified(st, "lesson", token)
    except Refused as exc:
        return _refused(request, exc)
    with st.ctx.db.transaction() as session:
        if links.is_used(session, data):
            return _used_page(request)
        lesson = session.get(Lesson, data["l"])
    if lesson is None:
        return clear_page(request, "No such lesson", "This lesson no longer exists. Nothing was done.", status=404)
    if lesson.status != "proposed":
        return clear_page(request, "Already decided", f"This lesson was already {lesson.status}. Nothing more was done.",
                          status=409)
    return page(request, "link_lesson.html.j2", lesson=lesson, diff=diff_lines(lesson.diff), action=data["a"])


@router.post("/l/{token}")
def decide_lesson_link(request: Request, token: str):
    st = state(request)
    try:
        data = _verified(st, "lesson", token)
        outcome = decide_lesson(st, data["l"], data["a"], first=lambda session: links.use_once(session, data, "lesson"))
    except Refused as exc:
        return _refused(request, exc)
    except links.LinkError:
        return _used_page(request)
    except lessons.LessonError as exc:
        return clear_page(request, "Nothing done", str(exc), status=409)
    return clear_page(request, "Done", outcome)
