#!/usr/bin/env python3
"""Order lookups: what one adds to a reply, and what a dead or slow shop API costs the queue.

    python bench/orders.py [--orders 300] [--messages 30] [--runs 3] [--faq 20] [--order-questions 5]
                           [--timeout 1] [--database-url URL] [--json]

One process, one context (``make_context``: the real pipeline, the offline drafter, the local
MiniLM embeddings, SQLite in a temporary folder or a throwaway PostgreSQL database on the server of
``--database-url``) and the real ``ShopifySource`` behind ``[orders] source = "shopify"``, pointed
at the loopback Admin GraphQL fake (tests/fakes/shopify_admin.py) holding ``--orders`` orders, each
with its own phone, shipped and on its way. The hourly cap and the loop breaker are off.

1. Added latency (``[orders] cache_s = 0``), per run: ``--messages`` SMS "where's my order?", each
   from an order's own phone, and as many FAQ texts from other phones, alternating; each stored,
   then ``process_pending`` timed for that one message. The lookup's own time (``Lookup.last_ms``)
   is read after each order message, and ``by_contact`` / ``by_number`` are then called straight
   on a fresh ``Lookup`` as many times. The added time is the p50 of the order texts minus the p50
   of the FAQ texts of the same run.
2. A dead or slow API (``[orders] timeout_s = --timeout``), per run: a queue of ``--faq`` FAQ texts
   and ``--order-questions`` order texts (an order text first, then one every few), all stored,
   then one ``process_pending`` call, as the daemon makes it. Five queues, each with a fresh
   ``Lookup``: the healthy fake; a loopback TCP server that accepts connections and never
   answers; the fake with ``delay`` past the timeout; the dead server again with the breaker's
   clock moved past its 30 s window (what the next window's first order question meets); the fake
   answering at 0.8 × the timeout (slow, never tripping the breaker). For each: the queue's time,
   when each FAQ text's draft was written (from the queue's start), the requests that reached the
   API (for a dead API, the lookups that waited for the timeout), the order texts' routes.

Medians over ``--runs`` runs; each ratio and difference is taken within one run first.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fakes.shopify_admin import FakeShopify  # noqa: E402
from helpers import make_context, write_settings  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlmodel import select  # noqa: E402

from responder.core.models import Draft  # noqa: E402
from responder.core.settings import load_settings  # noqa: E402
from responder.intake.store import store_inbound_text  # noqa: E402
from responder.ops.jobs import process_pending  # noqa: E402
from responder.orders.lookup import BREAK_S, source_for  # noqa: E402
from responder.pipeline import STEP_ASIDE_S  # noqa: E402

NO_LIMITS = "[routing]\nmax_auto_replies_per_hour = 0\nloop_threshold = 1000000\n"
FAQ = ["how much is shipping?", "Do you ship to the UK?", "What are your candles made of?",
       "Can I return a candle I haven't used?", "Do you sell gift cards?"]
ASK = "where's my order?"
HELD = "the order source couldn't answer"


class DeadApi:
    """A loopback TCP server that accepts every connection and never answers; counts them."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.accepted, self._open, self.base_url = 0, [], f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._open.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self._open:
            conn.close()


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), as bench/latency.py."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    low = int(pos)
    return s[low] + (s[min(low + 1, len(s) - 1)] - s[low]) * (pos - low)


def phone(i: int) -> str:
    return f"+1312555{i:04d}"


class Bench:
    def __init__(self, folder: Path, url: str, shop: FakeShopify, orders: int, timeout: float):
        self.folder, self.url, self.shop, self.orders, self.timeout = folder, url, shop, orders, timeout
        self.next_order, self.next_faq = 0, 0
        self.ctx = make_context(self.settings(shop.base_url, "base"))

    def settings(self, shop_url: str, name: str) -> Path:
        folder = self.folder / name  # one database for all: only [orders] differs
        folder.mkdir(exist_ok=True)
        return write_settings(folder, database_url=self.url, extra=NO_LIMITS + (
            f'[orders]\nsource = "shopify"\nshop_url = "{shop_url}"\napi_version = "{self.shop.api_version}"\n'
            f"cache_s = 0\ntimeout_s = {self.timeout:g}\n"))

    def use(self, shop_url: str, name: str):
        self.ctx.orders = source_for(load_settings(self.settings(shop_url, name)))
        return self.ctx.orders

    def store(self, order: bool) -> int:
        if order:
            sender, body = phone(self.next_order % self.orders), ASK
            self.next_order += 1
        else:
            sender, body = f"+1628{self.next_faq:07d}", FAQ[self.next_faq % len(FAQ)]
            self.next_faq += 1
        with self.ctx.db.transaction() as session:
            return store_inbound_text(session=session, channel="sms", sender=sender, text=body,
                                      provider_id="SM" + uuid.uuid4().hex).id

    def one(self, order: bool, ids: list | None = None) -> float:
        stored = self.store(order)
        started = time.perf_counter()
        done = process_pending(self.ctx)
        assert done == 1, done
        if ids is not None:
            ids.append(stored)
        return (time.perf_counter() - started) * 1000

    def drafts(self, ids: list[int]) -> dict[int, Draft]:
        with self.ctx.db.read() as session:
            return {d.message_id: d for d in session.exec(select(Draft).where(Draft.message_id.in_(ids))).all()}


def stats(values: list[float]) -> dict:
    return {"p50": percentile(values, 50), "p90": percentile(values, 90), "n": len(values)}


def added_latency(bench: Bench, n: int) -> dict:
    # Waiting in line however long it takes: a lookup that a collection pause makes step aside
    # would come back inside the next message's timing.
    lookup = bench.ctx.orders = bench.use(bench.shop.base_url, "healthy").patient()
    order_ms, faq_ms, lookup_ms, ids = [], [], [], []
    for _ in range(n):
        order_ms.append(bench.one(True, ids))
        lookup_ms.append(lookup.last_ms)
        faq_ms.append(bench.one(False))
    raw = bench.use(bench.shop.base_url, "raw").patient()  # timed alone: it may take its time
    contact, number = [], []
    for i in range(n):
        assert raw.by_contact(phone=phone(i % bench.orders))
        contact.append(raw.last_ms)
        assert raw.by_number(str(1000 + i % bench.orders))
        number.append(raw.last_ms)
    row = {"order_sms": stats(order_ms), "faq_sms": stats(faq_ms), "lookup_in_pipeline": stats(lookup_ms),
           "by_contact": stats(contact), "by_number": stats(number)}
    routes = [d.route for d in bench.drafts(ids).values()]
    row["order_routes"] = {r: routes.count(r) for r in set(routes)}  # auto: answered from the record
    row["added_p50_ms"] = row["order_sms"]["p50"] - row["faq_sms"]["p50"]
    row["added_p90_ms"] = row["order_sms"]["p90"] - row["faq_sms"]["p90"]
    return row


def queue(bench: Bench, shop_url: str, name: str, faq: int, asks: int, count=lambda: 0, shift: float = 0) -> dict:
    lookup = bench.use(shop_url, name)
    if shift:  # the breaker's window as it is BREAK_S seconds on: tripped again, then the queue
        bench.store(True)
        process_pending(bench.ctx)
        base = lookup.clock
        lookup.clock = lambda: base() + shift
    every = max(1, (faq + asks) // asks)
    kinds = [i % every == 0 and i // every < asks for i in range(faq + asks)]
    kinds += [True] * (asks - sum(kinds))
    ids = [bench.store(k) for k in kinds]
    before = count()
    started, wall = time.perf_counter(), datetime.now(timezone.utc)
    done = process_pending(bench.ctx)
    seconds = time.perf_counter() - started
    first = bench.drafts(ids)
    aside = sum(1 for i, k in zip(ids, kinds) if k and i not in first)  # order questions that stepped aside
    # What the daemon does next: the lookup's kick brings them back once its answer (or failure) is in.
    deadline = time.perf_counter() + 3 * bench.timeout + 5
    while len(bench.drafts(ids)) < len(ids) and time.perf_counter() < deadline:
        while lookup._inflight and time.perf_counter() < deadline:
            time.sleep(0.02)
        time.sleep(STEP_ASIDE_S + 0.02)
        done += process_pending(bench.ctx)
    drafts = bench.drafts(ids)
    assert len(drafts) == len(ids), (len(drafts), len(ids))
    at = {i: (drafts[i].created_at.replace(tzinfo=timezone.utc) - wall).total_seconds() for i in ids}
    faq_done = [at[i] for i, k in zip(ids, kinds) if not k]
    held = [drafts[i] for i, k in zip(ids, kinds) if k]
    return {"queue": name, "seconds": seconds, "faq_done_p50_s": percentile(faq_done, 50),
            "faq_done_max_s": max(faq_done), "orders_done_max_s": max(at[i] for i, k in zip(ids, kinds) if k),
            "stepped_aside": aside, "api_requests": count() - before,
            "orders_held": sum(d.route == "handoff" and any(HELD in r for r in d.reasons) for d in held),
            "order_routes": sorted({d.route for d in held}), "orders": len(held)}


def run(args, folder: Path, url: str) -> dict:
    now = datetime.now(timezone.utc)
    with FakeShopify() as shop:
        for i in range(args.orders):
            shop.add_order(str(1000 + i), email=f"buyer{i}@example.com", phone=phone(i),
                           created_at=now - timedelta(days=2, minutes=i), total="48.00", fulfillment_status="FULFILLED",
                           fulfillments=[shop.fulfillment(company="UPS", number=f"1Z999AA1{i:010d}",
                                                          created_at=now - timedelta(days=1),
                                                          estimated_delivery_at=now + timedelta(days=2))])
        os.environ["SHOPIFY_ACCESS_TOKEN"] = shop.token
        bench = Bench(folder, url, shop, args.orders, args.timeout)
        try:
            bench.use(shop.base_url, "warm")
            bench.one(True)  # not counted: the first query, the first templates
            bench.one(False)
            latency, queues = [], []
            for n in range(args.runs):
                latency.append(added_latency(bench, args.messages))
                dead, slow, crawl = DeadApi(), FakeShopify(), FakeShopify()
                slow.orders = crawl.orders = shop.orders
                slow.delay, crawl.delay = args.timeout + 0.5, args.timeout * 0.8
                with slow, crawl:
                    served = len(shop.requests)
                    queues.append([queue(bench, shop.base_url, "healthy", args.faq, args.order_questions,
                                         lambda: len(shop.requests) - served)] + [
                        queue(bench, api.base_url, name, args.faq, args.order_questions, count, shift=shift)
                        for api, name, count, shift in (
                            (dead, "dead (accepts, never answers)", lambda: dead.accepted, 0),
                            (slow, f"slow (answers after {slow.delay:g} s)", lambda: len(slow.requests), 0),
                            (dead, "dead, the next breaker window", lambda: dead.accepted, BREAK_S + 1),
                            (crawl, f"slow, under the timeout ({crawl.delay:g} s)", lambda: len(crawl.requests), 0))])
                dead.close()
                print(f"run {n + 1}: added p50 {latency[-1]['added_p50_ms']:.1f} ms; queues "
                      + ", ".join(f"{q['queue']} {q['seconds']:.2f} s" for q in queues[-1]), file=sys.stderr)
        finally:
            bench.ctx.db.dispose()
    return {"cores": os.cpu_count(), "database": "postgresql" if args.database_url else "sqlite",
            "orders": args.orders, "timeout_s": args.timeout, "latency_runs": latency, "queue_runs": queues}


def med(rows: list[dict], *keys) -> float:
    return statistics.median(r[keys[0]][keys[1]] if len(keys) == 2 else r[keys[0]] for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300, help="orders in the loopback shop")
    parser.add_argument("--messages", type=int, default=30, help="order texts (and FAQ texts) per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faq", type=int, default=20, help="FAQ texts in each queue")
    parser.add_argument("--order-questions", type=int, default=5, help="order texts in each queue")
    parser.add_argument("--timeout", type=float, default=1.0, help="[orders] timeout_s for the queues")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server for a throwaway database")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # "Order lookups are failing" is the point of part 2
    admin = database = None
    with tempfile.TemporaryDirectory(prefix="deskhand-orders-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'deskhand.db'}"
        if args.database_url:
            from latency import admin_connection  # bench/latency.py
            database, admin = f"deskhand_bench_{uuid.uuid4().hex[:10]}", admin_connection(args.database_url)
            admin.execute(f'CREATE DATABASE "{database}"')
            url = make_url(args.database_url).set(database=database).render_as_string(hide_password=False)
        try:
            result = run(args, Path(tmp), url)
        finally:
            if admin is not None:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                admin.close()
    if args.json:
        print(json.dumps(result))
        return 0
    lat, runs = result["latency_runs"], len(result["latency_runs"])
    print(f"{args.orders} orders in the loopback Shopify fake, {result['database']}, offline drafter, local "
          f"embeddings, {result['cores']} cores; medians of {runs} runs, {args.messages} texts of each kind a run\n")
    print("| figure | p50 ms | p90 ms |\n|---|---|---|")
    for name, key in (("SMS \"where's my order?\" (process_pending, one message)", "order_sms"),
                      ("SMS FAQ question (process_pending, one message)", "faq_sms"),
                      ("its lookup inside the pipeline (Lookup.last_ms)", "lookup_in_pipeline"),
                      ("Lookup.by_contact(phone) alone", "by_contact"), ("Lookup.by_number alone", "by_number")):
        print(f"| {name} | {med(lat, key, 'p50'):.1f} | {med(lat, key, 'p90'):.1f} |")
    added = [round(r["added_p50_ms"], 1) for r in lat]
    print(f"\nAdded by a lookup, p50 order minus p50 FAQ in each run: {added} ms, median "
          f"{statistics.median(added):.1f} ms (target ≤ 50 ms: {'met' if statistics.median(added) <= 50 else 'missed'}); "
          f"order texts' routes: {[r['order_routes'] for r in lat]}\n")
    print(f"Queues of {args.faq} FAQ + {args.order_questions} order texts, timeout_s = {args.timeout:g}:\n")
    print("| API | first pass s | FAQ drafts written, p50 / max s from start | order texts that stepped aside "
          "(per run) | last order draft, s from start | requests that reached the API (per run) | order texts held "
          "as outage (per run) | order texts' routes |\n|---|---|---|---|---|---|---|---|")
    for i, name in enumerate(q["queue"] for q in result["queue_runs"][0]):
        rows = [r[i] for r in result["queue_runs"]]
        print(f"| {name} | {med(rows, 'seconds'):.2f} | {med(rows, 'faq_done_p50_s'):.2f} / "
              f"{med(rows, 'faq_done_max_s'):.2f} | {[r['stepped_aside'] for r in rows]} | "
              f"{med(rows, 'orders_done_max_s'):.2f} | {[r['api_requests'] for r in rows]} | "
              f"{[r['orders_held'] for r in rows]} of {rows[0]['orders']} | "
              f"{sorted({x for r in rows for x in r['order_routes']})} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
