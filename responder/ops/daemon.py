"""The daemon: APScheduler jobs and the uvicorn web server on one asyncio loop.

``python run.py`` lands here. Jobs: poll (IMAP, on an interval and whenever IDLE reports new
mail), process (stored messages -> routed drafts) and send (the outbox). A job that finds work
kicks the next one, so a reply goes out seconds after the mail lands. SIGTERM or Ctrl-C stops
taking new work, lets the jobs in flight finish their current unit, and exits; anything not
finished is still in the database in a state the next start picks up. At start the local
embedding model is loaded at once (the log says "ready" when it is), and processing waits for it.

Several daemons may run on one PostgreSQL. Process and send need nothing more: they claim rows
with SKIP LOCKED. The mailbox poll and the scheduled jobs (digest, reminders, Twilio poll,
catalog feed, retention) run under a ``responder.core.locks.job_lock``: in one process at a time,
the others skip that run. Every process keeps its own IDLE connection; whichever hears of new
mail polls, if no other process is polling at that moment (the one that is, hears it too).
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import time
from datetime import datetime, timedelta, timezone

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from channels.email.imap import IMAP_ERRORS, IdleWatcher, ImapMailbox
from responder.core.db import DatabaseUnavailable
from responder.core.errors import ConfigError
from responder.core.models import Route
from responder.core.locks import job_lock
from responder.core.settings import WebSettings
from responder.intake import spool
from responder.intake.twilio_poll import poll_twilio
from responder.knowledge.catalog_sync import sync_catalog_job
from responder.ops import jobs, sending
from responder.ops.context import Context
from responder.ops.retention import purge_expired
from responder.owner.digest import digest_job
from responder.owner.owner_mail import send_reminders
from responder.pipeline import STEP_ASIDE_S

log = logging.getLogger("deskhand.daemon")
PROCESS_BATCH = 128   # messages per process run (4 prepared batches); a full run goes again at once
SEND_BATCH = 200


def _digest_job(ctx: Context) -> int:
    return digest_job(ctx)


def _twilio_poll_job(ctx: Context) -> int:
    return poll_twilio(ctx)


def _reminders_job(ctx: Context) -> int:
    return send_reminders(ctx)


def _retention_job(ctx: Context) -> int:
    return purge_expired(ctx)


def release_free_memory() -> None:
    """Hand the heap that start-up freed (model files read, the index built) back to the system:
    glibc keeps it otherwise, and the daemon's resident size is what a small server feels."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        pass


def locked(ctx: Context, name: str, fn):
    """``fn(ctx)`` run only by the process that holds the job lock ``name``; 0 for the others."""
    def run() -> int:
        with job_lock(ctx.db, name) as mine:
            if not mine:
                log.debug("%s: another daemon is running it", name)
                return 0
            return fn(ctx)
    return run


class Worker:
    """Runs one job function; a kick while it runs makes it run once more right after."""

    def __init__(self, name: str, fn, on_work=None, batch: int = 0):
        self.name, self.fn, self.on_work = name, fn, on_work
        self.batch = batch  # a run that did this much stopped at its limit: run again at once
        self.task: asyncio.Task | None = None
        self.again = False

    def kick(self) -> None:
        if self.task and not self.task.done():
            self.again = True
            return
        self.task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def tick(self) -> None:
        """The scheduler's entry: a coroutine, so APScheduler runs it on the event loop."""
        self.kick()

    async def _run(self) -> None:
        while True:
            self.again = False
            try:
                did = await self.fn()
            except ConfigError as exc:
                log.error("%s: %s", self.name, exc)
                did = 0
            except IMAP_ERRORS as exc:
                log.warning("%s: mailbox unreachable (%s); will retry", self.name, exc)
                did = 0
            except DatabaseUnavailable:  # responder.core.db logged it once for the whole outage
                did = 0
            except Exception:  # the daemon keeps running; the error is in the log
                log.exception("%s job failed", self.name)
                did = 0
            if did and self.on_work:
                self.on_work()
            if not self.again and not (self.batch and did >= self.batch):
                return

    async def wait(self) -> None:
        if self.task:
            with contextlib.suppress(Exception):
                await self.task


def server_config(app, web: WebSettings) -> uvicorn.Config:
    """uvicorn as the daemon runs it. X-Forwarded-For is believed only from ``[web] trusted_proxies``
    (uvicorn's default believes any loopback peer, so a header could name a new client per login
    guess behind a local proxy, or without one)."""
    return uvicorn.Config(app, host=web.host, port=web.port, log_level="warning", lifespan="off", access_log=False,
                          proxy_headers=bool(web.trusted_proxies),
                          forwarded_allow_ips=",".join(web.trusted_proxies) or None)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the daemon owns SIGTERM/SIGINT, not uvicorn
        yield


class Daemon:
    def __init__(self, ctx: Context, app=None):
        self.ctx = ctx
        self.app = app
        self.stop_event: asyncio.Event | None = None
        self.idle: IdleWatcher | None = None
        self.server: _Server | None = None
        cfg = ctx.settings.email
        self.send = Worker("send", lambda: sending.send_outbox(ctx, "email", SEND_BATCH), batch=SEND_BATCH)
        # Texts have their own worker, so an SMTP outage never holds up an SMS (and vice versa).
        self.texts = Worker("texts", lambda: sending.send_outbox(ctx, "texts", SEND_BATCH),
                            batch=SEND_BATCH)
        self.chat = Worker("chat", lambda: sending.send_outbox(ctx, "chat", SEND_BATCH), batch=SEND_BATCH)
        self.warmed: asyncio.Event | None = None
        self.process = Worker("process", self._process, on_work=self.kick_outbox, batch=PROCESS_BATCH)
        # One lock per mailbox: two daemons polling it at once would fetch the same mail twice.
        poll = locked(ctx, f"poll:{ImapMailbox(cfg).key}",
                      lambda c: jobs.poll_mailbox(c, on_stored=self.kick_process))  # each batch, at once
        self.poll = Worker("poll", lambda: asyncio.to_thread(poll), on_work=self.process.kick) \
            if cfg.imap_enabled else None
        # Every process keeps its own index in memory, so every process refreshes (no lock).
        self.knowledge = Worker("knowledge", lambda: asyncio.to_thread(ctx.retriever.refresh))
        catalog = locked(ctx, "catalog-sync", lambda c: sync_catalog_job(c.settings))
        self.catalog = Worker("catalog", lambda: asyncio.to_thread(catalog), on_work=self.knowledge.kick)
        digest, reminders = locked(ctx, "digest", _digest_job), locked(ctx, "reminders", _reminders_job)
        self.digest = Worker("digest", lambda: asyncio.to_thread(digest), on_work=self.kick_outbox)
        self.reminders = Worker("reminders", lambda: asyncio.to_thread(reminders), on_work=self.kick_outbox)
        twilio = ctx.settings.twilio
        twilio_poll = locked(ctx, "twilio-poll", _twilio_poll_job)
        self.twilio_poll = Worker("twilio-poll", lambda: asyncio.to_thread(twilio_poll),
                                  on_work=self.process.kick) if twilio.enabled and twilio.mode == "poll" else None
        retention = locked(ctx, "retention", _retention_job)
        self.retention = Worker("retention", lambda: asyncio.to_thread(retention)) \
            if ctx.settings.privacy.retention_days > 0 else None
        self.loop: asyncio.AbstractEventLoop | None = None
        if ctx.orders is not None:  # a lookup that made its message step aside brings it back
            ctx.orders.on_done = self.kick_process_soon

    async def _process(self) -> int:
        # Not before the warm-up: processing runs in a transaction, and on SQLite (one writer) a
        # model loading inside it would hold up every webhook and poll for those seconds.
        await self.warmed.wait()
        await asyncio.to_thread(spool.drain, self.ctx)  # texts kept while the database was away
        return await asyncio.to_thread(jobs.process_pending, self.ctx, PROCESS_BATCH, self.routed)

    def routed(self, channel: str, sender: str, route: str) -> None:
        """From the process job's thread, after each message: a chat visitor's reply goes out now,
        not once the whole run (up to PROCESS_BATCH messages) is done. A message that gets no reply
        at all ("thanks!") tells the panel at once, so its "typing" ends (a reply's send does that
        otherwise: waking every panel at each routing too cost the replies' tail, bench/chat.py)."""
        if channel == "chat" and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.chat.kick)
            if route in (Route.IGNORE, Route.THROTTLED):
                self.ctx.chat_hub.notify(sender)

    def kick_outbox(self) -> None:
        self.chat.kick()
        self.send.kick()
        self.texts.kick()

    def kick_send(self) -> None:
        """Safe from any thread (the web pages call it after an approval): send the outbox now."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.kick_outbox)

    def kick_process(self) -> None:
        """Safe from any thread (the Twilio webhook calls it): process the stored message now."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.process.kick)

    def kick_process_soon(self) -> None:
        """Safe from any thread (an order lookup that finished): process once the message that
        stepped aside for it is due again (``pipeline.STEP_ASIDE_S``)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.call_later, STEP_ASIDE_S + 0.05, self.process.kick)

    def stop(self) -> None:
        log.info("stopping: finishing the work in flight")
        self.ctx.stopping.set()
        if self.stop_event:
            self.stop_event.set()

    async def run(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        self.warmed = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        self.describe()
        scheduler = AsyncIOScheduler(timezone=timezone.utc)
        now = datetime.now(timezone.utc)
        workers = [w for w in (self.poll, self.process, self.send, self.texts, self.chat, self.knowledge, self.catalog,
                               self.digest, self.reminders, self.twilio_poll, self.retention) if w]
        if self.poll:
            scheduler.add_job(self.poll.tick, "interval", seconds=self.ctx.settings.email.poll_interval_s,
                              next_run_time=now, id="poll")
            if self.ctx.settings.email.idle:
                self.idle = IdleWatcher(self.ctx.settings.email,
                                        lambda: loop.call_soon_threadsafe(self.poll.kick))
                self.idle.start()
        scheduler.add_job(self.process.tick, "interval", seconds=5, next_run_time=now, id="process")
        scheduler.add_job(self.send.tick, "interval", seconds=10, next_run_time=now, id="send")
        scheduler.add_job(self.texts.tick, "interval", seconds=10, next_run_time=now, id="texts")
        scheduler.add_job(self.chat.tick, "interval", seconds=10, next_run_time=now, id="chat")
        if self.twilio_poll:
            scheduler.add_job(self.twilio_poll.tick, "interval", seconds=self.ctx.settings.twilio.poll_interval_s,
                              next_run_time=now, id="twilio-poll")
        knowledge = self.ctx.settings.knowledge
        scheduler.add_job(self.knowledge.tick, "interval", seconds=knowledge.refresh_s, id="knowledge")
        if knowledge.catalog_source:
            scheduler.add_job(self.catalog.tick, "interval", minutes=knowledge.catalog_sync_minutes,
                              next_run_time=now, id="catalog")
        digest = self.ctx.settings.digest
        if digest.enabled and self.ctx.settings.owner_address:
            hour, minute = digest.hour_minute
            # The owner's morning, in the shop's timezone; a missed run (daemon down) still
            # goes out when it starts again the same day (misfire grace), once (Digest.day).
            scheduler.add_job(self.digest.tick, CronTrigger(hour=hour, minute=minute, timezone=self.ctx.settings.tz),
                              id="digest", misfire_grace_time=12 * 3600, coalesce=True)
        scheduler.add_job(self.reminders.tick, "interval", minutes=10, next_run_time=now, id="reminders")
        if self.retention:
            # Daily, and a minute after each start, so a daemon that is often down still purges.
            scheduler.add_job(self.retention.tick, "interval", hours=24, id="retention",
                              next_run_time=now + timedelta(minutes=1))
        scheduler.start()
        warm_up = loop.create_task(asyncio.to_thread(self.warm_up), name="warm-up")
        warm_up.add_done_callback(lambda _: self.warmed.set())
        server_task = None
        if self.app is not None:
            web = self.ctx.settings.web
            self.server = _Server(server_config(self.app, web))
            server_task = loop.create_task(self.server.serve(), name="web")
        try:
            await self.stop_event.wait()
        finally:
            scheduler.shutdown(wait=False)
            if self.idle:
                self.idle.stop()
            if self.server:
                self.server.should_exit = True
            with contextlib.suppress(Exception):
                await warm_up
            for worker in workers:
                await worker.wait()
            if server_task:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server_task, timeout=10)
            log.info("stopped")

    def warm_up(self) -> None:
        """Load the local embedding model now, not when the first customer writes (a few seconds
        after every start); the log line says when this daemon answers at full speed."""
        started = time.monotonic()
        try:
            if self.ctx.settings.embeddings.provider == "local":  # a remote model has nothing to load
                self.ctx.retriever.search("warm-up", k=1)
        except Exception:  # the first real message will try again, and say why
            log.exception("warming up the knowledge search failed")
            return
        release_free_memory()
        log.info("ready: knowledge search warmed up in %.1f s", time.monotonic() - started)

    def describe(self) -> None:
        s = self.ctx.settings
        log.info("Deskhand for %s: knowledge from %s, database %s, drafter %s", s.store.name, s.knowledge_dir,
                 s.database_url.split("@")[-1], s.llm.provider)
        if not s.email.imap_enabled:
            log.info("email is off: set [email] imap_host and username in settings.toml and the "
                     "password in $%s to answer a mailbox", s.email.password_env)
        elif not s.email.smtp_enabled:
            log.info("sending is off: set [email] smtp_host (and smtp_port, smtp_tls) to send replies; "
                     "drafts are stored meanwhile")
        if s.web.port:
            log.info("web pages on http://%s:%d/ (write as a customer on /try: nothing is sent)",
                     s.web.host, s.web.port)
        if s.chat.enabled and s.web.port:
            where = s.web.public_url or f"http://{s.web.host}:{s.web.port}"
            log.info("site chat: paste <script src=\"%s/chat/widget.js\" defer></script> on your site's pages; "
                     "%s (the sample shop's page with it: %s/shop)", where,
                     f"allowed sites: {', '.join(s.chat.allowed_origins)}" if s.chat.allowed_origins
                     else "no site allowed yet: set [chat] allowed_origins", where)
        if not s.owner_address:
            log.info("no digest: set [digest] to (your address) for the daily digest and approval by email")
        if self.ctx.db.is_postgres:
            log.info("other daemons on this database share the work; the mailbox poll and the scheduled "
                     "jobs run in one of them at a time")
