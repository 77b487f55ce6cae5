"""The daemon: APScheduler jobs and the uvicorn web server on one asyncio loop.

``python run.py`` lands here. Jobs: poll (IMAP, on an interval and whenever IDLE reports new
mail), process (stored messages -> routed drafts) and send (the outbox). A job that finds work
kicks the next one, so a reply goes out seconds after the mail lands. SIGTERM or Ctrl-C stops
taking new work, lets the jobs in flight finish their current unit, and exits; anything not
finished is still in the database in a state the next start picks up.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import datetime, timezone

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from channels.email.imap import IMAP_ERRORS, IdleWatcher
from responder import jobs, texting
from responder.catalog_sync import sync_catalog_job
from responder.context import Context
from responder.errors import ConfigError

log = logging.getLogger("deskhand.daemon")


def _digest_job(ctx: Context) -> int:
    from responder.digest import digest_job
    return digest_job(ctx)


def _twilio_poll_job(ctx: Context) -> int:
    from channels.twilio.poll import poll_twilio
    return poll_twilio(ctx)


def _reminders_job(ctx: Context) -> int:
    from responder.owner_mail import send_reminders
    return send_reminders(ctx)


class Worker:
    """Runs one job function; a kick while it runs makes it run once more right after."""

    def __init__(self, name: str, fn, on_work=None):
        self.name, self.fn, self.on_work = name, fn, on_work
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
            except Exception:  # the daemon keeps running; the error is in the log
                log.exception("%s job failed", self.name)
                did = 0
            if did and self.on_work:
                self.on_work()
            if not self.again:
                return

    async def wait(self) -> None:
        if self.task:
            with contextlib.suppress(Exception):
                await self.task


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
        self.send = Worker("send", lambda: jobs.send_email_outbox(ctx))
        # Texts have their own worker, so an SMTP outage never holds up an SMS (and vice versa).
        self.texts = Worker("texts", lambda: asyncio.to_thread(texting.send_text_outbox, ctx))
        self.process = Worker("process", lambda: asyncio.to_thread(jobs.process_pending, ctx),
                              on_work=self.kick_outbox)
        self.poll = Worker("poll", lambda: asyncio.to_thread(jobs.poll_mailbox, ctx),
                           on_work=self.process.kick) if cfg.imap_enabled else None
        self.knowledge = Worker("knowledge", lambda: asyncio.to_thread(ctx.retriever.refresh))
        self.catalog = Worker("catalog", lambda: asyncio.to_thread(sync_catalog_job, ctx.settings),
                              on_work=self.knowledge.kick)
        self.digest = Worker("digest", lambda: asyncio.to_thread(_digest_job, ctx), on_work=self.kick_outbox)
        self.reminders = Worker("reminders", lambda: asyncio.to_thread(_reminders_job, ctx),
                                on_work=self.kick_outbox)
        twilio = ctx.settings.twilio
        self.twilio_poll = Worker("twilio-poll", lambda: asyncio.to_thread(_twilio_poll_job, ctx),
                                  on_work=self.process.kick) if twilio.enabled and twilio.mode == "poll" else None
        self.loop: asyncio.AbstractEventLoop | None = None

    def kick_outbox(self) -> None:
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

    def stop(self) -> None:
        log.info("stopping: finishing the work in flight")
        self.ctx.stopping.set()
        if self.stop_event:
            self.stop_event.set()

    async def run(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        self.describe()
        scheduler = AsyncIOScheduler(timezone=timezone.utc)
        now = datetime.now(timezone.utc)
        workers = [w for w in (self.poll, self.process, self.send, self.texts, self.knowledge, self.catalog,
                               self.digest, self.reminders, self.twilio_poll) if w]
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
        scheduler.start()
        server_task = None
        if self.app is not None:
            web = self.ctx.settings.web
            self.server = _Server(uvicorn.Config(self.app, host=web.host, port=web.port, log_level="warning",
                                                 lifespan="off", access_log=False))
            server_task = loop.create_task(self.server.serve(), name="web")
        try:
            await self.stop_event.wait()
        finally:
            scheduler.shutdown(wait=False)
            if self.idle:
                self.idle.stop()
            if self.server:
                self.server.should_exit = True
            for worker in workers:
                await worker.wait()
            if server_task:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server_task, timeout=10)
            log.info("stopped")

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
        if not s.owner_address:
            log.info("no digest: set [digest] to (your address) for the daily digest and approval by email")
