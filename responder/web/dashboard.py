"""The dashboard: how the responder did over the last N days, as headline numbers and charts.

Behind the owner's login; read-only. The numbers come from ``responder.owner.metrics`` (the same
definitions as ``run.py stats`` and the digest) and the charts from ``responder.owner.charts`` as
inline SVG (trusted output: the only markup the templates don't escape). Each chart sits in
``<figure class="chart" data-chart="...">``.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.requests import Request

from responder.core.clock import utcnow
from responder.owner import charts, metrics
from responder.owner.report import format_channels
from responder.web.auth import require_owner
from responder.web.pages import Formatter, WebState, page

router = APIRouter()
TOP_REASONS = 4  # handoff reasons drawn as their own line; more would not read on a phone


def _percent(values: list[float | None]) -> list[float | None]:
    return [None if v is None else v * 100 for v in values]


def headline(m, fmt: Formatter) -> list[tuple[str, str, str]]:
    """(label, value, detail) for the numbers above the charts."""
    return [
        ("Messages in", str(m.messages_in), format_channels(m.by_channel)),
        ("Answered automatically", fmt.pct(m.auto_rate), f"{m.auto_replies} of {m.needing_reply} needing a reply"),
        ("Handed to you", fmt.pct(m.handoff_rate), f"{m.handoffs} handed over, {m.held} held for review"),
        ("Order questions", fmt.pct(m.order_share),
         f"{m.order_questions} asked; {m.order_auto} answered automatically, {m.order_held} held"),
        ("First response, automatic", fmt.duration(m.first_response_auto_median_s), "median"),
        ("First response, by you", fmt.duration(m.first_response_human_median_s), "median"),
        ("Thumbs down", fmt.pct(m.thumbs_down_rate), f"{m.thumbs_down} of {m.thumbs_up + m.thumbs_down} votes"),
        ("LLM spend", fmt.money(m.llm_cost), f"{m.llm_prompt_tokens + m.llm_completion_tokens:,} tokens"),
        ("Edited before sending", fmt.pct(m.edited_share), f"of {m.approved} approved drafts"),
        ("Time to approve", fmt.duration(m.approval_latency_median_s), f"median; {m.pending_now} waiting now"),
        ("Stayed resolved", fmt.pct(m.durable_resolution), "no new question within 7 days"),
        ("Failed sends", str(m.failed_sends), "failed or unknown in the window"),
    ]


def chart_specs(days: list) -> list[tuple[str, str, dict, str, str]]:
    """(key, title, series, kind, unit) for each chart, from ``metrics.daily`` rows."""
    reasons: dict[str, int] = {}
    for day in days:
        for reason, n in day.handoffs_by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + n
    top = sorted(reasons, key=lambda r: (-reasons[r], r))[:TOP_REASONS]

    def reason_rate(day, reason: str) -> float | None:
        needing = day.auto_replies + day.held + day.handoffs
        return 100 * day.handoffs_by_reason.get(reason, 0) / needing if needing else None

    handoffs = {reason[:40]: [reason_rate(d, reason) for d in days] for reason in top} or \
        {"handoffs": _percent([d.handoff_rate for d in days])}
    return [
        ("auto_rate", "Answered automatically (% per day)",
         {"automatic": _percent([d.auto_rate for d in days])}, "line", "%"),
        ("handoff_rate", "Handoff rate by reason (% per day)", handoffs, "line", "%"),
        ("first_response", "Median first response (minutes)",
         {"median": [None if d.first_response_median_s is None else d.first_response_median_s / 60
                     for d in days]}, "line", "min"),
        ("thumbs_down", "Thumbs-down rate (% of votes)",
         {"thumbs down": _percent([d.thumbs_down_rate for d in days])}, "line", "%"),
        ("llm_spend", "LLM spend per day (USD)", {"spend": [d.llm_cost for d in days]}, "bar", "$"),
    ]


@router.get("/dashboard")
def dashboard(request: Request, days: int = 30, st: WebState = Depends(require_owner)):

    days = max(1, min(days, 366))
    settings = st.ctx.settings
    with st.ctx.db.transaction() as session:
        per_day = metrics.daily(session, settings=settings, days=days)
        start, end = metrics.day_window(settings, per_day[0].day)[0], utcnow()
        window = metrics.compute(session, start=start, end=end, settings=settings)
        questions = metrics.unanswered(session, start=start, end=end, limit=5)
    labels = [d.day.strftime("%b %d") for d in per_day]
    figures = [(key, title, charts.svg_chart(title, labels, series, kind=kind, unit=unit))
               for key, title, series, kind, unit in chart_specs(per_day)]
    return page(request, "dashboard.html.j2", days=days, numbers=headline(window, Formatter(settings)),
                figures=figures, questions=questions, choices=(7, 30, 90))
