"""Metrics: the owner's numbers, defined once here and computed from the stored rows.

Runs on the owner's side only: the digest (yesterday, and ``daily`` for its 14-day chart), the
dashboard and ``run.py stats`` all call ``compute`` / ``daily``. Nothing is kept as a separate
counter that could drift from the rows. Which rows belong to a window:

- a customer message, its route, its first response and its LLM cost: when the message
  *arrived* (a 23:50 message answered at 00:10 is the earlier day's);
- approvals, rejections and expiries: when the owner (or the expiry job) decided;
- thumbs up/down: when the vote was given; durable resolution: when the reply was sent.

Definitions, in the words the owner reads:
- messages in: inbound rows of any channel, except the owner's own mail (replies to
  notifications), also counted per channel (email, sms, whatsapp, chat); robot mail: of those,
  ignored as automated (``routing.is_automated``).
- needing a reply: routed auto | review | handoff (acknowledgements, robot mail and burst messages
  folded into another one are not).
- first response: from the message's arrival to the first reply (outbox kind "reply"; the holding
  note and the owner's own mail never count) sent in its thread after it; automatic or human by
  that reply's ``automatic`` flag.
- durable resolution: a reply with no further customer message in its thread within 7 days; an
  acknowledgement ("ok thanks", "👍": ``language.is_acknowledgement``) is not a reopen. Only
  replies whose 7 days are over count, so a window younger than a week has no value yet.
- handoff reasons: the first reason of each handoff, cut to its gist (``reason_gist``).
- order questions: messages needing a reply that asked about one particular order (the
  ``about_order`` signal) or were answered from an order's record (backend "orders"); of those,
  answered automatically and held (review or handoff).
- medians are ``statistics.median``; p90 is the nearest-rank percentile (a value that occurred).
"""
from __future__ import annotations

import math
import re
import statistics
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta

from rapidfuzz import fuzz, process
from sqlmodel import Session, col, func, select

from responder.core.clock import as_utc, utcnow
from responder.core.models import (
    Draft,
    DraftStatus,
    Feedback,
    Message,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Route,
)
from responder.core.settings import Settings
from responder.understand.language import is_acknowledgement

NEEDING = (Route.AUTO, Route.REVIEW, Route.HANDOFF)
HELD = (Route.REVIEW, Route.HANDOFF)
REOPEN_WINDOW = timedelta(days=7)
ROBOT_PREFIX = "automated mail"   # how routing.is_automated words its reason
SIMILAR = 80                      # rapidfuzz token_set_ratio at which two questions are one


@dataclass
class Metrics:
    """One window [start, end); field meanings in the module docstring."""
    start: datetime
    end: datetime
    messages_in: int = 0
    robot_mail: int = 0
    needing_reply: int = 0
    auto_replies: int = 0
    held: int = 0
    handoffs: int = 0
    auto_rate: float | None = None
    handoff_rate: float | None = None
    handoffs_by_reason: dict[str, int] = field(default_factory=dict)
    durable_resolution: float | None = None
    first_response_auto_median_s: float | None = None
    first_response_auto_p90_s: float | None = None
    first_response_human_median_s: float | None = None
    first_response_human_p90_s: float | None = None
    first_response_median_s: float | None = None
    approval_latency_median_s: float | None = None
    approved: int = 0
    rejected: int = 0
    expired: int = 0
    edited_share: float | None = None
    thumbs_up: int = 0
    thumbs_down: int = 0
    thumbs_down_rate: float | None = None
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0
    llm_cost: float = 0.0
    pending_now: int = 0
    failed_sends: int = 0
    order_questions: int = 0
    order_auto: int = 0
    order_held: int = 0
    order_share: float | None = None        # of the messages needing a reply
    order_auto_rate: float | None = None    # of the order questions
    by_channel: dict[str, int] = field(default_factory=dict)  # messages in per channel, most first

    def to_dict(self) -> dict:
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        return out


@dataclass
class DayMetrics:
    """One day in the shop's timezone (the digest's chart, the dashboard's trends)."""
    day: date
    messages_in: int = 0
    auto_replies: int = 0
    held: int = 0
    handoffs: int = 0
    auto_rate: float | None = None
    handoff_rate: float | None = None
    handoffs_by_reason: dict[str, int] = field(default_factory=dict)
    first_response_median_s: float | None = None
    thumbs_down: int = 0
    thumbs_down_rate: float | None = None
    llm_cost: float = 0.0


@dataclass
class _Tally:
    """What one bucket of rows adds up to; shared by ``compute`` (one bucket) and ``daily``."""
    messages_in: int = 0
    robot_mail: int = 0
    routes: Counter = field(default_factory=Counter)
    by_reason: Counter = field(default_factory=Counter)
    responses: dict = field(default_factory=lambda: {True: [], False: []})  # automatic? -> seconds
    votes: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    orders: Counter = field(default_factory=Counter)   # route -> order questions
    channels: Counter = field(default_factory=Counter)  # channel -> messages in

    def rate(self, route: str) -> float | None:
        return _share(self.routes[route], sum(self.routes[r] for r in NEEDING))


# --- pure helpers --------------------------------------------------------------------------

_DETAIL = re.compile(r"[:(;]")
_FIGURE = re.compile(r"\d+(?:[.,]\d+)*")


def reason_gist(reason: str) -> str:
    """The kind of a reason, without its details, so one kind is one group:
    "price $19 not in catalog (Amber Noir is $48)" -> "price $N not in catalog",
    "the customer is frustrated: ALL CAPS" -> "the customer is frustrated"."""
    gist = _FIGURE.sub("N", _DETAIL.split(reason or "", maxsplit=1)[0]).strip(" .,-")
    return gist or "no reason recorded"


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[math.ceil(0.9 * len(ordered)) - 1])  # nearest rank


def _local_day(at: datetime, tz) -> date:
    return as_utc(at).astimezone(tz).date()


def day_window(settings: Settings, day: date) -> tuple[datetime, datetime]:
    """Aware UTC bounds of a shop-local day (23 or 25 hours long on a DST change)."""
    tz = settings.tz
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return as_utc(start), as_utc(end)


def yesterday(settings: Settings, now: datetime | None = None) -> date:
    return _local_day(now or utcnow(), settings.tz) - timedelta(days=1)


# --- reading the rows (each query runs once per window, never once per day) ---------------

def _inbound(session: Session, start: datetime, end: datetime, settings: Settings) -> list:
    rows = session.exec(
        select(Message.thread_id, Message.channel, Message.sender, Message.received_at, Draft.route, Draft.reasons,
               Draft.llm_prompt_tokens, Draft.llm_completion_tokens, Draft.llm_cost, Draft.signals, Draft.backend)
        .select_from(Message).outerjoin(Draft, col(Draft.message_id) == col(Message.id))
        .where(Message.direction == "in", Message.received_at >= start, Message.received_at < end)
        .order_by(col(Message.received_at), col(Message.id))).all()
    owner = settings.owner_address
    return [r for r in rows if not owner or (r.sender or "").strip().lower() != owner]


def _replies(session: Session, since: datetime) -> dict[int, list[tuple[datetime, bool]]]:
    """Replies sent to customers since ``since``, per thread, oldest first."""
    rows = session.exec(select(Outbox.thread_id, Outbox.sent_at, Outbox.automatic).where(
        Outbox.kind == OutboxKind.REPLY, col(Outbox.thread_id).is_not(None), col(Outbox.sent_at).is_not(None),
        Outbox.sent_at >= since).order_by(col(Outbox.sent_at), col(Outbox.id))).all()
    by_thread: dict[int, list[tuple[datetime, bool]]] = defaultdict(list)
    for row in rows:
        by_thread[row.thread_id].append((as_utc(row.sent_at), bool(row.automatic)))
    return by_thread


def _votes(session: Session, start: datetime, end: datetime) -> list:
    return session.exec(select(Feedback.vote, Feedback.created_at).where(
        Feedback.created_at >= start, Feedback.created_at < end)).all()


def _add(tally: _Tally, row, replies: dict) -> None:
    tally.messages_in += 1
    tally.channels[row.channel] += 1
    if row.route is None:
        return  # not processed yet: counted as in, nothing else known
    reasons = row.reasons or []
    if row.route == Route.IGNORE and reasons and reasons[0].startswith(ROBOT_PREFIX):
        tally.robot_mail += 1
    tally.routes[row.route] += 1
    if row.route in NEEDING and ((row.signals or {}).get("about_order") or row.backend == "orders"):
        tally.orders[row.route] += 1
    tally.prompt_tokens += row.llm_prompt_tokens or 0
    tally.completion_tokens += row.llm_completion_tokens or 0
    tally.cost += row.llm_cost or 0.0
    if row.route == Route.HANDOFF:
        tally.by_reason[reason_gist(reasons[0] if reasons else "")] += 1
    if row.route in NEEDING and row.thread_id in replies:
        sent = replies[row.thread_id]
        received = as_utc(row.received_at)
        i = bisect_left(sent, received, key=lambda reply: reply[0])
        if i < len(sent):
            tally.responses[sent[i][1]].append((sent[i][0] - received).total_seconds())


def _durable_share(session: Session, start: datetime, end: datetime) -> float | None:
    settled = min(end, utcnow() - REOPEN_WINDOW)  # replies whose 7 days are over
    if settled <= start:
        return None
    sent = session.exec(select(Outbox.thread_id, Outbox.sent_at).where(
        Outbox.kind == OutboxKind.REPLY, col(Outbox.thread_id).is_not(None), Outbox.sent_at >= start,
        Outbox.sent_at < settled)).all()
    if not sent:
        return None
    later = session.exec(select(Message.thread_id, Message.received_at, Message.new_text, Message.text).where(
        Message.direction == "in", col(Message.thread_id).is_not(None), Message.received_at > start,
        Message.received_at <= settled + REOPEN_WINDOW)).all()
    reopens: dict[int, list[datetime]] = defaultdict(list)
    for m in later:
        if not is_acknowledgement(m.new_text or m.text or ""):
            reopens[m.thread_id].append(as_utc(m.received_at))
    for times in reopens.values():
        times.sort()
    durable = 0
    for reply in sent:
        times, at = reopens.get(reply.thread_id, []), as_utc(reply.sent_at)
        i = bisect_right(times, at)
        durable += not (i < len(times) and times[i] <= at + REOPEN_WINDOW)
    return durable / len(sent)


# --- the public calculations ---------------------------------------------------------------

def compute(session: Session, *, start: datetime, end: datetime, settings: Settings) -> Metrics:
    start, end = as_utc(start), as_utc(end)
    tally, replies = _Tally(), _replies(session, start)
    for row in _inbound(session, start, end, settings):
        _add(tally, row, replies)
    tally.votes.update(v.vote for v in _votes(session, start, end))
    decided = session.exec(select(Draft.status, Draft.created_at, Draft.decided_at, Draft.edited).where(
        col(Draft.route).in_(HELD), Draft.decided_at >= start, Draft.decided_at < end)).all()
    approved = [d for d in decided if d.status in (DraftStatus.APPROVED, DraftStatus.SENT)]
    waits = [(as_utc(d.decided_at) - as_utc(d.created_at)).total_seconds() for d in approved]
    needing = sum(tally.routes[r] for r in NEEDING)
    auto_s, human_s = tally.responses[True], tally.responses[False]
    return Metrics(
        start=start, end=end, messages_in=tally.messages_in, robot_mail=tally.robot_mail,
        by_channel=dict(tally.channels.most_common()),
        needing_reply=needing, auto_replies=tally.routes[Route.AUTO], held=tally.routes[Route.REVIEW],
        handoffs=tally.routes[Route.HANDOFF], auto_rate=tally.rate(Route.AUTO),
        handoff_rate=tally.rate(Route.HANDOFF), handoffs_by_reason=dict(tally.by_reason.most_common()),
        durable_resolution=_durable_share(session, start, end),
        first_response_auto_median_s=_median(auto_s), first_response_auto_p90_s=_p90(auto_s),
        first_response_human_median_s=_median(human_s), first_response_human_p90_s=_p90(human_s),
        first_response_median_s=_median(auto_s + human_s), approval_latency_median_s=_median(waits),
        approved=len(approved), rejected=sum(d.status == DraftStatus.REJECTED for d in decided),
        expired=sum(d.status == DraftStatus.EXPIRED for d in decided),
        edited_share=_share(sum(bool(d.edited) for d in approved), len(approved)),
        thumbs_up=tally.votes["up"], thumbs_down=tally.votes["down"],
        thumbs_down_rate=_share(tally.votes["down"], tally.votes["up"] + tally.votes["down"]),
        llm_prompt_tokens=tally.prompt_tokens, llm_completion_tokens=tally.completion_tokens,
        llm_cost=tally.cost,
        pending_now=session.exec(select(func.count()).select_from(Draft).where(
            col(Draft.route).in_(HELD), Draft.status == DraftStatus.PENDING)).one(),
        failed_sends=session.exec(select(func.count()).select_from(Outbox).where(
            col(Outbox.status).in_([OutboxStatus.FAILED, OutboxStatus.UNKNOWN]),
            Outbox.created_at >= start, Outbox.created_at < end)).one(),
        order_questions=(orders := sum(tally.orders.values())), order_auto=tally.orders[Route.AUTO],
        order_held=orders - tally.orders[Route.AUTO], order_share=_share(orders, needing),
        order_auto_rate=_share(tally.orders[Route.AUTO], orders))


def daily(session: Session, *, settings: Settings, days: int, until: date | None = None) -> list[DayMetrics]:
    """``days`` shop-local days ending with ``until`` (default today), oldest first; the rows are
    read once for the whole range and bucketed here."""
    if days < 1:
        return []
    tz = settings.tz
    until = until or _local_day(utcnow(), tz)
    first = until - timedelta(days=days - 1)
    tallies = {first + timedelta(days=i): _Tally() for i in range(days)}
    start, end = day_window(settings, first)[0], day_window(settings, until)[1]
    replies = _replies(session, start)
    for row in _inbound(session, start, end, settings):
        _add(tallies[_local_day(row.received_at, tz)], row, replies)
    for vote in _votes(session, start, end):
        tallies[_local_day(vote.created_at, tz)].votes[vote.vote] += 1
    return [DayMetrics(
        day=day, messages_in=t.messages_in, auto_replies=t.routes[Route.AUTO], held=t.routes[Route.REVIEW],
        handoffs=t.routes[Route.HANDOFF], auto_rate=t.rate(Route.AUTO), handoff_rate=t.rate(Route.HANDOFF),
        handoffs_by_reason=dict(t.by_reason.most_common()),
        first_response_median_s=_median(t.responses[True] + t.responses[False]), thumbs_down=t.votes["down"],
        thumbs_down_rate=_share(t.votes["down"], t.votes["up"] + t.votes["down"]), llm_cost=t.cost)
        for day, t in tallies.items()]


def unanswered(session: Session, *, start: datetime, end: datetime, limit: int = 5) -> list[tuple[str, int]]:
    """Questions the knowledge had nothing for (``draft.no_match``), near-duplicates grouped; each
    group is shown by its first question, most frequent first (hints for new FAQ entries)."""

    rows = session.exec(select(Message.new_text, Message.text).join(Draft, col(Draft.message_id) == col(Message.id))
                        .where(Draft.no_match == True, col(Draft.route).in_(NEEDING),  # noqa: E712
                               Message.received_at >= as_utc(start), Message.received_at < as_utc(end))
                        .order_by(col(Message.received_at), col(Message.id))).all()
    keys: list[str] = []
    groups: list[list] = []  # [first question, count], parallel to keys
    for row in rows:
        text = " ".join((row.new_text or row.text or "").split())[:200]
        if not text:
            continue
        match = process.extractOne(text.lower(), keys, scorer=fuzz.token_set_ratio, score_cutoff=SIMILAR)
        if match is not None:
            groups[match[2]][1] += 1
        else:
            keys.append(text.lower())
            groups.append([text, 1])
    ranked = sorted(groups, key=lambda g: -g[1])  # stable: ties keep the earliest first
    return [(text, n) for text, n in ranked[:limit]]
