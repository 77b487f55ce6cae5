#!/usr/bin/env python3
"""Several daemons on one PostgreSQL: replies per second with 1 daemon process, then with 3.

    python bench/processes.py [--messages 2000] [--processes 1,3] [--database-url URL] [--json]

Each run gets a fresh Dovecot mailbox (tests/servers.py) holding ``--messages`` customer emails
(appended once every daemon is up), an aiosmtpd capture, and a fresh PostgreSQL database
(``CREATE DATABASE`` on the server of ``--database-url`` / $DESKHAND_BENCH_DATABASE_URL, default
postgres@127.0.0.1:5432, dropped afterwards). The daemons are real ``run.py`` processes with the
offline drafter; the rate is replies captured per second from the first reply to the last, and
start-up (imports, the embedding model: until every daemon logs "ready") is reported apart. The questions are ones
the sample shop answers, each from its own sender, with the hourly cap and the loop breaker off.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import PASSWORD_ENV, customer_mail, write_settings  # noqa: E402
from servers import Dovecot, SmtpCapture, require_dovecot  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
QUESTIONS = ["How much is shipping?", "Can I return a candle I haven't used?", "Do you ship to the UK?",
             "What are your candles made of?", "Do you sell gift cards?", "Can I talk to a real person?"]
NO_LIMITS = "[routing]\nmax_auto_replies_per_hour = 0\nloop_threshold = 1000000\n"


def _admin(url: str):
    import psycopg

    parsed = make_url(url)
    return psycopg.connect(host=parsed.host or "127.0.0.1", port=parsed.port or 5432, user=parsed.username,
                           password=parsed.password, dbname=parsed.database or "postgres", autocommit=True)


def run_once(processes: int, messages: int, base_url: str, folder: Path) -> dict:
    """One measurement: fresh mailbox, capture and database; ``processes`` daemons."""
    database = f"deskhand_bench_{uuid.uuid4().hex[:10]}"
    admin = _admin(base_url)
    admin.execute(f'CREATE DATABASE "{database}"')
    url = make_url(base_url).set(database=database).render_as_string(hide_password=False)
    daemons: list[subprocess.Popen] = []
    try:
        with Dovecot() as dovecot, SmtpCapture() as smtp:
            config = write_settings(folder, database_url=url, dovecot=dovecot, smtp=smtp, extra=NO_LIMITS,
                                    email_extra="answer_backlog_days = 1\nfetch_batch = 50")
            env = {**os.environ, "PYTHONUNBUFFERED": "1", PASSWORD_ENV: dovecot.password}
            started = time.monotonic()
            logs = [folder / f"daemon{i}.log" for i in range(processes)]
            for log in logs:
                daemons.append(subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(config)],
                                                stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env, cwd=ROOT))
            # Start-up is not throughput: the mail arrives once every daemon has its model loaded.
            while not all(log.exists() and "ready: knowledge search warmed up" in log.read_text() for log in logs):
                if time.monotonic() > started + 300 or any(d.poll() is not None for d in daemons):
                    raise SystemExit(f"{processes} daemon(s) did not start; see the logs in {folder}")
                time.sleep(0.2)
            startup = time.monotonic() - started
            with dovecot.connect(timeout=30) as client:
                for n in range(messages):
                    client.append("INBOX", customer_mail(QUESTIONS[n % len(QUESTIONS)],
                                                         sender=f"buyer{n}@shoppers.test", subject=f"question {n}"))
            deadline = time.monotonic() + 120 + messages
            while len(smtp.messages) < messages:
                if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                    raise SystemExit(f"{processes} daemon(s): {len(smtp.messages)} of {messages} replies; "
                                     f"see the logs in {folder}")
                time.sleep(0.2)
            captured = smtp.messages
    finally:
        for daemon in daemons:
            daemon.terminate()
        for daemon in daemons:
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()
    first, last = min(m.received_at for m in captured), max(m.received_at for m in captured)
    seconds = max(last - first, 1e-6)
    return {"processes": processes, "messages": messages, "replies": len(captured),
            "startup_s": round(startup, 1),
            "seconds": round(seconds, 1), "replies_per_s": round(len(captured) / seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--processes", default="1,3", help="comma-separated daemon counts, one run each")
    parser.add_argument("--database-url", default=os.environ.get("DESKHAND_BENCH_DATABASE_URL", DEFAULT_URL),
                        help="a PostgreSQL server (and a database on it to connect to) where throwaway "
                             "databases may be created")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    args = parser.parse_args()
    require_dovecot()
    rows = []
    for count in [int(c) for c in args.processes.split(",")]:
        with tempfile.TemporaryDirectory(prefix=f"deskhand-bench-{count}p-") as folder:
            rows.append(run_once(count, args.messages, args.database_url, Path(folder)))
        if args.json:
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        return 0
    print(f"{args.messages} customer emails in one Dovecot mailbox, offline drafter, PostgreSQL, "
          f"{os.cpu_count()} cores\n")
    print("| daemons | replies | start-up s (all ready) | s first to last reply | replies/s | vs 1 daemon |")
    print("|---|---|---|---|---|---|")
    base = next((r["replies_per_s"] for r in rows if r["processes"] == 1), rows[0]["replies_per_s"])
    for row in rows:
        print(f"| {row['processes']} | {row['replies']} | {row['startup_s']} | {row['seconds']} | "
              f"{row['replies_per_s']} | {row['replies_per_s'] / base:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
