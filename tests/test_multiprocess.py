"""Several daemons on one PostgreSQL (issue 7): the job lock itself, daemons starting together on
a fresh database, two processes syncing one knowledge index, and three daemon processes
answering one Dovecot mailbox while a stream of mail arrives and the process holding the poll
lock is SIGKILLed halfway through the stream: every message stored once, routed once and
answered exactly once.
"""
from __future__ import annotations

import collections
import email
import email.policy
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing

import pytest
from conftest import _pg_admin_connect
from daemons import QUESTIONS, all_done, start_daemon, wait_until
from helpers import PASSWORD_ENV, ROOT, customer_mail, write_settings
from sqlmodel import select

from channels.email.imap import ImapMailbox
from responder.core.db import Database
from responder.core.locks import job_lock, lock_key
from responder.core.models import Draft, Message, Outbox
from responder.core.settings import load_settings

MESSAGES = int(os.environ.get("DESKHAND_MULTIPROCESS_MESSAGES", "2000"))
STREAM_PER_SECOND = float(os.environ.get("DESKHAND_MULTIPROCESS_RATE", "25"))
PROCESSES = 3
# Questions the sample shop answers (five automatically, one with a holding reply from a person).
ANSWERED_QUESTIONS = QUESTIONS[:6]
# The same six questions from thousands of senders would trip the loop breaker and the hourly
# cap on automatic replies; those have their own tests. Here every message must get its reply.
NO_LIMITS = "[routing]\nmax_auto_replies_per_hour = 0\nloop_threshold = 1000000\n"
ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _schema(db: Database) -> str:
    with db.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT current_schema()").scalar()


def _holder(admin, key: int) -> tuple[int, str] | None:
    """(pid, application_name) of the backend holding advisory lock ``key``, if any."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF  # pg_locks shows the bigint as two unsigned halves
    return admin.execute(
        "SELECT l.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
        (unsigned >> 32, unsigned & 0xFFFF_FFFF)).fetchone()


# --- the lock ---------------------------------------------------------------------------------

@ON_POSTGRES
def test_job_lock_is_held_by_one_connection_at_a_time(database_url):
    first, second = Database(database_url), Database(database_url)
    try:
        with job_lock(first, "poll:shop@imap:993/INBOX") as mine:
            assert mine
            with job_lock(second, "poll:shop@imap:993/INBOX") as theirs:
                assert theirs is False
            with job_lock(second, "digest") as other_job:
                assert other_job, "another job's lock is independent"
            with job_lock(first, "poll:shop@imap:993/INBOX") as again:
                assert again is False, "a second connection of the same process does not get it either"
        with job_lock(second, "poll:shop@imap:993/INBOX") as theirs:
            assert theirs, "released on exit"
        with pytest.raises(RuntimeError):
            with job_lock(first, "digest") as mine:
                raise RuntimeError("the job failed")
        with job_lock(second, "digest") as theirs:
            assert theirs, "released when the job raised"
    finally:
        first.dispose()
        second.dispose()


@ON_POSTGRES
def test_job_lock_goes_with_its_connection(database_url, caplog):
    first, second = Database(database_url), Database(database_url)
    admin = _pg_admin_connect()
    key = lock_key("reminders", _schema(first))
    try:
        with job_lock(first, "reminders") as mine:
            assert mine
            pid, _ = _holder(admin, key)
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))  # PostgreSQL restarted, say
            wait_until(lambda: _holder(admin, key) is None, 10, "the server to drop the lock")
            with job_lock(second, "reminders") as theirs:
                assert theirs, "another process takes over at once"
        assert "the lock for reminders went with its database connection" in caplog.text
        with job_lock(first, "reminders") as mine:
            assert mine, "the dead connection was thrown away, the next one works"
    finally:
        admin.close()
        first.dispose()
        second.dispose()


@ON_POSTGRES
def test_job_lock_of_a_killed_process_is_released(database_url):
    code = ("import sys, time; from responder.core.db import Database; from responder.core.locks import job_lock\n"
            "with job_lock(Database(sys.argv[1]), 'digest') as mine:\n"
            "    print('held' if mine else 'busy', flush=True); time.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", code, database_url], stdout=subprocess.PIPE, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    db = Database(database_url)
    try:
        assert child.stdout.readline().strip() == b"held"
        with job_lock(db, "digest") as mine:
            assert mine is False
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)

        def free() -> bool:
            with job_lock(db, "digest") as mine:
                return mine
        wait_until(free, 10, "PostgreSQL to release the dead process's lock")
    finally:
        child.kill()
        db.dispose()


def test_lock_keys_are_stable_across_processes_and_apart_per_schema():
    code = "from responder.core.locks import lock_key; print(lock_key('poll:shop@imap:993/INBOX', 'shop_a'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345"})
    key = lock_key("poll:shop@imap:993/INBOX", "shop_a")
    assert int(other.stdout) == key and -2**63 <= key < 2**63
    assert key != lock_key("poll:shop@imap:993/INBOX", "shop_b") != lock_key("digest", "shop_a")


def test_job_lock_on_sqlite_is_always_granted(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'one.sqlite3'}")
    with job_lock(db, "digest") as mine, job_lock(db, "digest") as again:
        assert mine and again  # SQLite: one process, the lock is a formality
    db.dispose()


@ON_POSTGRES
@pytest.mark.timeout(180)
def test_daemons_started_together_migrate_a_fresh_database_once(tmp_path, database_url):
    config = write_settings(tmp_path, database_url=database_url)
    checks = [subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(config), "check"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT) for _ in range(3)]
    outputs = [c.communicate(timeout=150)[0].decode() for c in checks]
    assert [c.returncode for c in checks] == [0, 0, 0], outputs
    assert all("ok   settings and database: migrated" in out and "all set" in out for out in outputs)


# --- the knowledge index, shared on one machine ------------------------------------------------

SYNC_SCRIPT = """
import hashlib, logging, sys, time
from pathlib import Path
import numpy as np
from responder.knowledge.index import KnowledgeIndex

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
release = Path(sys.argv[3])

class HeldEmbedder:  # deterministic vectors; the first batch waits until the test says go
    name, dim = "test:sha256", 16
    def embed(self, texts):
        print("embedding", flush=True)
        while not release.exists():
            time.sleep(0.05)
        rows = np.array([[b / 255 + 0.01 for b in hashlib.sha256(t.encode()).digest()[:16]] for t in texts],
                        dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

report = KnowledgeIndex(Path(sys.argv[1]), Path(sys.argv[2]), HeldEmbedder(), root=Path(sys.argv[2])).sync()
print(f"added {report.added} unchanged {report.unchanged}", flush=True)
"""


@pytest.mark.timeout(120)
def test_two_processes_syncing_one_index_take_turns(tmp_path):
    shared, release = tmp_path / "shared-index", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", SYNC_SCRIPT, str(ROOT / "knowledge"), str(shared), str(release)]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env, text=True)
    second = None
    try:
        assert first.stdout.readline().strip() == "embedding"  # the first holds the lock, mid-write
        second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                  text=True)
        assert "waiting for another process to finish updating the knowledge index" in second.stdout.readline()
        release.touch()
        first_out, second_out = first.communicate(timeout=60)[0], second.communicate(timeout=60)[0]
    finally:
        for proc in (first, second):
            if proc:
                proc.kill()
    assert first.returncode == 0 and second.returncode == 0, (first_out, second_out)
    added = int(re.search(r"added (\d+)", first_out).group(1))
    assert added > 0 and f"added 0 unchanged {added}" in second_out, "the second found the work done"
    [folder] = [p for p in shared.iterdir() if p.is_dir()]
    with closing(sqlite3.connect(folder / "index.sqlite")) as db:
        keys = [key for (key,) in db.execute("SELECT key FROM entries")]
    assert len(keys) == len(set(keys)) == added, "no entry written twice"


def test_index_dir_setting_places_the_index(tmp_path, monkeypatch):
    from responder.knowledge.index import index_path
    from responder.ops.context import index_root

    config = write_settings(tmp_path, database_url="sqlite://")
    plain = load_settings(config)
    assert index_root(plain) is None
    assert index_path(plain.data_dir, ROOT / "knowledge", index_root(plain)).parent == plain.data_dir / "index"
    monkeypatch.setenv("DESKHAND_KNOWLEDGE__INDEX_DIR", "../shared-index")  # relative to the settings file
    shared = load_settings(config)
    assert index_root(shared) == (tmp_path.parent / "shared-index").resolve()
    assert index_path(shared.data_dir, ROOT / "knowledge", index_root(shared)).parent == index_root(shared)


# --- three daemons, one mailbox -----------------------------------------------------------------

def question(n: int) -> bytes:
    return customer_mail(ANSWERED_QUESTIONS[n % len(ANSWERED_QUESTIONS)], sender=f"buyer{n}@shoppers.test",
                         message_id=f"<mp{n}@shoppers.test>", subject=f"order question {n}")


class Stream(threading.Thread):
    """Appends ``total`` customer mails to the mailbox at a steady rate, as mail arrives."""

    def __init__(self, dovecot, total: int, per_second: float):
        super().__init__(name="mail-stream", daemon=True)
        self.dovecot, self.total, self.per_second = dovecot, total, per_second
        self.appended = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            started = time.monotonic()
            with self.dovecot.connect(timeout=30) as client:
                for n in range(self.total):
                    client.append("INBOX", question(n))
                    self.appended = n + 1
                    time.sleep(max(0.0, started + self.appended / self.per_second - time.monotonic()))
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc


def _log_lines(path, pattern: str) -> int:
    return len(re.findall(pattern, path.read_text(errors="replace")))


@ON_POSTGRES
@pytest.mark.soak
@pytest.mark.timeout(600)
def test_three_daemons_answer_one_mailbox_exactly_once_when_one_is_killed(tmp_path, monkeypatch, dovecot,
                                                                            smtp_capture, database_url):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    config = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture,
                            email_extra="answer_backlog_days = 1\nfetch_batch = 50", extra=NO_LIMITS)
    db = Database(database_url)
    admin = _pg_admin_connect()
    mailbox = ImapMailbox(load_settings(config).email).key
    poll_key = lock_key(f"poll:{mailbox}", _schema(db))
    logs = [tmp_path / f"daemon{i}.log" for i in range(PROCESSES)]
    started = time.monotonic()
    # PGAPPNAME names each daemon's connections, so pg_stat_activity shows who holds the poll lock.
    procs = [start_daemon(config, logs[i], env={"PGAPPNAME": f"deskhand-{i}"}) for i in range(PROCESSES)]
    stream = Stream(dovecot, MESSAGES, STREAM_PER_SECOND)
    try:
        wait_until(lambda: all(_log_lines(p, "ready: knowledge search warmed up") for p in logs), 240,
                   "three daemons to start")
        startup = time.monotonic() - started
        stream.start()
        # Halfway through the stream, with replies going out (every daemon is mid-work).
        wait_until(lambda: stream.error or (stream.appended >= MESSAGES // 2
                                            and len(smtp_capture.messages) >= MESSAGES // 4), 300, "half of the stream")
        # Kill the daemon holding the poll lock if one is polling now, else the first one.
        victim, deadline = 0, time.monotonic() + 10
        while time.monotonic() < deadline:
            holder = _holder(admin, poll_key)
            if holder and holder[1].startswith("deskhand-"):
                victim = int(holder[1].rsplit("-", 1)[1])
                break
            time.sleep(0.02)
        killed_the_poller = holder is not None
        replies_at_kill = len(smtp_capture.messages)
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait(timeout=10)
        stream.join(timeout=300)
        assert stream.error is None and stream.appended == MESSAGES
        wait_until(lambda: all_done(db, MESSAGES), 300, f"all {MESSAGES} messages to be handled")
        finished = time.monotonic()
        for i, proc in enumerate(procs):
            if i != victim:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            proc.kill()
        admin.close()

    with db.transaction() as session:
        inbound = session.exec(select(Message).where(Message.direction == "in")).all()
        drafts = session.exec(select(Draft)).all()
        outbox = session.exec(select(Outbox)).all()
    db.dispose()
    assert len(inbound) == MESSAGES == len({m.provider_id for m in inbound}), "every message stored once"
    assert len(drafts) == MESSAGES == len({d.message_id for d in drafts}), "every message routed once"
    assert {d.route for d in drafts} <= {"auto", "handoff"}

    replies = [email.message_from_bytes(m.data, policy=email.policy.default) for m in smtp_capture.messages]
    per_original = collections.Counter(str(r["In-Reply-To"]) for r in replies)
    assert per_original and per_original.most_common(1)[0][1] == 1, "no reply sent twice"
    # A reply the killed daemon had handed to SMTP but not yet marked sent stays ``sending``
    # (``unknown`` once its lease runs out): never re-sent, and there can be at most one.
    in_doubt = [o for o in outbox if o.status in ("sending", "unknown")]
    assert len(in_doubt) <= 1 and {o.status for o in outbox} <= {"sent", "sending", "unknown"}
    expected = {f"<mp{n}@shoppers.test>" for n in range(MESSAGES)}
    assert set(per_original) <= expected
    missing = expected - set(per_original)
    assert missing <= {f"<{(o.in_reply_to or '').strip('<>')}>" for o in in_doubt}, f"{len(missing)} messages never answered"

    processed = [_log_lines(p, r"deskhand\.pipeline: message \d+ from") for p in logs]
    stored = [_log_lines(p, r"stored \d+ new message") for p in logs]
    survivors = [i for i in range(PROCESSES) if i != victim]
    assert all(processed[i] for i in survivors), f"the work is shared: {processed}"
    assert sum(stored[i] for i in survivors), "the survivors went on polling"
    seconds = max(m.received_at for m in smtp_capture.messages) - min(m.received_at for m in smtp_capture.messages)
    print(f"\n{MESSAGES} messages, {PROCESSES} daemons (start-up {startup:.1f} s), killed daemon {victim} "
          f"({'the poller' if killed_the_poller else 'not polling then'}) at {replies_at_kill} replies; "
          f"processed per daemon {processed}, polls that stored mail {stored}; replies {len(replies)} over "
          f"{seconds:.1f} s ({len(replies) / max(seconds, 0.001):.1f}/s, stream {STREAM_PER_SECOND:g}/s); "
          f"in doubt {len(in_doubt)}; wall {finished - started:.1f} s")
