"""Feedback: a customer's thumbs up or down on an automatic reply.

Runs in the web page behind the links that ``outcome.enqueue_reply`` puts under automatic email
replies (``links.feedback_link``). One vote per draft, the last one counts; a thumbs-down with
its optional line of why is shown to the owner in the digest until it is marked seen. The
thumbs-down rate is computed from these rows (``responder.owner.metrics``).
"""
from __future__ import annotations

from sqlmodel import Session, col, select

from responder.core.clock import utcnow
from responder.core.models import Draft, Feedback, Route

VOTES = ("up", "down")


class FeedbackError(Exception):
    pass


def record_vote(session: Session, draft_id: int, vote: str, comment: str = "") -> Feedback:
    if vote not in VOTES:
        raise FeedbackError("A vote is up or down.")
    draft = session.get(Draft, draft_id)
    if draft is None or draft.route != Route.AUTO:
        raise FeedbackError("This answer can't take feedback.")
    row = session.exec(select(Feedback).where(Feedback.draft_id == draft_id)).first()
    if row is None:
        row = Feedback(draft_id=draft_id, thread_id=draft.thread_id, vote=vote)
        session.add(row)
    row.vote, row.created_at, row.seen_at = vote, utcnow(), None
    row.comment = " ".join(comment.split())[:500] if vote == "down" else ""
    session.flush()
    return row


def unseen_thumbs_down(session: Session, limit: int = 50) -> list[Feedback]:
    return list(session.exec(select(Feedback).where(Feedback.vote == "down", col(Feedback.seen_at).is_(None))
                             .order_by(col(Feedback.created_at)).limit(limit)).all())


def mark_seen(session: Session, feedback_ids: list[int]) -> None:
    for row in session.exec(select(Feedback).where(col(Feedback.id).in_(feedback_ids))).all():
        row.seen_at = utcnow()
