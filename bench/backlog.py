#!/usr/bin/env python3
"""A backlog after downtime: messages per second through the daemon, beside the bare I/O floor.

    python bench/backlog.py [--messages 10000] [--database-url URL] [--profile out.json] [--json]

``--messages`` mixed emails wait in a fresh Dovecot mailbox when one ``run.py`` daemon starts
(``answer_backlog_days`` takes them all, the hourly cap and the loop breaker are off): questions
the sample shop answers, automated mail (out-of-office, list mail, bounces: ignored), angry
customers (held, with a holding note), pasted threads, other languages, one emoji. Each is
fetched, parsed, drafted, routed and the automatic replies sent (SMTP capture in this process).
The rate is messages over the time from the daemon's first poll to the moment every message is
processed and no reply is waiting; start-up (process start to first poll, and to "ready") is
printed apart.

The floor, measured first over the same servers: a bare loop that fetches every message in
batches over one IMAP connection, parses it with the standard library and sends one reply each
over one SMTP connection. Deskhand's rate is printed as a share of it.

SQLite (the embedded default) unless ``--database-url`` names a PostgreSQL server, where a
throwaway database is created. ``--profile FILE`` runs py-spy on the daemon for the whole
backlog (speedscope JSON; ``pip install py-spy``).
"""
from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import PASSWORD_ENV, customer_mail, write_settings  # noqa: E402
from servers import Dovecot, SmtpCapture, require_dovecot  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

NO_LIMITS = "[routing]\nmax_auto_replies_per_hour = 0\nloop_threshold = 1000000\n"
QUESTIONS = ["How much is shipping?", "Can I return a candle I haven't used?", "Do you ship to the UK?",
             "What are your candles made of?", "Do you sell gift cards?", "how long does delivery take",
             "Are your candles vegan?", "Can I change my shipping address?", "do u ship to canada",
             "What is your return policy?"]
NAMES = ["Sam", "Priya", "Jordan", "Mei", "Lucas", "Amara", "Tom", "Ines", "Kofi", "Hana", "Diego", "Olga"]
PASTED = ("Hi, is this still right? Do you ship to Canada?\n\n-----Original Message-----\nFrom: shop\n"
          "Subject: your order\n\n" + "Thanks for your order, it is on its way. " * 40)


def mixed_mail(n: int) -> bytes:
    """The n-th mail of the backlog: 60% plain questions, 10% each of the other kinds."""
    sender, subject = f"buyer{n}@shoppers.test", f"question {n}"
    # Every text differs (a name and a number), as real mail does: nothing can be answered
    # from a cache of identical questions.
    name = f"{NAMES[n % len(NAMES)]} {n}"
    kind = n % 10
    if kind == 6:  # automated: an out-of-office, a list mail or a bounce, never answered
        headers = [{"Auto-Submitted": "auto-replied"}, {"List-Id": "<news.lists.test>", "Precedence": "list"},
                   {}][n % 3]
        frm = f"mailer-daemon@mx{n}.test" if n % 3 == 2 else f"robot{n}@lists.test"
        return customer_mail("I am out of the office until Monday." if n % 3 == 0 else "Delivery failed.",
                             sender=frm, subject="Automatic reply" if n % 3 == 0 else "Undelivered Mail",
                             headers=headers)
    if kind == 7:  # an angry customer: held for the owner, told so
        return customer_mail(f"WHERE IS MY ORDER?? This is ridiculous, I have asked three times!\n{name}",
                             sender=sender, subject="still waiting")
    if kind == 8:
        return customer_mail(PASTED.replace("Hi,", f"Hi, {name} here.") if n % 20 == 8
                             else f"¿Hacen envíos a España? ¿Cuánto cuesta?\n{name}",
                             sender=sender, subject=subject)
    if kind == 9:
        return customer_mail("👍" if n % 20 == 9 else f"Can I talk to a real person please? {name}",
                             sender=sender, subject=subject)
    greeting = ["Hi,", "Hello there,", "Hey!", ""][n % 4]
    return customer_mail(f"{greeting}\n{QUESTIONS[(n // 10) % len(QUESTIONS)]}\n\nThanks,\n{name}",
                         sender=f"{name} <{sender}>", subject=subject)


def floor(dovecot: Dovecot, smtp: SmtpCapture, batch: int = 50) -> dict:
    """The bare loop: fetch everything over one IMAP connection, parse, send one reply each."""
    started = time.monotonic()
    sent = 0
    with dovecot.connect(timeout=60) as client, smtplib.SMTP(smtp.host, smtp.port, timeout=60) as out:
        client.select_folder("INBOX", readonly=True)
        uids = client.search("ALL")
        for start in range(0, len(uids), batch):
            for data in client.fetch(uids[start:start + batch], ["RFC822"]).values():
                mail = email.message_from_bytes(data[b"RFC822"], policy=email.policy.default)
                reply = EmailMessage()
                reply["From"], reply["To"] = "shop@example.test", mail["From"]
                reply["Subject"] = f"Re: {mail['Subject']}"
                body = mail.get_body(preferencelist=("plain",))
                reply.set_content(f"Thanks for writing.\n\n> {(body.get_content() if body else '')[:200]}")
                out.send_message(reply)
                sent += 1
    seconds = time.monotonic() - started
    return {"messages": sent, "seconds": round(seconds, 2), "per_s": round(sent / seconds, 1)}


def _throwaway_database(base_url: str | None):
    if not base_url:
        return None, None
    import psycopg

    name = f"deskhand_bench_{uuid.uuid4().hex[:10]}"
    parsed = make_url(base_url)
    admin = psycopg.connect(host=parsed.host or "127.0.0.1", port=parsed.port or 5432, user=parsed.username,
                            password=parsed.password, dbname=parsed.database or "postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    return admin, (name, parsed.set(database=name).render_as_string(hide_password=False))


def _progress(engine) -> tuple[int, int, int]:
    """(inbound messages stored, of them still waiting to be processed, replies not yet sent)."""
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM message WHERE direction = 'in'")).scalar()
            waiting = conn.execute(text("SELECT count(*) FROM message WHERE direction = 'in' "
                                        "AND status = 'received'")).scalar()
            unsent = conn.execute(text("SELECT count(*) FROM outbox WHERE status IN "
                                       "('queued', 'retry', 'sending')")).scalar()
        return stored, waiting, unsent
    except Exception:  # not migrated yet
        return 0, 0, 0


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_daemon(messages: int, dovecot: Dovecot, smtp: SmtpCapture, folder: Path, url: str,
               profile: str | None) -> dict:
    config = write_settings(folder, database_url=url, dovecot=dovecot, smtp=smtp, extra=NO_LIMITS,
                            email_extra="answer_backlog_days = 7\nfetch_batch = 100")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", PASSWORD_ENV: dovecot.password}
    log_path = folder / "daemon.log"
    engine = create_engine(url)
    started = time.monotonic()
    daemon = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(config)],
                              stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    spy = None
    if profile:
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(daemon.pid), "--format", "speedscope",
                                "-o", profile, "--rate", "50", "--threads", "--idle", "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marks: dict[str, float] = {}
    try:
        deadline = started + 300 + messages
        while True:
            now = time.monotonic()
            log = log_path.read_text(errors="replace") if log_path.exists() else ""
            if "first_poll" not in marks and "watching " in log:
                marks["first_poll"], cpu_start = now, _cpu_seconds(daemon.pid)
            if "ready" not in marks and "ready: knowledge search warmed up" in log:
                marks["ready"] = now
            stored, waiting, unsent = _progress(engine) if "first_poll" in marks else (0, 0, 0)
            if stored >= messages and not waiting and not unsent:
                marks["done"], cpu = now, _cpu_seconds(daemon.pid) - cpu_start
                break
            if now > deadline or daemon.poll() is not None:
                raise SystemExit(f"the daemon did not finish ({stored} stored, {waiting} waiting, {unsent} unsent); "
                                 f"see {log_path}")
            time.sleep(0.2)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        if spy:
            spy.wait(timeout=120)
        with engine.connect() as conn:
            routes = dict(conn.execute(text("SELECT route, count(*) FROM draft GROUP BY route")).all())
        engine.dispose()
    busy = marks["done"] - marks["first_poll"]
    return {"messages": messages, "start_to_first_poll_s": round(marks["first_poll"] - started, 1),
            "start_to_ready_s": round(marks.get("ready", marks["done"]) - started, 1),
            "seconds": round(busy, 1), "per_s": round(messages / busy, 1),
            "cpu_ms_per_message": round(cpu * 1000 / messages, 1), "cores_busy": round(cpu / busy, 2), "emails_sent": len(smtp.messages),
            "routes": routes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server to make a throwaway database on")
    parser.add_argument("--profile", default=None, help="py-spy speedscope output for the daemon")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    require_dovecot()
    admin, pg = _throwaway_database(args.database_url)
    try:
        with tempfile.TemporaryDirectory(prefix="deskhand-backlog-") as tmp, Dovecot() as dovecot:
            folder = Path(tmp)
            url = pg[1] if pg else f"sqlite:///{folder / 'deskhand.db'}"
            with dovecot.connect(timeout=60) as client:
                for n in range(args.messages):
                    client.append("INBOX", mixed_mail(n))
            with SmtpCapture() as bare:
                base = floor(dovecot, bare)
            with SmtpCapture() as smtp:
                ours = run_daemon(args.messages, dovecot, smtp, folder, url, args.profile)
    finally:
        if admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{pg[0]}" WITH (FORCE)')
            admin.close()
    ratio = ours["per_s"] / base["per_s"]
    if args.json:
        print(json.dumps({"floor": base, "deskhand": ours, "ratio": round(ratio, 3)}))
        return 0
    database = "PostgreSQL" if pg else "SQLite"
    print(f"{args.messages} mixed emails waiting in Dovecot, one daemon, offline drafter, local embeddings, "
          f"{database}, {os.cpu_count()} cores\n")
    print("| loop | messages | seconds | messages/s | share of the floor |")
    print("|---|---|---|---|---|")
    print(f"| bare fetch, parse and send (the I/O floor) | {base['messages']} | {base['seconds']} | "
          f"{base['per_s']} | 100% |")
    print(f"| Deskhand, first poll to last reply | {ours['messages']} | {ours['seconds']} | {ours['per_s']} | "
          f"{ratio:.1%} |")
    print(f"\nTarget ≥ 50 messages/s: {'met' if ours['per_s'] >= 50 else 'missed'}. "
          f"Start-up apart: first poll {ours['start_to_first_poll_s']} s, ready {ours['start_to_ready_s']} s "
          f"after the process started. Replies sent: {ours['emails_sent']}; routes {ours['routes']}. "
          f"Daemon CPU: {ours['cpu_ms_per_message']} ms a message, {ours['cores_busy']} cores busy on average.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
