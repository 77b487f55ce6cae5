"""The owner's numbers in words: ``run.py stats`` and the formats the digest shows them in.

Presentation only; every figure comes from ``responder.owner.metrics`` (defined once, from the rows).
"""
from __future__ import annotations

from datetime import timedelta

from responder.core.settings import Settings
from responder.owner.metrics import Metrics, _share


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def format_percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.0f}%"


def format_money(usd: float) -> str:
    return f"${usd:.4f}" if 0 < usd < 0.005 else f"${usd:,.2f}"


CHANNEL_NAMES = {"email": "email", "sms": "SMS", "whatsapp": "WhatsApp", "chat": "site chat"}


def format_channels(by_channel: dict[str, int]) -> str:
    """"12 email · 5 site chat · 2 SMS" (the busiest first)."""
    return " · ".join(f"{n} {CHANNEL_NAMES.get(c, c)}" for c, n in by_channel.items()) or "–"


def format_table(m: Metrics, settings: Settings, questions: list[tuple[str, int]] = ()) -> str:
    """The human output of ``run.py stats``: one short line per figure."""
    tz, when = settings.tz, "%Y-%m-%d %H:%M"
    rows = [
        ("Messages in", f"{m.messages_in}" + (f"  ({m.robot_mail} robot mail, not answered)" if m.robot_mail else "")),
        ("  by channel", format_channels(m.by_channel)),
        ("Needing a reply", f"{m.needing_reply}"),
        ("  answered automatically", f"{m.auto_replies}  {format_percent(m.auto_rate)}"),
        ("  held for review", f"{m.held}  {format_percent(_share(m.held, m.needing_reply))}"),
        ("  handed to you", f"{m.handoffs}  {format_percent(m.handoff_rate)}"),
        *((f"    {reason}", f"{n}") for reason, n in m.handoffs_by_reason.items()),
        ("First reply, automatic", f"median {format_duration(m.first_response_auto_median_s)}, "
                                   f"p90 {format_duration(m.first_response_auto_p90_s)}"),
        ("First reply, by you", f"median {format_duration(m.first_response_human_median_s)}, "
                                f"p90 {format_duration(m.first_response_human_p90_s)}"),
        ("Resolved for good", f"{format_percent(m.durable_resolution)}  (no new question within 7 days)"),
        ("Your decisions", f"{m.approved} approved ({format_percent(m.edited_share)} edited), {m.rejected} "
                           f"rejected, {m.expired} expired; median wait {format_duration(m.approval_latency_median_s)}"),
        ("Thumbs down", f"{m.thumbs_down} of {m.thumbs_up + m.thumbs_down} votes  {format_percent(m.thumbs_down_rate)}"),
        ("LLM", f"{m.llm_prompt_tokens:,} + {m.llm_completion_tokens:,} tokens, {format_money(m.llm_cost)}"),
        ("Waiting for you now", f"{m.pending_now}"),
        ("Failed sends", f"{m.failed_sends}"),
    ]
    width = max(len(label) for label, _ in rows) + 2
    days = round((m.end - m.start) / timedelta(days=1), 1)
    lines = [f"Last {days:g} day{'s' if days != 1 else ''}: {m.start.astimezone(tz).strftime(when)} to "
             f"{m.end.astimezone(tz).strftime(when)} ({tz.key})"]
    lines += [f"{label:<{width}}{value}" for label, value in rows]
    if questions:
        lines.append("Questions the knowledge had no answer for:")
        lines += [f"  {n} x {text[:80]}" for text, n in questions]
    return "\n".join(lines)
