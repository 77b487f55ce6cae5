"""Order-status answers: Bitext's "track order" and "track refund" phrasings, asked by each order's
own customer, through the whole pipeline with the export-file order source.

Issue 18's target: with orders connected, order-status questions from the order's own customer
are answered automatically and right in at least 90% of cases (not shipped, shipped, delivered,
cancelled, refunded). Each phrasing is one customer with one order of their own; the order numbers
in Bitext's texts become that order's number (phrasings without one are looked up by the sender's
address). "Right" means: routed auto, the reply names that order and states its state ("hasn't
shipped yet", "shipped with", "was delivered", "was cancelled", "refund of $…"), and no other order.
Held messages are counted with their first reason (swearing hands off to the owner by design).

    python bench/order_answers.py               # every phrasing (374), a table
    python bench/order_answers.py --limit 40    # the first 40 of each intent
    python bench/order_answers.py --every 3     # every third phrasing (the test's sample)
    python bench/order_answers.py --json

Needs the Bitext corpus (``../shared/corpora`` or ``$DESKHAND_CORPORA``).
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from corpora import CORPORA  # noqa: E402  (tests/corpora.py: where ../shared/corpora is)
from helpers import customer_mail, make_context, write_settings  # noqa: E402
from orders_data import export, order  # noqa: E402

from responder.core.clock import clock, utcnow  # noqa: E402
from responder.core.models import Draft, Route  # noqa: E402
from responder.intake.store import store_inbound_email  # noqa: E402
from responder.ops.jobs import process_pending  # noqa: E402

STATES = {"unfulfilled": "hasn't shipped yet", "shipped": "shipped with", "delivered": "was delivered",
          "cancelled": "was cancelled", "refunded": "refund of $"}
NUMBER = re.compile(r"\d{6,}")


def phrasings(limit: int | None, every: int = 1) -> list[tuple[str, str]]:
    path = CORPORA / "bitext-customer-support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    out = []
    for intent in ("track_order", "track_refund"):
        texts = [r["instruction"] for r in rows if r["intent"] == intent][::every]
        out += [(intent, t) for t in texts[:limit]]
    return out


def build_order(i: int, state: str, now):
    number, email = str(3000 + i), f"customer{i}@example.com"
    common = dict(placed=now - timedelta(days=2), items=(("Amber Noir", 1, "48.00", "WW-104"),))
    extra = {"unfulfilled": dict(placed=now - timedelta(hours=6)),
             "shipped": dict(shipped=now - timedelta(days=1), carrier="USPS", tracking=f"94001118992231{i:08d}",
                             url=f"https://tools.usps.com/go/TrackConfirmAction?tLabels=94001118992231{i:08d}",
                             eta=now + timedelta(days=2)),
             "delivered": dict(shipped=now - timedelta(days=4), carrier="UPS", tracking=f"1Z999AA1{i:010d}",
                               delivered=now - timedelta(days=1)),
             "cancelled": dict(cancelled=now - timedelta(days=1)),
             "refunded": dict(financial="refunded", cancelled=now - timedelta(days=2), refunded="55.00",
                              refunded_at=now - timedelta(days=1))}[state]
    return order(number, email, **{**common, **extra})


def run(limit: int | None, every: int = 1) -> dict:
    cases = phrasings(limit, every)
    clock.freeze()
    now = utcnow()
    cycle = list(STATES)[:4]
    plan = [(intent, text, "refunded" if intent == "track_refund" else cycle[i % 4])
            for i, (intent, text) in enumerate(cases)]
    results = collections.defaultdict(collections.Counter)
    held_reasons: collections.Counter = collections.Counter()
    wrong: list[str] = []
    held: list[str] = []
    with tempfile.TemporaryDirectory(prefix="deskhand-orders-") as folder:
        folder = Path(folder)
        (folder / "orders.csv").write_text(export([build_order(i, s, now) for i, (_, _, s) in enumerate(plan)]))
        settings = write_settings(folder, database_url=f"sqlite:///{folder / 'bench.sqlite3'}",
                                  extra='[orders]\nsource = "file"\nfile = "orders.csv"\n')
        ctx = make_context(settings)
        started = time.perf_counter()
        for i, (intent, text, state) in enumerate(plan):
            number = str(3000 + i)
            clock.advance(seconds=61)  # under the 60-an-hour cap on automatic replies
            body = NUMBER.sub(number, text)
            with ctx.db.transaction() as session:
                message = store_inbound_email(session=session, raw=customer_mail(body, sender=f"customer{i}@example.com",
                                                                                 subject="My order"),
                                              mailbox="INBOX", uidvalidity=1, uid=i + 1)
                message_id = message.id
            process_pending(ctx)
            with ctx.db.transaction() as session:
                from sqlmodel import select
                draft = session.exec(select(Draft).where(Draft.message_id == message_id)).one()
                route, reply, reasons = draft.route, draft.text, list(draft.reasons)
            others = set(re.findall(r"#(\d{4})", reply)) - {number}
            if route != Route.AUTO:
                results[state]["held"] += 1
                held_reasons[re.split(r"[:(']", reasons[0])[0].strip() if reasons else "?"] += 1
                held.append(f"{state}: {body!r} -> {route}: {'; '.join(reasons)[:160]}")
            elif f"#{number}" in reply and STATES[state] in reply and not others:
                results[state]["right"] += 1
            else:
                results[state]["wrong"] += 1
                wrong.append(f"{state}: {body!r} -> {reply[:120]!r}")
        seconds = time.perf_counter() - started
        ctx.db.dispose()
    clock.reset()
    total = collections.Counter()
    for counts in results.values():
        total.update(counts)
    asked = sum(total.values())
    return {"cases": asked, "right": total["right"], "held": total["held"], "wrong": total["wrong"],
            "right_share": total["right"] / asked if asked else None,
            "by_state": {s: dict(c) for s, c in results.items()}, "held_reasons": dict(held_reasons.most_common(8)),
            "wrong_examples": wrong[:10], "held_examples": held, "ms_per_message": seconds * 1000 / max(1, asked)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="phrasings per intent (default: all)")
    parser.add_argument("--every", type=int, default=1, help="take every n-th phrasing (a spread sample)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--held", action="store_true", help="also list every held message with its reasons")
    args = parser.parse_args()
    if CORPORA is None:
        sys.exit("the Bitext corpus is not beside this clone (../shared/corpora)")
    out = run(args.limit, args.every)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['cases']} order-status questions from the orders' own customers: {out['right']} answered "
          f"automatically and right ({out['right_share']:.1%}), {out['held']} held, {out['wrong']} wrong")
    for state, counts in sorted(out["by_state"].items()):
        print(f"  {state:12} {counts}")
    print("held, by first reason:", out["held_reasons"])
    for line in out["wrong_examples"]:
        print("  wrong:", line)
    if args.held:
        for line in out["held_examples"]:
            print("  held:", line)
    print(f"{out['ms_per_message']:.0f} ms per message (store + process, SQLite)")


if __name__ == "__main__":
    main()
