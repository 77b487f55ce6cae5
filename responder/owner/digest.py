"""The daily digest: one email that tells the owner everything waiting, and how yesterday went.

Runs once a day from the daemon's cron job (``digest_job``, at ``[digest] time`` in the shop's
timezone) and from ``python run.py digest --print | --send``. ``build`` only reads: the pending
drafts (handoffs first, numbered in the order stored in ``Digest.draft_ids`` so a reply can say
"approve 2"), sends that failed and messages that could not be processed (every day until the
owner deals with them: ``responder.owner.problems``), the last day's alerts (budget, caps, loop
breaker), thumbs-down not yet seen, yesterday's numbers with a 14-day
chart (an inline PNG: mail clients render neither SVG nor scripts), the questions the knowledge
had nothing for, and proposed knowledge additions. ``enqueue`` claims the shop-local day in the
``digest`` table (unique, so several daemons send at most one scheduled digest a day) and
writes the outbox row the send job delivers. A quiet day gets a two-line digest.
"""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from responder.core.clock import utcnow
from responder.core.models import (
    Digest,
    Draft,
    Message,
    Outbox,
    OutboxKind,
    Route,
    new_token,
)
from responder.core.settings import Settings
from responder.core.templating import render
from responder.decide import limits as cost_limits
from responder.owner import (
    approvals,
    charts,
    feedback,
    lessons,
    links,
    metrics,
    problems,
    report,
)
from responder.owner.owner_mail import clip, draft_view, local_time
from responder.send import outbox

log = logging.getLogger("deskhand.digest")
CHART_CID = "chart14"
MAX_DRAFTS = 15          # a longer queue is summarised; the rest are one command away
TEXT_LIMIT = 800         # characters of each message and draft (Gmail clips mail over ~100 KB)
LOOKBACK = timedelta(days=7)  # unanswered questions shown from this far back
REPLY_HINT = "Reply to this digest with 'approve 2' or 'reject 2', or use the links."


@dataclass
class DigestMail:
    subject: str
    text: str
    html: str
    png: bytes | None
    draft_ids: list[int]
    token: str
    day: date                      # the shop-local day it is for
    quiet: bool = False            # the two-line digest
    feedback_ids: list[int] = field(default_factory=list)  # thumbs-down shown (marked seen on enqueue)


def _day_label(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b}"


def build(session: Session, settings: Settings, *, now: datetime | None = None, token: str | None = None) -> DigestMail:
    """Render the digest from the rows as they are now; writes nothing."""
    now = now or utcnow()
    token = token or new_token()
    today = now.astimezone(settings.tz).date()
    yesterday = metrics.yesterday(settings, now)
    start, end = metrics.day_window(settings, yesterday)
    numbers = metrics.compute(session, start=start, end=end, settings=settings)

    held = approvals.pending(session)
    ordered = [d for d in held if d.route == Route.HANDOFF] + [d for d in held if d.route != Route.HANDOFF]
    views = [draft_view(session, settings, d, now=now, number=n, limit=TEXT_LIMIT)
             for n, d in enumerate(ordered[:MAX_DRAFTS], 1)]
    failed, quarantined, problems_more = _problems(session, settings)
    alerts = _alerts(session, settings, now)
    thumbs = _thumbs_down(session, settings)
    proposals = [_lesson_view(settings, lesson) for lesson in lessons.proposed(session)]
    quiet = not (held or failed or quarantined or alerts or thumbs or proposals or numbers.messages_in)

    png, unanswered = None, []
    if not quiet:
        png = _chart(session, settings, yesterday)
        unanswered = metrics.unanswered(session, start=now - LOOKBACK, end=now)
    values = dict(
        store=settings.store, base_url=settings.base_url, day=_day_label(today), yesterday=_day_label(yesterday),
        quiet=quiet, reply_hint=REPLY_HINT, handoffs=[v for v in views if v.route == Route.HANDOFF],
        reviews=[v for v in views if v.route != Route.HANDOFF], pending=len(held), more=len(held) - len(views),
        failed=failed, quarantined=quarantined, problems_more=problems_more, alerts=alerts, thumbs=thumbs, lessons=proposals, unanswered=unanswered, numbers=_numbers(numbers),
        messages_in=numbers.messages_in, chart_cid=CHART_CID if png else None)
    return DigestMail(subject=_subject(today, held, failed + quarantined, quiet, token),
                      text=render("digest/digest.txt.j2", **values).strip() + "\n",
                      html=render("digest/digest.html.j2", **values), png=png,
                      draft_ids=[v.id for v in views], token=token, day=today, quiet=quiet,
                      feedback_ids=[t["id"] for t in thumbs])


def _subject(today: date, held: list[Draft], failed: list[dict], quiet: bool, token: str) -> str:
    if quiet:
        return f"[Deskhand] All quiet, {_day_label(today)} [ref {token}]"
    handoffs = sum(d.route == Route.HANDOFF for d in held)
    parts = [f"{len(held)} waiting" + (f" ({handoffs} handed off)" if handoffs else "") if held else "nothing waiting"]
    sends = [f for f in failed if f["status"] != "quarantined"]
    if sends:
        parts.append(f"{len(sends)} failed send{'s' if len(sends) != 1 else ''}")
    if len(sends) < len(failed):
        parts.append(f"{len(failed) - len(sends)} message{'s' if len(failed) - len(sends) != 1 else ''} "
                     "that could not be processed")
    return f"[Deskhand] Digest {_day_label(today)}: {', '.join(parts)} [ref {token}]"


def _numbers(m) -> list[tuple[str, str]]:
    return [("Messages in", str(m.messages_in)), ("By channel", report.format_channels(m.by_channel)), ("Answered automatically", str(m.auto_replies)),
            ("Held for approval", str(m.held)), ("Handed off to you", str(m.handoffs)),
            ("Order questions", f"{m.order_questions} ({m.order_auto} answered automatically, {m.order_held} held)"),
            ("Median first response", report.format_duration(m.first_response_median_s)),
            ("Thumbs down", str(m.thumbs_down)), ("LLM spend", report.format_money(m.llm_cost))]


def _chart(session: Session, settings: Settings, until: date) -> bytes | None:
    try:
        return charts.png_chart(metrics.daily(session, settings=settings, days=14, until=until))
    except Exception:
        # A digest without its picture is better than no digest; the error is in the log.
        log.exception("the digest's chart could not be drawn; sending the digest without it")
        return None


def _problems(session: Session, settings: Settings) -> tuple[list[dict], list[dict], int]:
    """Failed or unknown sends and quarantined messages, shown every day until the owner deals
    with them (``responder.owner.problems``): nothing waits forever."""
    found, total = problems.open_problems(session)
    view = [{"id": p.id, "recipient": p.who, "subject": p.what, "channel": p.channel, "status": p.status,
             "kind": p.what, "when": local_time(settings, p.at), "error": p.error} for p in found]
    return [v for v, p in zip(view, found) if p.kind == "send"], \
        [v for v, p in zip(view, found) if p.kind == "message"], total - len(found)


def _alerts(session: Session, settings: Settings, now: datetime) -> list[dict]:
    return [{"kind": a.kind, "when": local_time(settings, a.created_at), "text": " ".join(a.detail.split())[:400]}
            for a in cost_limits.recent_alerts(session, since=now - timedelta(days=1))]


def _thumbs_down(session: Session, settings: Settings) -> list[dict]:
    shown = []
    for vote in feedback.unseen_thumbs_down(session):
        draft = session.get(Draft, vote.draft_id)
        message = session.get(Message, draft.message_id) if draft else None
        shown.append({"id": vote.id, "customer": message.sender if message else "",
                      "when": local_time(settings, vote.created_at), "comment": vote.comment,
                      "message": clip((message.new_text or message.text) if message else "", 1000),
                      "reply": clip((draft.sent_text or draft.text) if draft else "", 1000)})
    return shown


def _lesson_view(settings: Settings, lesson) -> dict:
    return {"id": lesson.id, "kind": "new FAQ entry" if lesson.kind == "faq" else "tone example",
            "path": lesson.path, "diff": clip(lesson.diff, 3000),
            "accept": links.lesson_link(settings, lesson.id, "accept"),
            "dismiss": links.lesson_link(settings, lesson.id, "dismiss")}


# --- writing it down and sending it -------------------------------------------------------------

def enqueue(session: Session, settings: Settings, *, now: datetime | None = None, force: bool = False) -> Outbox | None:
    """Today's digest into the outbox; None if there is no owner address or (unless ``force``)
    today's digest was already written, by this daemon or another one sharing the database."""
    if not settings.owner_address:
        log.info("no digest: [digest] to is not set")
        return None
    now = now or utcnow()
    day = now.astimezone(settings.tz).date().isoformat()
    digest = _claim_day(session, day, force)
    if digest is None:
        return None
    mail = build(session, settings, now=now, token=new_token())
    images = [{"cid": CHART_CID, "content_type": "image/png", "filename": "last-14-days.png",
               "data": base64.b64encode(mail.png).decode()}] if mail.png else []
    row = outbox.enqueue(session=session, draft_id=None, thread_id=None, channel="email", kind=OutboxKind.DIGEST,
                         recipient=settings.owner_address, subject=mail.subject, body_text=mail.text,
                         body_html=mail.html, message_id=outbox.owner_message_id(settings, "digest", mail.token),
                         automatic=False, extra={"auto_generated": True, "images": images})
    digest.token, digest.draft_ids, digest.outbox_id, digest.created_at = mail.token, mail.draft_ids, row.id, now
    feedback.mark_seen(session, mail.feedback_ids)
    session.flush()
    log.info("digest for %s queued for %s: %d draft(s) listed", day, settings.owner_address, len(mail.draft_ids))
    return row


def _claim_day(session: Session, day: str, force: bool) -> Digest | None:
    """Today's ``digest`` row, new; or the existing one when ``force``; else None."""
    existing = session.exec(select(Digest).where(Digest.day == day)).first()
    if existing is not None:
        return existing if force else None
    try:
        with session.begin_nested():
            claimed = Digest(day=day)
            session.add(claimed)
            session.flush()
        return claimed
    except IntegrityError:  # another daemon claimed the day between our look and our insert
        return session.exec(select(Digest).where(Digest.day == day)).first() if force else None


def digest_job(ctx) -> int:
    """The daemon's daily cron job: queue today's digest once. Returns 1 if it was queued."""
    if not ctx.settings.digest.enabled:
        return 0
    with ctx.db.transaction() as session:
        return int(enqueue(session, ctx.settings) is not None)
