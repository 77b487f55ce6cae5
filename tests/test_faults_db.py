"""Database faults, injected: SQLite under concurrent writers, a full disk mid-write, a full or
read-only data folder at start-up, and PostgreSQL stopped and restarted under a running daemon.

Each test breaks a real database (a SQLite file; a private PostgreSQL cluster from
``tests/pgcluster.py``, never the shared one on 5432) and asserts the stored outcome: every
message stored once and handled once, no row claimed twice, nothing half-written, and one
plain line (not a traceback) on the terminal or in the log.
"""
from __future__ import annotations

import collections
import contextlib
import email
import email.policy
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import pytest
from daemons import cursor_ready, start_daemon, wait_until
from helpers import PASSWORD_ENV, ROOT, customer_mail, run_until_idle, write_settings
from pgcluster import pg_cluster  # noqa: F401  (fixture)
from servers import free_port
from sqlalchemy import event, inspect
from sqlmodel import func, select

from responder.core.db import Database, DatabaseUnavailable, ensure_writable
from responder.core.models import Draft, Message, Outbox
from responder.core.settings import load_settings
from responder.draft import make_drafter
from responder.intake.store import store_inbound_email
from responder.ops.context import Context, build_context
from responder.ops.jobs import poll_mailbox, process_pending
from responder.ops.sending import claim_outbound, record_result

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    """One knowledge index for the module (the daemon too): embedding the shop takes seconds."""
    return tmp_path_factory.mktemp("index")


@pytest.fixture(scope="module")
def retriever(tmp_path_factory, index_dir):
    """The sample shop's retriever, built once: loading the model takes seconds."""
    folder = tmp_path_factory.mktemp("shared")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DESKHAND_KNOWLEDGE__INDEX_DIR", str(index_dir))
        settings = load_settings(write_settings(folder, database_url="sqlite:///:memory:"))
    retriever = build_context(settings, migrate=False, database_url="sqlite:///:memory:").retriever
    # Load the embedding model now, as the daemon's warm-up does: loading it inside the first
    # message's transaction (seconds on a busy machine) would hold SQLite's write lock meanwhile.
    retriever.search("warm-up", k=1)
    return retriever


def context_for(settings_path: Path, retriever) -> Context:
    settings = load_settings(settings_path)
    db = Database(settings.database_url)
    db.migrate()
    return Context(settings=settings, db=db, drafter=make_drafter(settings), retriever=retriever)


def _mail(tag: str, n: int) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = f"{tag}-{n}@shoppers.test", "shop@example.test", "shipping"
    msg["Message-ID"] = f"<{tag}-{n}@shoppers.test>"
    msg.set_content("How much is shipping?" if n % 2 else "Do you ship to the UK?")
    return msg.as_bytes()


# --- SQLite: several writers at once -------------------------------------------------------------

# A writer in another process: stores inbound mail, one transaction per message, for a few seconds.
WRITER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from email.message import EmailMessage
from responder.core.db import Database
from responder.intake.store import store_inbound_email

url, tag, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
db, stored, errors, n = Database(url), [], [], 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    n += 1
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = f"{tag}-{n}@shoppers.test", "shop@example.test", "shipping"
    msg["Message-ID"] = f"<{tag}-{n}@shoppers.test>"
    msg.set_content("How much is shipping?")
    try:
        with db.transaction() as session:
            if store_inbound_email(session=session, raw=msg.as_bytes(), mailbox=tag, uidvalidity=1, uid=n):
                stored.append(f"{tag}-{n}@shoppers.test")
    except Exception as exc:
        errors.append(f"{tag}: {type(exc).__name__}: {exc}"[:300])
print(json.dumps({"stored": stored, "errors": errors}))
"""


@pytest.mark.timeout(150)
def test_sqlite_concurrent_writers_never_lock_and_never_claim_twice(tmp_path, retriever):
    """For 3 s: two intake processes, two intake threads, the process job, two send-job claimers
    and a page reader, all on one SQLite file. No "database is locked", no lost or doubled row,
    no reply claimed by two senders."""
    url = f"sqlite:///{tmp_path / 'deskhand.sqlite3'}"
    ctx = context_for(write_settings(tmp_path, database_url=url), retriever)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), url, f"proc{i}", "3"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    stored: list[str] = []
    errors: list[str] = []
    claimed: list[int] = []
    reads = [0]
    stop = threading.Event()

    def guarded(name, step):
        def loop():
            while not stop.is_set():
                try:
                    step()
                except Exception as exc:
                    errors.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
                # A breath between steps, as real jobs and page loads have: seven threads spinning
                # back to back in one process starve the one holding the write lock of the GIL, and
                # that measures Python's scheduler, not SQLite's locking.
                time.sleep(0.005)
        return threading.Thread(target=loop, name=name)

    def intake(tag: str):
        counter = iter(range(1, 10**6))

        def step():
            n = next(counter)
            with ctx.db.transaction() as session:
                if store_inbound_email(session=session, raw=_mail(tag, n), mailbox=tag, uidvalidity=1, uid=n):
                    stored.append(f"{tag}-{n}@shoppers.test")
        return step

    def process():
        if not process_pending(ctx, limit=20):
            time.sleep(0.02)

    def send():  # the send job without SMTP: claim a reply, record it as sent
        item = claim_outbound(ctx, "email")
        if item is None:
            time.sleep(0.02)
            return
        claimed.append(item.outbox_id)
        record_result(ctx, item, provider_id=f"<sent-{item.outbox_id}@test>")

    def read_page():  # what /healthz and the dashboard do while the jobs write
        with ctx.db.read() as session:
            session.exec(select(Message.status, func.count()).group_by(Message.status)).all()
            session.exec(select(Draft.route, func.count()).group_by(Draft.route)).all()
        reads[0] += 1

    threads = [guarded(f"thread{i}", intake(f"thread{i}")) for i in range(2)]
    threads += [guarded("process", process), guarded("send-a", send), guarded("send-b", send),
                guarded("reader", read_page)]
    for thread in threads:
        thread.start()
    try:
        results = [json.loads(w.communicate(timeout=120)[0] or "{}") for w in writers]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    for result in results:
        stored += result.get("stored", [])
        errors += result.get("errors", [])
    run_until_idle(ctx)
    while (item := claim_outbound(ctx, "email")) is not None:
        claimed.append(item.outbox_id)
        record_result(ctx, item, provider_id="late")
    with ctx.db.read() as session:
        inbound = session.exec(select(Message).where(Message.direction == "in")).all()
        drafts = session.exec(select(Draft)).all()
        outbox = session.exec(select(Outbox)).all()
    assert not errors, errors[:5]
    assert len(stored) >= 20 and reads[0] > 0, (len(stored), reads[0])
    assert sorted(m.provider_id for m in inbound) == sorted(stored), "every stored message is there, once"
    # A lock error inside the process job would show here: it is retried, then quarantined.
    assert [(m.id, m.attempts, m.last_error) for m in inbound if m.attempts or m.last_error] == []
    assert {m.status for m in inbound} == {"processed"}
    assert sorted(d.message_id for d in drafts) == sorted(m.id for m in inbound)
    doubled = [oid for oid, n in collections.Counter(claimed).items() if n > 1]
    assert doubled == [], f"replies claimed by two senders: {doubled[:5]}"
    assert sorted(claimed) == sorted(o.id for o in outbox) and {o.status for o in outbox} == {"sent"}
    ctx.db.dispose()


def test_a_page_reading_sqlite_does_not_wait_for_a_writer(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'deskhand.sqlite3'}")
    db.migrate()
    holding, release = threading.Event(), threading.Event()

    def writer():  # a unit of work that takes its time (an LLM call inside the transaction)
        with db.transaction() as session:
            store_inbound_email(session=session, raw=_mail("slow", 1), mailbox="INBOX", uidvalidity=1, uid=1)
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(30)
        started = time.monotonic()
        with db.read() as session:
            assert session.exec(select(func.count()).select_from(Message)).one() == 0  # not committed yet
        assert time.monotonic() - started < 2
    finally:
        release.set()
        thread.join()
    with db.read() as session:
        assert session.exec(select(func.count()).select_from(Message)).one() == 1
    db.dispose()


# --- a full disk in the middle of a unit of work ---------------------------------------------------

@contextlib.contextmanager
def database_size_frozen(db: Database):
    """Every connection may use only the pages the file has now: the next page is SQLITE_FULL,
    "database or disk is full", exactly what a full disk gives, at a chosen moment."""
    raw = db.engine.raw_connection()
    try:
        pages = raw.driver_connection.execute("PRAGMA page_count").fetchone()[0]
    finally:
        raw.close()

    def limit(dbapi_conn, _record):
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(db.engine, "connect", limit)
    db.engine.dispose()
    try:
        yield
    finally:
        event.remove(db.engine, "connect", limit)
        db.engine.dispose()


def _long_question(n: int) -> bytes:
    # A short question over a long quoted history: storing it, and storing its parsed text,
    # needs new pages, while the question itself is one the bot answers on its own.
    quoted = "".join(f"> Order {n}-{line}: two Amber Noir candles, shipped by standard post.\n" for line in range(600))
    return customer_mail(f"How much is shipping?\n\nOn Mon, 6 Jan 2025 at 10:00, Wick & Willow "
                         f"<shop@example.test> wrote:\n{quoted}", sender=f"aunt{n}@customer.test",
                         subject=f"shipping {n}")


@pytest.mark.timeout(120)
def test_a_full_disk_mid_write_rolls_back_and_the_work_resumes_once_there_is_room(
        tmp_path, monkeypatch, dovecot, smtp_capture, retriever, caplog):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    url = f"sqlite:///{tmp_path / 'deskhand.sqlite3'}"
    ctx = context_for(write_settings(tmp_path, database_url=url, dovecot=dovecot, smtp=smtp_capture,
                                     email_extra="answer_backlog_days = 1"), retriever)
    dovecot.append(_long_question(1))
    assert poll_mailbox(ctx) == 1
    caplog.set_level(logging.WARNING)
    with database_size_frozen(ctx.db):
        with pytest.raises(DatabaseUnavailable, match="full"):
            process_pending(ctx)  # the draft, the reply and the thread need room
        dovecot.append(_long_question(2))
        with pytest.raises(DatabaseUnavailable, match="full"):
            poll_mailbox(ctx)  # storing the second mail needs room
        with ctx.db.read() as session:
            [first] = session.exec(select(Message)).all()
            assert (first.status, first.attempts, first.last_error) == ("received", 0, None)
            assert session.exec(select(func.count()).select_from(Draft)).one() == 0
            assert session.exec(select(func.count()).select_from(Outbox)).one() == 0
    with ctx.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    full = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(full) == 1 and full[0].levelname == "WARNING" and not full[0].exc_info
    run_until_idle(ctx)  # room again: both are stored, processed and answered, once each
    with ctx.db.read() as session:
        inbound = session.exec(select(Message).where(Message.direction == "in")).all()
        drafts = session.exec(select(Draft)).all()
    assert [(m.uid, m.status, m.attempts) for m in inbound] == [(1, "processed", 0), (2, "processed", 0)]
    assert sorted(d.message_id for d in drafts) == sorted(m.id for m in inbound)
    replies = smtp_capture.wait_for(2, timeout=10)
    assert len(replies) == 2 and len({r.message()["In-Reply-To"] for r in replies}) == 2
    assert any("answers again" in r.getMessage() for r in caplog.records)
    ctx.db.dispose()


def test_a_migration_on_a_full_disk_leaves_no_half_schema(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'deskhand.sqlite3'}")
    with database_size_frozen(db):  # an empty file: the first table needs a page
        with pytest.raises(DatabaseUnavailable, match="full"):
            db.migrate()
        with db.engine.connect() as conn:
            assert inspect(conn).get_table_names() == [], "nothing half-migrated"
    db.migrate()  # room again: the next start migrates from scratch
    with db.engine.connect() as conn:
        tables = inspect(conn).get_table_names()
        assert {"message", "draft", "outbox", "alembic_version"} <= set(tables)
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    db.dispose()


# --- a read-only or full data folder at start-up ---------------------------------------------------

def _missing_privilege(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _unmount(path: Path) -> None:
    # Lazily if something still holds a file there: never leave a mount behind.
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` as the daemon would find it on a read-only disk. Root ignores file modes, so
    as root this is a read-only bind mount; as anyone else, chmod is enough."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if not (shutil.which("mount") and _mount("--bind", str(folder), str(folder))):
        _missing_privilege("mounting is not permitted here (a read-only bind mount is how root "
                           "sees a read-only data folder)")
    try:
        if not _mount("-o", "remount,ro,bind", str(folder)):
            _missing_privilege("remounting read-only is not permitted here")
        yield
    finally:
        _unmount(folder)


def _start(config: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), *command],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def _assert_one_clear_line(done: subprocess.CompletedProcess, folder: Path, what: str) -> None:
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0, lines
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert str(folder) in lines[0] and what in lines[0] and "data_dir" in lines[0], lines


@pytest.mark.timeout(120)
def test_check_and_daemon_refuse_a_read_only_data_folder_and_touch_nothing(tmp_path):
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'deskhand.sqlite3'}"
    config = write_settings(tmp_path, database_url=url, web_port=free_port())
    db = Database(url)
    db.migrate()
    db.dispose()
    before = {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()}
    with read_only(data):
        for command in (["check"], []):  # `check`, and the daemon itself
            _assert_one_clear_line(_start(config, *command), data, "read-only" if os.geteuid() == 0 else "writable")
    assert {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()} == before


@pytest.mark.timeout(120)
def test_check_refuses_a_full_data_folder_and_passes_once_there_is_room(tmp_path):
    if os.geteuid() != 0:
        _missing_privilege("a full disk needs a small tmpfs, and mounting one needs root")
    data = Path(tempfile.mkdtemp(prefix="full-", dir="/tmp"))
    if not _mount("-t", "tmpfs", "-o", "size=24m", "tmpfs", str(data)):
        data.rmdir()
        _missing_privilege("mounting a tmpfs is not permitted here")
    try:
        url = f"sqlite:///{data / 'deskhand.sqlite3'}"
        db = Database(url)
        db.migrate()
        db.dispose()
        config = write_settings(tmp_path, database_url=url, web_port=free_port())
        filler = data / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as f:  # fill the disk to the last block
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        before = (data / "deskhand.sqlite3").read_bytes()
        _assert_one_clear_line(_start(config, "check"), data, "full")  # the daemon starts the same way
        assert (data / "deskhand.sqlite3").read_bytes() == before
        filler.unlink()
        ensure_writable(data)  # room again: the next start goes ahead
        db = Database(url)
        db.migrate()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        db.dispose()
    finally:
        _unmount(data)
        shutil.rmtree(data, ignore_errors=True)


# --- PostgreSQL stopped and restarted ----------------------------------------------------------------

def test_postgres_going_away_is_one_warning_and_the_pool_recovers(pg_cluster, caplog):  # noqa: F811
    db = Database(pg_cluster.url)
    db.migrate()
    with db.transaction() as session:
        store_inbound_email(session=session, raw=_mail("pg", 1), mailbox="INBOX", uidvalidity=1, uid=1)
    caplog.set_level(logging.INFO, logger="deskhand.db")
    pg_cluster.stop()
    for _ in range(5):  # the jobs keep trying on their interval
        with pytest.raises(DatabaseUnavailable, match="unavailable"):
            with db.transaction() as session:
                session.exec(select(Message)).all()
    pg_cluster.start()
    with db.transaction() as session:  # pooled connections died with the server: pre-ping replaces them
        store_inbound_email(session=session, raw=_mail("pg", 2), mailbox="INBOX", uidvalidity=1, uid=2)
    pg_cluster.restart()  # killed under an idle pool, without any failed query in between
    with db.transaction() as session:
        assert session.exec(select(func.count()).select_from(Message)).one() == 2
    lines = [r for r in caplog.records if r.name == "deskhand.db"]
    assert [r.levelname for r in lines] == ["WARNING", "WARNING"], [r.getMessage() for r in lines]
    assert "is unavailable" in lines[0].getMessage() and f":{pg_cluster.port}" in lines[0].getMessage()
    assert "answers again" in lines[1].getMessage() and not any(r.exc_info for r in caplog.records)
    db.dispose()


@pytest.mark.timeout(60)
def test_a_sent_reply_is_recorded_after_the_database_comes_back(pg_cluster):  # noqa: F811
    """SMTP took the reply while PostgreSQL was down: record it when the database is back rather
    than leave the row ``sending`` (to turn ``unknown`` at the lease's end)."""
    db = Database(pg_cluster.url)
    db.migrate()
    from responder.send import outbox
    with db.transaction() as session:
        outbox.enqueue(session=session, draft_id=None, thread_id=None, channel="email", kind="notify",
                       recipient="owner@example.test", subject="s", body_text="b", message_id="<o1@test>")
    ctx = Context(settings=None, db=db, drafter=None, retriever=None)
    item = claim_outbound(ctx, "email")
    pg_cluster.stop()
    timer = threading.Timer(3, pg_cluster.start)
    timer.start()
    try:
        record_result(ctx, item, provider_id="<o1@test>")  # waits for the database, then records
    finally:
        timer.join()
    with db.read() as session:
        assert session.get(Outbox, item.outbox_id).status == "sent"
    db.dispose()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.timeout(240)
def test_daemon_rides_out_a_postgres_restart_without_losing_or_doubling_mail(
        tmp_path, monkeypatch, dovecot, smtp_capture, pg_cluster, index_dir, retriever):  # noqa: F811
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    monkeypatch.setenv("DESKHAND_KNOWLEDGE__INDEX_DIR", str(index_dir))  # already built: a quicker start
    port = free_port()
    config = write_settings(tmp_path, database_url=pg_cluster.url, dovecot=dovecot, smtp=smtp_capture,
                            web_port=port, extra="[routing]\nloop_threshold = 100\n")  # same question, many senders
    log_path = tmp_path / "daemon.log"
    db = Database(pg_cluster.url)
    sent = [0]

    def deliver(n: int) -> None:
        for _ in range(n):
            sent[0] += 1
            dovecot.append(customer_mail("How much is shipping?", sender=f"c{sent[0]}@shoppers.test",
                                         message_id=f"<pg{sent[0]}@shoppers.test>", subject=f"question {sent[0]}"))

    proc = start_daemon(config, log_path)
    try:
        wait_until(lambda: cursor_ready(db), 120, "the daemon's first poll")
        deliver(3)
        smtp_capture.wait_for(3, timeout=60)
        pg_cluster.stop()  # mail keeps arriving while the database is down
        deliver(3)
        wait_until(lambda: "is unavailable" in log_path.read_text(), 30, "the daemon to notice")
        status, _ = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503  # the web pages answer, plainly
        time.sleep(2)  # the outage lasts a little: poll and process runs fail meanwhile
        pg_cluster.start()
        deliver(3)
        smtp_capture.wait_for(9, timeout=90)
        pg_cluster.restart()  # again, this time between two mails: idle pooled connections die
        deliver(2)
        smtp_capture.wait_for(11, timeout=90)
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["routes"] == {"auto": 11}
        assert proc.poll() is None, "the daemon is still running"
        proc.send_signal(15)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    with db.read() as session:
        inbound = session.exec(select(Message).where(Message.direction == "in")).all()
        drafts = session.exec(select(Draft)).all()
        outbox = session.exec(select(Outbox)).all()
    db.dispose()
    assert sorted(m.provider_id for m in inbound) == sorted(f"pg{n}@shoppers.test" for n in range(1, 12))
    assert sorted(d.message_id for d in drafts) == sorted(m.id for m in inbound), "each handled once"
    assert {o.status for o in outbox} == {"sent"} and len(outbox) == 11
    replies = [email.message_from_bytes(m.data, policy=email.policy.default) for m in smtp_capture.messages]
    assert sorted(r["In-Reply-To"] for r in replies) == sorted(f"<pg{n}@shoppers.test>" for n in range(1, 12))
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    outages = [line for line in log.splitlines() if "deskhand.db:" in line]
    assert len(outages) == 2 and "is unavailable" in outages[0] and "answers again" in outages[1], outages
