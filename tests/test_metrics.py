"""Metrics and charts, on real SQLite and PostgreSQL: rows are built with the models at known
times, and every figure is checked against the value worked out by hand in the comments."""
from __future__ import annotations

import argparse
import io
import itertools
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from responder.cli.owner_cmds import cmd_stats
from responder.core.clock import clock
from responder.core.db import Database
from responder.core.models import Customer, Draft, Feedback, Message, Outbox, Thread
from responder.core.settings import load_settings
from responder.owner import charts
from responder.owner.metrics import (
    DayMetrics,
    _p90,
    compute,
    daily,
    day_window,
    reason_gist,
    unanswered,
    yesterday,
)
from responder.owner.report import format_duration, format_money

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=timezone.utc)
MIN, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
_ids = itertools.count(1)


def shop_settings(folder: Path, database_url: str, tz: str = "UTC"):
    path = folder / "settings.toml"
    path.write_text(f'[store]\ntimezone = "{tz}"\n[database]\nurl = "{database_url}"\ndata_dir = "{folder / "data"}"\n'
                    '[digest]\nto = "Owner@Example.test"\n', encoding="utf-8")
    return load_settings(path)


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()
    clock.reset()


class Rows:
    """Builds customers, threads, messages, drafts, outbox rows and votes at given times."""

    def __init__(self, session):
        self.s = session

    def add(self, row):
        self.s.add(row)
        self.s.flush()
        return row

    def thread(self) -> Thread:
        customer = self.add(Customer(name="Jamie"))
        return self.add(Thread(customer_id=customer.id, channel="email", subject="Question"))

    def message(self, thread, at, text="Do you ship to Canada?", *, route=None, reasons=(), status=None,
                sender="jamie@customer.test", created=None, decided=None, edited=False, no_match=False,
                tokens=(0, 0, 0.0)) -> Draft | Message:
        msg = self.add(Message(channel="email", direction="in", provider_id=f"m{next(_ids)}@customer.test",
                               thread_id=thread.id if thread else None, customer_id=thread.customer_id if thread else None,
                               sender=sender, text=text, new_text=text, received_at=at, status="processed"))
        if route is None:
            return msg
        status = status or {"auto": "queued", "ignore": "closed"}.get(route, "pending")
        return self.add(Draft(message_id=msg.id, thread_id=msg.thread_id, route=route, status=status,
                              reasons=list(reasons), created_at=created or at, decided_at=decided, edited=edited,
                              no_match=no_match, llm_prompt_tokens=tokens[0], llm_completion_tokens=tokens[1],
                              llm_cost=tokens[2]))

    def outbox(self, draft, *, sent=None, created=None, automatic=True, kind="reply", status="sent", thread=None):
        return self.add(Outbox(draft_id=draft.id if draft else None, kind=kind,
                               thread_id=draft.thread_id if draft else thread, channel="email",
                               recipient="jamie@customer.test", message_id=f"<o{next(_ids)}@shop.test>",
                               automatic=automatic, status=status, created_at=created or sent, sent_at=sent))

    def vote(self, draft, vote, at):
        return self.add(Feedback(draft_id=draft.id, thread_id=draft.thread_id, vote=vote, created_at=at))


def build_week(session, base: datetime) -> None:
    """Ten customer messages that need a reply, between base+10 min and base+100 min:
    m1-m6 answered automatically after 60, 120, 180, 240, 300, 600 s; m7 held, approved edited 30 min
    after its draft (reply 1870 s after the message); m8 held, rejected; m9 handed off (asked for a
    person), approved unedited after 2 h (reply at 7230 s); m10 handed off (frustrated), still pending.
    Plus robot mail, an unprocessed message and the owner's own mail; an old handoff expires at base+4 h.
    Follow-ups: "ok thanks" (thread 1) and "👍" (thread 4) don't reopen; a real question in thread 2
    within 7 days does; one in thread 3 arrives 7 days + 1 h after the reply (too late to reopen)."""
    r = Rows(session)
    at = {i: base + i * 10 * MIN for i in range(1, 11)}
    threads = {i: r.thread() for i in range(1, 11)}
    d = {i: r.message(threads[i], at[i], route="auto", tokens=(100 * i, 10 * i, 0.001 * i)) for i in range(1, 7)}
    for i, seconds in zip(range(1, 7), (60, 120, 180, 240, 300, 600)):
        r.outbox(d[i], sent=at[i] + timedelta(seconds=seconds))
    d[7] = r.message(threads[7], at[7], route="review", status="sent", created=at[7] + timedelta(seconds=10),
                     decided=at[7] + timedelta(seconds=1810), edited=True, reasons=["confidence 0.50 is below 0.75"],
                     tokens=(700, 70, 0.007))
    r.outbox(d[7], sent=at[7] + timedelta(seconds=1870), automatic=False)
    r.outbox(d[7], kind="notify", sent=at[7] + timedelta(seconds=20))  # to the owner: never a response
    d[8] = r.message(threads[8], at[8], route="review", status="rejected", decided=at[8] + HOUR,
                     reasons=["no answer from the knowledge (nothing found)"], tokens=(800, 80, 0.008))
    d[9] = r.message(threads[9], at[9], route="handoff", status="sent", decided=at[9] + 2 * HOUR,
                     reasons=["the customer asked for a person (wants a human)", "confidence 0.40 is below 0.75"],
                     tokens=(900, 90, 0.009))
    r.outbox(d[9], kind="holding", sent=at[9] + timedelta(seconds=5))  # a holding note is not an answer
    r.outbox(d[9], sent=at[9] + timedelta(seconds=7230), automatic=False)
    d[10] = r.message(threads[10], at[10], route="handoff", reasons=["the customer is frustrated: ALL CAPS; !!!"],
                      tokens=(1000, 100, 0.01))
    r.outbox(d[10], kind="remind", created=base + 6 * HOUR, status="unknown")
    r.outbox(None, kind="digest", created=base + 5 * HOUR, status="failed")
    r.outbox(None, kind="digest", created=base + 2 * DAY, status="failed")  # outside the first day
    r.message(None, base + 3 * HOUR, "Out of office", route="ignore", sender="ooo@customer.test",
              reasons=["automated mail: Auto-Submitted: auto-replied"])
    r.message(r.thread(), base + 4 * HOUR, "Another question")  # not processed yet: no draft
    r.message(None, base + 5 * HOUR, "approve", route="ignore", sender="owner@example.test",
              reasons=["the owner approved draft 7"], tokens=(999, 99, 9.99))
    r.message(r.thread(), base - 15 * DAY, route="handoff", status="expired", decided=base + 4 * HOUR,
              reasons=["a topic for the owner: refund"])
    for i, vote in ((1, "up"), (3, "up"), (4, "up"), (5, "down")):
        r.vote(d[i], vote, base + 3 * HOUR)
    r.vote(d[6], "down", base + 2 * DAY)
    r.message(threads[1], base + 2 * DAY, "ok thanks", route="ignore", reasons=["an acknowledgement: no reply needed"])
    r.message(threads[2], base + 3 * DAY, "It still hasn't arrived, where is it?")
    r.message(threads[3], at[3] + timedelta(seconds=180) + 7 * DAY + HOUR, "And do you sell wicks?")
    r.message(threads[4], base + DAY + HOUR, "👍", route="ignore")


def test_compute_matches_the_hand_count(db, tmp_path, database_url):
    settings = shop_settings(tmp_path, database_url)
    with db.transaction() as session:
        build_week(session, T0)
    clock.freeze(T0 + 30 * DAY)  # every reply's 7 days are over
    with db.transaction() as session:
        m = compute(session, start=T0, end=T0 + DAY, settings=settings)
    assert (m.messages_in, m.robot_mail) == (12, 1)  # 10 + robot + unprocessed; the owner's mail is not counted
    assert (m.needing_reply, m.auto_replies, m.held, m.handoffs) == (10, 6, 2, 2)
    assert (m.auto_rate, m.handoff_rate) == (0.6, 0.2)
    assert m.handoffs_by_reason == {"the customer asked for a person": 1, "the customer is frustrated": 1}
    assert m.first_response_auto_median_s == 210.0 and m.first_response_auto_p90_s == 600.0
    assert m.first_response_human_median_s == 4550.0 and m.first_response_human_p90_s == 7230.0
    assert m.first_response_median_s == 270.0    # median of 60..600, 1870, 7230
    assert m.durable_resolution == 7 / 8         # 8 replies sent, thread 2 reopened
    assert (m.approved, m.rejected, m.expired) == (2, 1, 1)
    assert m.approval_latency_median_s == 4500.0  # 1800 s and 7200 s
    assert m.edited_share == 0.5
    assert (m.thumbs_up, m.thumbs_down, m.thumbs_down_rate) == (3, 1, 0.25)
    assert (m.llm_prompt_tokens, m.llm_completion_tokens) == (5500, 550)
    assert m.llm_cost == pytest.approx(0.055)
    assert (m.pending_now, m.failed_sends) == (1, 2)
    assert json.loads(json.dumps(m.to_dict()))["start"] == T0.isoformat()

    clock.freeze(T0 + 5 * DAY)  # too early to tell whether any reply lasted
    with db.transaction() as session:
        assert compute(session, start=T0, end=T0 + DAY, settings=settings).durable_resolution is None


def test_daily_agrees_with_compute_per_day(db, tmp_path, database_url):
    settings = shop_settings(tmp_path, database_url)
    with db.transaction() as session:
        build_week(session, T0)
    clock.freeze(T0 + 30 * DAY)
    with db.transaction() as session:
        days = daily(session, settings=settings, days=4, until=T0.date() + timedelta(days=2))
        assert [d.day for d in days] == [T0.date() + timedelta(days=i) for i in (-1, 0, 1, 2)]
        for d in days:
            start, end = day_window(settings, d.day)
            m = compute(session, start=start, end=end, settings=settings)
            assert (d.messages_in, d.auto_replies, d.held, d.handoffs, d.auto_rate, d.handoff_rate,
                    d.handoffs_by_reason, d.first_response_median_s, d.thumbs_down, d.thumbs_down_rate) == \
                (m.messages_in, m.auto_replies, m.held, m.handoffs, m.auto_rate, m.handoff_rate,
                 m.handoffs_by_reason, m.first_response_median_s, m.thumbs_down, m.thumbs_down_rate)
            assert d.llm_cost == pytest.approx(m.llm_cost)
    assert [d.messages_in for d in days] == [0, 12, 1, 1]   # day+1: the 👍; day+2: "ok thanks" (and a thumbs-down)
    assert days[2].thumbs_down == 0 and days[3].thumbs_down == 1 and days[3].thumbs_down_rate == 1.0


def test_daily_buckets_by_the_shops_day_across_dst(db, tmp_path, database_url):
    settings = shop_settings(tmp_path, database_url, tz="America/Chicago")  # CST -6, CDT -5 from Mar 9
    utc = lambda *a: datetime(*a, tzinfo=timezone.utc)  # noqa: E731
    with db.transaction() as session:
        r = Rows(session)
        a = r.message(r.thread(), utc(2025, 3, 5, 3, 0), route="auto")        # Mar 4, 21:00 local
        r.outbox(a, sent=utc(2025, 3, 5, 3, 2))
        r.vote(a, "down", utc(2025, 3, 5, 5, 0))                              # Mar 4, 23:00 local
        r.message(r.thread(), utc(2025, 3, 5, 7, 0), route="handoff", reasons=["a topic for the owner: refund"])
        r.message(r.thread(), utc(2025, 3, 5, 20, 0), route="handoff", reasons=["a topic for the owner: legal"])
        r.message(r.thread(), utc(2025, 3, 10, 4, 30), route="review")      # Mar 9, 23:30 CDT
        d = r.message(r.thread(), utc(2025, 3, 10, 5, 30), route="auto", tokens=(0, 0, 0.01))  # Mar 10, 00:30
        r.outbox(d, sent=utc(2025, 3, 10, 5, 31))
        r.message(r.thread(), utc(2025, 3, 4, 5, 59), route="auto")          # Mar 3: before the range
        r.message(r.thread(), utc(2025, 3, 11, 5, 0), route="auto")          # Mar 11 00:00 CDT: after it
    assert day_window(settings, date(2025, 3, 9)) == (utc(2025, 3, 9, 6), utc(2025, 3, 10, 5))  # 23 hours
    assert yesterday(settings, utc(2025, 3, 5, 3, 0)) == date(2025, 3, 3)
    with db.transaction() as session:
        days = daily(session, settings=settings, days=7, until=date(2025, 3, 10))
    assert [d.day for d in days] == [date(2025, 3, 4) + timedelta(days=i) for i in range(7)]
    assert [d.messages_in for d in days] == [1, 2, 0, 0, 0, 1, 1]
    assert [(d.auto_replies, d.held, d.handoffs) for d in days] == \
        [(1, 0, 0), (0, 0, 2), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 1, 0), (1, 0, 0)]
    assert days[0].first_response_median_s == 120.0 and days[6].first_response_median_s == 60.0
    assert (days[0].thumbs_down, days[0].thumbs_down_rate, days[0].auto_rate) == (1, 1.0, 1.0)
    assert days[1].handoffs_by_reason == {"a topic for the owner": 2} and days[1].handoff_rate == 1.0
    assert days[2].auto_rate is None and days[2].first_response_median_s is None
    assert days[6].llm_cost == pytest.approx(0.01) and days[5].llm_cost == 0


def test_unanswered_groups_similar_questions(db):
    with db.transaction() as session:
        r = Rows(session)
        for text, route, at in [("Do you ship to Iceland?", "review", T0 + HOUR),
                                ("Can I get a candle engraved?", "review", T0 + 2 * HOUR),
                                ("do you ship to iceland??", "auto", T0 + 3 * HOUR),
                                ("Do you   ship to Iceland please", "handoff", T0 + 4 * HOUR),
                                ("thanks", "ignore", T0 + 5 * HOUR),
                                ("Do you ship to Iceland?", "review", T0 + 2 * DAY)]:
            r.message(r.thread(), at, text, route=route, no_match=True)
        r.message(r.thread(), T0 + 6 * HOUR, "How long does shipping take?", route="auto")  # answered
    with db.transaction() as session:
        found = unanswered(session, start=T0, end=T0 + DAY)
        assert found == [("Do you ship to Iceland?", 3), ("Can I get a candle engraved?", 1)]
        assert unanswered(session, start=T0, end=T0 + DAY, limit=1) == [("Do you ship to Iceland?", 3)]


def test_reason_gist_and_formats():
    assert reason_gist("price $19 not in catalog (Amber Noir is $48)") == "price $N not in catalog"
    assert reason_gist("7 customer messages in this thread without resolution") == \
        reason_gist("6 customer messages in this thread without resolution")
    assert reason_gist("") == "no reason recorded"
    assert _p90([float(v) for v in range(10, 0, -1)]) == 9.0  # nearest rank: the 9th of 10
    assert [format_duration(s) for s in (45, 240, 7560, 200_000, None)] == ["45 s", "4 min", "2.1 h", "2.3 d", "–"]
    assert (format_money(0.42), format_money(0.0012), format_money(1234.5)) == ("$0.42", "$0.0012", "$1,234.50")


def test_stats_prints_a_readable_table(db, tmp_path, database_url, capsys):
    settings = shop_settings(tmp_path, database_url)
    with db.transaction() as session:
        build_week(session, T0)
    clock.freeze(T0 + DAY)
    assert cmd_stats(settings, argparse.Namespace(days=1, json=False)) == 0
    out = capsys.readouterr().out.splitlines()
    lines = {label: next(line for line in out if line.strip().startswith(label))
             for label in ("Messages in", "answered automatically", "First reply, automatic", "First reply, by you",
                           "Your decisions", "Thumbs down", "LLM", "Resolved for good")}
    assert "12" in lines["Messages in"] and "1 robot mail" in lines["Messages in"]
    assert lines["answered automatically"].split()[-2:] == ["6", "60%"]
    assert "median 4 min, p90 10 min" in lines["First reply, automatic"]
    assert "median 76 min, p90 2.0 h" in lines["First reply, by you"]
    assert "2 approved (50% edited)" in lines["Your decisions"] and "median wait 75 min" in lines["Your decisions"]
    assert "1 of 4 votes" in lines["Thumbs down"] and "25%" in lines["Thumbs down"]
    assert "5,500 + 550 tokens, $0.05" in lines["LLM"] or "5,500 + 550 tokens, $0.06" in lines["LLM"]
    assert "–" in lines["Resolved for good"]  # nothing is 7 days old yet


def test_stats_json_end_to_end_equals_compute(db, tmp_path, database_url):
    """``run.py stats --json`` in its own process, on rows placed well inside its window (the
    process reads the real clock), agrees with ``compute`` on the same window."""
    settings = shop_settings(tmp_path, database_url)
    clock.reset()
    with db.transaction() as session:
        build_week(session, datetime.now(timezone.utc) - 12 * DAY)
    run = subprocess.run([sys.executable, "run.py", "--config", str(tmp_path / "settings.toml"), "stats", "--json",
                          "--days", "14"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    now = datetime.now(timezone.utc)
    with db.transaction() as session:
        expected = compute(session, start=now - 14 * DAY, end=now, settings=settings).to_dict()
    end = datetime.fromisoformat(printed["end"])
    assert abs((now - end).total_seconds()) < 120
    assert end - datetime.fromisoformat(printed["start"]) == 14 * DAY
    for key in ("start", "end"):
        printed.pop(key), expected.pop(key)
    assert printed == expected
    assert printed["needing_reply"] == 10 and printed["durable_resolution"] == 7 / 8


# --- charts ---------------------------------------------------------------------------------

def sample_days(n=14, empty=False) -> list[DayMetrics]:
    start = date(2025, 2, 24)
    return [DayMetrics(day=start + timedelta(days=i), messages_in=0 if empty else 10 + i,
                       auto_replies=0 if empty else 6, held=0 if empty else 2, handoffs=0 if empty else i % 3)
            for i in range(n)]


@pytest.mark.parametrize("days", [sample_days(), sample_days(empty=True), []], ids=["data", "zeros", "none"])
def test_png_chart_is_a_small_png(days):
    png = charts.png_chart(days)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) < 60_000
    with Image.open(io.BytesIO(png)) as image:
        image.verify()  # checks the chunks' CRCs and that the stream is complete
    with Image.open(io.BytesIO(png)) as image:
        assert (image.format, image.size) == ("PNG", (600, 220))


def bar_pixels(png: bytes) -> dict[str, int]:
    """How many pixels of each part's colour the plot area (below the legend) holds."""
    with Image.open(io.BytesIO(png)) as image:
        plot = image.convert("RGB").crop((40, 40, 600, 185))
    counts = {color: n for n, color in plot.getcolors(maxcolors=600 * 220)}
    return {key: counts.get(tuple(int(color[i:i + 2], 16) for i in (1, 3, 5)), 0)
            for key, color in charts.COLORS.items()}


def test_png_chart_draws_the_bars():
    days = sample_days()
    drawn = bar_pixels(charts.png_chart(days))
    # every part of the stack shows, and in proportion: 6 automatic replies a day against 2 held
    assert all(n > 300 for n in drawn.values()), drawn
    assert 2.5 < drawn["auto"] / drawn["held"] < 3.5
    empty = bar_pixels(charts.png_chart(sample_days(empty=True)))
    assert empty["auto"] == empty["held"] == empty["handoff"] == 0  # (the pale grey is also an edge of "no data yet")


def test_day_labels_name_the_month_when_it_changes():
    days = [d.day for d in sample_days()]  # Feb 24 .. Mar 9, 2025
    assert charts.day_labels(days) == ["Feb 24", "25", "26", "27", "28", "Mar 1"] + [str(n) for n in range(2, 10)]


@pytest.mark.parametrize("kind", ["line", "bar", "stacked"])
def test_svg_chart_is_inline_svg_with_a_title(kind):
    labels = [f"Mar {i}" for i in range(1, 15)]
    series = {"automatic": [i * 5.0 if i % 4 else None for i in range(14)], "human": [30.0 - i for i in range(14)]}
    svg = charts.svg_chart("Replies <per day>", labels, series, kind=kind, unit="%")
    assert svg.startswith("<svg") and "<?xml" not in svg and "DOCTYPE" not in svg
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg" and root.find(f"{ns}title").text == "Replies <per day>"
    assert "<text" in svg  # labels are text (selectable, scalable), not paths
    assert "no data yet" not in svg


@pytest.mark.parametrize("series", [{}, {"x": [None, None]}, {"x": [0, 0]}])
def test_svg_chart_without_data_says_so(series):
    svg = charts.svg_chart("Thumbs down", ["a", "b"], series)
    root = ET.fromstring(svg)
    assert root.find("{http://www.w3.org/2000/svg}title").text == "Thumbs down"
    assert "no data yet" in svg
    assert "no data yet" in charts.svg_chart("Empty", [], {"x": []})


@pytest.mark.parametrize("kind", ["line", "bar", "stacked"])
def test_svg_chart_escapes_every_text(kind):
    svg = charts.svg_chart('Spend & "tokens" <USD>', ["<b>Mar 1</b>", "Mar 2 & 3"],
                           {"<script>alert(1)</script>": [1.0, 2.0], "a & b": [3.0, None]}, kind=kind, unit="$")
    assert "<b>" not in svg and "<script>" not in svg and "& " not in svg
    root = ET.fromstring(svg)  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("aria-label") == root.find(f"{ns}title").text == 'Spend & "tokens" <USD>'
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert {"<b>Mar 1</b>", "Mar 2 & 3", "<script>alert(1)</script>", "a & b"} <= set(texts)
    assert "<script>alert(1)</script>: latest $2.00 (Mar 2 & 3)" in root.find(f"{ns}desc").text


def test_charts_need_no_matplotlib():
    code = ("import sys, datetime\nfrom responder.owner import charts, metrics\n"
            "charts.png_chart([metrics.DayMetrics(day=datetime.date(2025, 3, 1), messages_in=3, auto_replies=2)])\n"
            "charts.svg_chart('t', ['a', 'b'], {'x': [1, 2]})\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'pygal'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_svg_chart_refuses_an_unknown_kind():
    with pytest.raises(ValueError):
        charts.svg_chart("x", ["a"], {"x": [1]}, kind="pie")
