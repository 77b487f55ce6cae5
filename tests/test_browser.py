"""The owner's pages in a real browser: headless Chromium (Debian's) driven by Playwright, the
app served by uvicorn on a free port. Logs in, approves an edited draft, reads the dashboard's
charts, uses Try it and follows an approve link from an email, as the owner would on a phone.
"""
from __future__ import annotations

import re

import pytest
from browser import (  # noqa: F401
    HUMAN,
    PASSWORD,
    SHIPPING,
    UNKNOWN,
    browser_page,
    hold,
    link_path,
    make_web,
    serve,
    set_password,
    web_base,
)
from helpers import rows
from sqlmodel import func, select

from responder.core.models import Draft, Message, Outbox
from responder.owner import links

HELD = ("review", "handoff")


@pytest.fixture
def web(web_base, tmp_path):
    with make_web(web_base, f"sqlite:///{tmp_path / 'browser.sqlite3'}") as w:
        yield w


@pytest.fixture
def csp_errors(browser_page):
    """Console errors about the Content-Security-Policy (it must not break the pages' own styles)."""
    errors: list[str] = []
    browser_page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


def browser_login(page, url: str, target: str = "/queue") -> None:
    page.goto(url + target)
    assert page.url.startswith(url + "/login?next=")
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(url + target)


def test_owner_edits_and_approves_a_held_draft(web_base, database_url, browser_page, csp_errors):
    # On SQLite and PostgreSQL: the one browser test that writes through every layer.
    with make_web(web_base, database_url) as web, serve(web.app) as url:
        set_password(web.ctx)
        draft = hold(web.ctx, UNKNOWN, subject="Goldfish by drone")
        assert draft.route in HELD
        page = browser_page
        browser_login(page, url)
        item = page.locator(f".queue-item[data-draft='{draft.id}']")
        assert "live goldfish" in item.inner_text()
        item.get_by_role("link", name="Goldfish by drone").click()
        page.wait_for_url(f"{url}/queue/{draft.id}")
        assert page.input_value("#text") == draft.text
        page.fill("#text", "Sorry, no live animals.\nWe only ship candles.")
        page.click("form.approve button[type=submit]")
        page.wait_for_url(url + "/queue")
        assert "approved with your edits" in page.inner_text(".flash")
        assert page.locator(f".queue-item[data-draft='{draft.id}']").count() == 0

        [reply] = rows(web.ctx, Outbox, Outbox.draft_id == draft.id, Outbox.kind == "reply")
        assert "Sorry, no live animals.\nWe only ship candles." in reply.body_text and not reply.automatic
        [after] = rows(web.ctx, Draft, Draft.id == draft.id)
        assert after.text == draft.text and after.edited and after.status == "approved"
        assert web.kicks == [1]
    assert not [e for e in csp_errors if "Content Security Policy" in e]


def test_dashboard_charts_render(web, browser_page, csp_errors, tmp_path):
    set_password(web.ctx)
    for n, text in enumerate((SHIPPING, HUMAN, UNKNOWN, SHIPPING)):
        hold(web.ctx, text, sender=f"C{n} <c{n}@customer.test>", subject=f"Question {n}")
    with serve(web.app) as url:
        page = browser_page
        browser_login(page, url, "/dashboard")
        charts = page.locator("figure.chart svg")
        assert charts.count() >= 5
        for key in ("auto_rate", "handoff_rate", "first_response", "thumbs_down", "llm_spend"):
            assert page.locator(f"figure.chart[data-chart='{key}'] svg").count() == 1
        for i in range(charts.count()):
            box = charts.nth(i).bounding_box()
            assert box and box["width"] > 100 and box["height"] > 30
        assert page.locator(".number").count() >= 6
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    from PIL import Image
    with Image.open(shot) as image:
        grid = image.convert("RGB").resize((image.width // 7, image.height // 7), Image.Resampling.NEAREST)
    colors = {tuple(round(c / 255, 2) for c in p) for _, p in grid.getcolors(maxcolors=grid.width * grid.height)}
    assert len(colors) > 20  # text, bars and lines, not a blank page
    assert not [e for e in csp_errors if "Content Security Policy" in e]


def test_try_it_on_a_fresh_install(web, browser_page):
    def count(model):
        with web.ctx.db.transaction() as session:
            return session.exec(select(func.count()).select_from(model)).one()

    before = [count(m) for m in (Message, Draft, Outbox)]
    with serve(web.app) as url:
        page = browser_page
        page.goto(url + "/")  # no password, no mailbox: Try it comes first
        page.click("a.button[href='/try']")
        page.wait_for_url(url + "/try")
        page.select_option("#channel", "email")
        page.fill("#subject", "Shipping")
        page.fill("#text", SHIPPING)
        page.click("form.try button[type=submit]")
        page.wait_for_selector("section.result")
        assert page.get_attribute("section.result", "data-route") == "auto"
        assert page.inner_text(".result .route") == "auto"
        assert "$7" in page.inner_text(".result .reply")
        assert page.input_value("#text") == SHIPPING  # the form keeps the message for another try
    assert [count(m) for m in (Message, Draft, Outbox)] == before


def test_approve_link_from_an_email(web, browser_page):
    draft = hold(web.ctx, HUMAN)
    assert draft.route in HELD
    path = link_path(links.draft_link(web.ctx.settings, draft.id, "approve"))
    with serve(web.app) as url:
        page = browser_page
        page.goto(url + path)
        assert page.inner_text("h1") == "Approve this reply?"
        assert rows(web.ctx, Outbox, Outbox.kind == "reply") == []  # opening the link sent nothing
        page.click("main form button[type=submit]")
        page.wait_for_load_state()
        assert page.inner_text("h1") == "Approved"
        assert re.search(r"queued and will be sent", page.inner_text("main"))
        page.goto(url + path)
        assert page.inner_text("h1") == "Link already used"
    [reply] = rows(web.ctx, Outbox, Outbox.kind == "reply")
    assert reply.draft_id == draft.id and draft.text in reply.body_text


def test_try_it_answers_from_the_sample_shops_orders(web, browser_page):
    """The sample shop's orders (``knowledge/orders.csv``, as ``python run.py`` reads them): as the
    order's customer the reply gives its delivery; as anyone else it asks for both details."""
    from helpers import ROOT

    from responder.core.settings import load_settings
    from responder.orders.lookup import source_for

    web.ctx.orders = source_for(load_settings(ROOT / "settings.toml"))
    with serve(web.app) as url:
        page = browser_page
        for sender, expected in (("jamie.rivera@example.com", "delivered on November 24"),
                                 ("someone@example.net", "order number and the email address")):
            page.goto(url + "/try")
            page.select_option("#channel", "email")
            page.fill("#sender", sender)
            page.fill("#subject", "Order #1041")
            page.fill("#text", "Was order #1041 delivered yet?")
            page.click("form.try button[type=submit]")
            page.wait_for_selector("section.result")
            assert page.get_attribute("section.result", "data-route") == "auto", page.inner_text("section.result")
            reply = page.inner_text(".result .reply")
            assert expected in reply, reply
            if sender.startswith("jamie"):  # the owner sees the order's summary with the reply
                assert "#1041: delivered" in page.inner_text(".result .reasons")
            else:
                assert "Cedar" not in reply and "USPS" not in reply
