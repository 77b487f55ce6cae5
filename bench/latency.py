#!/usr/bin/env python3
"""Reply latency of one daemon: email in -> reply out, text in -> reply out, and the webhook's own answer.

    python bench/latency.py [--emails 40] [--texts 100] [--rate 50] [--seconds 20]
                            [--database-url URL] [--log FILE] [--json]

One real ``run.py`` daemon (offline drafter, local embeddings, SQLite in a temporary folder, or a
throwaway PostgreSQL database created on the server of ``--database-url``), a fresh Dovecot
mailbox and an aiosmtpd capture (tests/servers.py), Twilio in webhook mode with the real twilio
client pointed at the loopback fake (tests/fakes/twilio_api.py). The hourly cap and the loop
breaker are off; every message is a question the sample shop answers, from its own sender.
Measured once the daemon logs "ready" and has answered one email and one text (not counted):

1. email: just before the IMAP APPEND -> the reply accepted by the SMTP capture (its received_at).
   One mail at a time, each waiting for its reply, 0.2-1 s apart. poll_interval_s = 60, so the
   reply comes through IMAP IDLE.
2. sms: just before the signed webhook POST -> the reply created on the Twilio fake (the
   ``_created_at`` the fake stamps on each message). One text at a time, 0.1-0.5 s apart.
3. webhook: the HTTP answer to signed webhook POSTs sent open-loop, one every 1/--rate s for
   --seconds whatever the answers (a new connection each, each from its own number); latency is
   counted from the request's scheduled time, so a late sender is not hidden. Meanwhile the daemon
   drafts and sends the replies to these texts, as it would. This runs last, so its backlog can't
   slow the first two.

The daemon's log (each line stamped with its arrival time in ms by this script) goes to --log.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fakes.twilio_api import FakeTwilio  # noqa: E402
from helpers import PASSWORD_ENV, customer_mail, write_settings  # noqa: E402
from servers import Dovecot, SmtpCapture, free_port, require_dovecot  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

SHOP = "+15550100000"
QUESTIONS = ["How much is shipping?", "Can I return a candle I haven't used?", "Do you ship to the UK?",
             "What are your candles made of?", "Do you sell gift cards?"]
NO_LIMITS = "[routing]\nmax_auto_replies_per_hour = 0\nloop_threshold = 1000000\n"
TARGETS = {"email": {"p50": 2.0, "p95": 4.0}, "sms": {"p50": 0.3, "p99": 1.0}, "webhook": {"p99": 0.05}}


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    low = int(pos)
    return s[low] + (s[min(low + 1, len(s) - 1)] - s[low]) * (pos - low)


def summary(name: str, samples: list[float]) -> dict:
    row = {"figure": name, "n": len(samples), "max": max(samples)}
    row.update({f"p{q}": percentile(samples, q) for q in (50, 95, 99)})
    row["target"] = TARGETS[name]
    row["met"] = all(row[k] <= v for k, v in TARGETS[name].items())
    return row


def all_ok(statuses: dict) -> bool:
    return set(statuses) <= {"200"}


def stamp_lines(stream, path: Path) -> None:
    """Copy the daemon's output to ``path``, each line prefixed with when it arrived (ms)."""
    with open(path, "w", encoding="utf-8") as out:
        for raw in iter(stream.readline, b""):
            now = datetime.now().strftime("%H:%M:%S.%f")[:-3]
            out.write(f"{now} | {raw.decode(errors='replace')}")
            out.flush()


def signed_form(token: str, public: str, number: str, body: str) -> tuple[bytes, str]:
    form = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC", "From": number, "To": SHOP,
            "Body": body, "NumMedia": "0"}
    return urllib.parse.urlencode(form).encode(), RequestValidator(token).compute_signature(public + "/twilio/sms",
                                                                                             form)


def post_webhook(public: str, port: int, body: bytes, signature: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/twilio/sms", data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


def email_once(client, smtp: SmtpCapture, n: int, tag: str) -> float:
    sender = f"mail{n}-{tag}@shoppers.test"
    raw = customer_mail(QUESTIONS[n % len(QUESTIONS)], sender=sender, subject=f"question {n}")
    seen = len(smtp.messages)
    started = time.time()
    client.append("INBOX", raw)
    deadline = time.monotonic() + 60
    while True:
        captured = smtp.wait_for(seen + 1, timeout=max(0.0, deadline - time.monotonic()))
        mine = [m for m in captured if sender in m.rcpt_tos]
        if mine:
            return mine[0].received_at - started
        seen = len(captured)


def text_once(fake: FakeTwilio, public: str, port: int, n: int) -> float:
    number = f"+1628{n:07d}"
    body, signature = signed_form(fake.auth_token, public, number, QUESTIONS[n % len(QUESTIONS)])
    seen = len(fake.created)
    started = time.time()
    status = post_webhook(public, port, body, signature)
    if status != 200:
        raise SystemExit(f"the webhook answered {status} to text {n}")
    deadline = time.monotonic() + 60
    while True:
        fake.wait_for(seen + 1, timeout=max(0.0, deadline - time.monotonic()))
        mine = [m for m in list(fake.messages.values()) if m["to"] == number and m["direction"] == "outbound-api"]
        if mine:
            return mine[0]["_created_at"].timestamp() - started
        seen = len(fake.created)


async def open_loop(token: str, public: str, port: int, rate: float, seconds: float) -> tuple[list[float], dict]:
    """Webhook answers at a fixed schedule: (latencies from the scheduled time, status counts)."""
    count = int(rate * seconds)
    requests = []
    for n in range(count):  # built and signed beforehand: the schedule only sends
        body, signature = signed_form(token, public, f"+1415{n:07d}", QUESTIONS[n % len(QUESTIONS)])
        requests.append((f"POST /twilio/sms HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
                         f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
                         f"X-Twilio-Signature: {signature}\r\n\r\n").encode() + body)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    async def one(request: bytes, due: float) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), timeout=30)  # Connection: close -> EOF
            writer.close()
            status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "no answer"
        except (OSError, asyncio.TimeoutError) as exc:
            status = type(exc).__name__
        latencies.append(loop.time() - due)
        statuses[status] = statuses.get(status, 0) + 1

    start = loop.time() + 0.5
    tasks = []
    for n, request in enumerate(requests):
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        tasks.append(asyncio.create_task(one(request, due)))
    await asyncio.gather(*tasks)
    return latencies, statuses


def admin_connection(url: str):
    import psycopg
    from sqlalchemy.engine import make_url

    p = make_url(url)
    return psycopg.connect(host=p.host or "127.0.0.1", port=p.port or 5432, user=p.username, password=p.password,
                           dbname=p.database or "postgres", autocommit=True)


def run(args, folder: Path) -> dict:
    rng = random.Random(8)
    admin = database = None
    url = ""  # SQLite in the data folder (the default)
    if args.database_url:
        from sqlalchemy.engine import make_url
        database, admin = f"deskhand_bench_{uuid.uuid4().hex[:10]}", admin_connection(args.database_url)
        admin.execute(f'CREATE DATABASE "{database}"')
        url = make_url(args.database_url).set(database=database).render_as_string(hide_password=False)
    log_path = Path(args.log) if args.log else folder / "daemon.log"
    try:
        with Dovecot() as dovecot, SmtpCapture() as smtp, FakeTwilio() as fake:
            port = free_port()
            public = f"http://127.0.0.1:{port}"
            twilio = (f'[twilio]\naccount_sid = "{fake.account_sid}"\nsms_from = "{SHOP}"\n'
                      f'api_base_url = "{fake.base_url}"\npublic_url = "{public}"\n')
            config = write_settings(folder, database_url=url, dovecot=dovecot, smtp=smtp, web_port=port,
                                    email_extra="poll_interval_s = 60", extra=NO_LIMITS + twilio)
            env = {**os.environ, "PYTHONUNBUFFERED": "1", PASSWORD_ENV: dovecot.password,
                   "TWILIO_AUTH_TOKEN": fake.auth_token}
            started = time.monotonic()
            daemon = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(config)],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            threading.Thread(target=stamp_lines, args=(daemon.stdout, log_path), daemon=True).start()
            try:
                while not (log_path.exists() and "ready: knowledge search warmed up" in log_path.read_text()):
                    if time.monotonic() > started + 300 or daemon.poll() is not None:
                        raise SystemExit(f"the daemon did not start; see {log_path}")
                    time.sleep(0.2)
                startup = time.monotonic() - started
                print(f"daemon pid {daemon.pid} ready after {startup:.1f} s", file=sys.stderr, flush=True)
                tag = uuid.uuid4().hex[:6]
                with dovecot.connect(timeout=30) as client:
                    first_email = email_once(client, smtp, 0, tag)  # the first one warms up SMTP, IDLE...
                    first_text = text_once(fake, public, port, 0)
                    emails = []
                    for n in range(1, args.emails + 1):
                        emails.append(email_once(client, smtp, n, tag))
                        time.sleep(rng.uniform(0.2, 1.0))
                texts = []
                for n in range(1, args.texts + 1):
                    texts.append(text_once(fake, public, port, n))
                    time.sleep(rng.uniform(0.1, 0.5))
                hooks, statuses = asyncio.run(open_loop(fake.auth_token, public, port, args.rate, args.seconds))
            finally:  # before the servers go: a daemon outliving its fakes logs connection errors
                daemon.terminate()
                try:
                    daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
    finally:
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.close()
    rows = [summary(name, samples) for name, samples in (("email", emails), ("sms", texts), ("webhook", hooks))
            if samples]
    if hooks and not all_ok(statuses):  # an error answer is no answer, however quick
        rows[-1]["met"] = False
    return {"cores": os.cpu_count(), "database": "postgresql" if database else "sqlite", "startup_s": startup,
            "first_email_s": first_email, "first_text_s": first_text, "rate": args.rate,
            "webhook_statuses": statuses, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=40, help="emails, one at a time")
    parser.add_argument("--texts", type=int, default=100, help="texts, one at a time")
    parser.add_argument("--rate", type=float, default=50, help="webhook requests per second (open loop)")
    parser.add_argument("--seconds", type=float, default=20, help="how long the webhook load lasts")
    parser.add_argument("--database-url", default=os.environ.get("DESKHAND_BENCH_DATABASE_URL", ""),
                        help="a PostgreSQL server where a throwaway database may be created (default: SQLite)")
    parser.add_argument("--log", help="write the daemon's log (lines stamped in ms) to this file")
    parser.add_argument("--json", action="store_true", help="the result as one JSON object")
    args = parser.parse_args()
    require_dovecot()
    with tempfile.TemporaryDirectory(prefix="deskhand-latency-") as folder:
        result = run(args, Path(folder))
    if args.json:
        print(json.dumps(result))
        return 0
    names = {"email": "email: APPEND -> reply at SMTP", "sms": "sms: webhook POST -> reply at Twilio",
             "webhook": f"webhook HTTP answer at {args.rate:g}/s"}
    print(f"One daemon, {result['database']}, offline drafter, local embeddings, {result['cores']} cores; "
          f"start-up {result['startup_s']:.1f} s; first email {result['first_email_s']:.2f} s and first text "
          f"{result['first_text_s']:.2f} s (not counted); webhook answers under load: "
          f"{result['webhook_statuses'] or 'none sent'}\n")
    print("| figure | n | p50 | p95 | p99 | max | target | met? |")
    print("|---|---|---|---|---|---|---|---|")
    for row in result["rows"]:
        ms = row["figure"] != "email"
        fmt = (lambda s: f"{s * 1000:.0f} ms") if ms else (lambda s: f"{s:.2f} s")
        target = ", ".join(f"{k} ≤ {fmt(v)}" for k, v in row["target"].items())
        print(f"| {names[row['figure']]} | {row['n']} | {fmt(row['p50'])} | {fmt(row['p95'])} | {fmt(row['p99'])} | "
              f"{fmt(row['max'])} | {target} | {'yes' if row['met'] else '**no**'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
