#!/usr/bin/env python3
"""The site chat (the widget's JSON API, /chat/api): time to the first words, open sessions' memory, widget size.

    python bench/chat.py [--visitors 50] [--questions 4] [--pause 4 7] [--sessions 200] [--runs 3]
                         [--idle-seconds 10] [--json]

Each run starts two real ``run.py`` daemons, one after the other, each in a fresh temporary folder with
a copy of the repository's settings.toml (the sample shop in knowledge/, offline drafter, local MiniLM
embeddings, SQLite, email off) where only this changes: ``[web] port`` (a free one on 127.0.0.1),
``[database] data_dir`` (the temporary folder), ``[knowledge] dir`` and ``[orders] file`` (absolute
paths into the repository), and the limits a bench from one address would hit: ``[routing]
max_auto_replies_per_hour = 0`` (no hourly cap: 50 visitors x 4 questions is over 60 an hour),
``loop_threshold = 1000000`` (the loop breaker counts near-identical texts from anyone, and 50 visitors
ask the same FAQ), ``[chat] messages_per_minute_per_address = 10000`` and
``sessions_per_hour_per_address = 10000`` (every visitor comes from 127.0.0.1). The knowledge index is
built once (``run.py ingest``) and copied into each daemon's folder, as after a restart. A daemon is
measured once /healthz answers 200 and it has logged "ready", and after one chat question (not counted)
has been answered. Every request carries ``Origin: http://127.0.0.1:<port>``, the daemon's own origin,
as the widget on its /shop page does. The API is the one in the contract (channels/chat/static/widget.js
follows it): POST /chat/api/sessions -> token; each panel then keeps ONE long poll open
(GET /chat/api/messages?after=<cursor>&wait=25, asked again at once when it returns), as the widget does.

1. first words: --visitors panels at once on one httpx.AsyncClient (enough connections for each panel's
   poll and its sends). Each visitor starts at a random moment within the first --pause seconds, then asks
   --questions different questions from QUESTIONS below (FAQ-style questions about the sample shop),
   one at a time: POST /chat/api/messages {"text", "client_id"} while its long poll is open, waits for the
   shop's item, then pauses a random --pause seconds (a person reads and types) before the next. A pause
   of at least 4 s keeps every visitor under the burst rule (more than 3 messages in 10 s are held and
   answered together), which this bench must not trigger. Latency: from just before the POST to the long
   poll's answer that carries an item with role "shop" (an automatic reply or a holding reply: both are
   the first words a visitor sees). A message held without any words (the long poll says typing stopped
   and no shop item came) or with nothing within 30 s counts as "no words" and is not in the percentiles.
   Also reported: the long poll's first answer after the POST (the visitor's own message echoed, or the
   reply), the daemon's CPU per question, and where the time went, per reply, from the daemon's database
   once the visitors are done (the stored message's received_at, its draft's created_at, the reply's
   outbox created_at and sent_at, against the bench's own clock: same machine, same clock).
2. open sessions: a second daemon, its RSS (VmRSS from /proc/<pid>/status, MB of 10^6 bytes, the median
   of 5 readings 0.5 s apart) after the warm-up question and --settle seconds; then --sessions visitors
   (20 at a time) each open a session, ask one question, get its answer and keep a long poll open; once
   all are answered, --settle seconds later, RSS again (and VmHWM, the peak), then the daemon's CPU while
   those panels sit idle with their long polls open, over --idle-seconds. The budget is issue 8's
   (bench/RESULTS.md, "Memory and start"): RSS <= 600 MB idle, <= 700 MB while working.
3. widget size: channels/chat/static/widget.js when the bench ends, raw and ``gzip -9 -c < widget.js``
   (Python's zlib at level 9 where there is no gzip command), and what GET /chat/widget.js sends to a
   client that accepts gzip (first run).

Figures are medians over --runs runs (the per-run values are printed too). Everything is on 127.0.0.1;
each wait is bounded, and each daemon is stopped (SIGTERM, then SIGKILL after 30 s) when its part ends.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx
from servers import free_port

WIDGET = ROOT / "channels" / "chat" / "static" / "widget.js"
READY = "ready: knowledge search warmed up"
TARGETS = {"p50": 0.4, "p95": 1.0}  # seconds, question sent -> first words, 50 visitors at once
RSS_IDLE_MB, RSS_WORKING_MB = 600, 700  # issue 8's budget (bench/memory.py)
BURST_WINDOW_S = 10  # [routing] burst_window_s: more than 3 messages in it are answered together
REPLY_TIMEOUT_S = 30.0
WARM_UP = "Do you ship to Canada?"
# What visitors ask in a shop's chat, written as they type it; every one is about the sample shop.
QUESTIONS = [
    "How much is shipping?",
    "how long does delivery take",
    "Do you ship to the UK?",
    "do you ship to canada and how much is it",
    "What's your return policy?",
    "Can I return a candle if I don't like the scent?",
    "How long do your candles burn?",
    "how many hours does the 8 oz tin burn for",
    "What are your candles made of?",
    "Is there paraffin in your candles?",
    "Do you sell gift cards?",
    "What amounts do gift cards come in?",
    "Do you offer gift wrapping?",
    "When will my order ship?",
    "Can I track my order?",
    "What payment methods do you take?",
    "Do you take PayPal?",
    "Can I change my order after I placed it?",
    "Are your candles safe around cats?",
    "How do I get my candle to burn evenly?",
    "Do you sell wholesale?",
    "When will I see my refund?",
    "How much is Amber Noir?",
    "how long does cedar & smoke burn",
    "Is Orchard Morning in stock?",
    "What does Sea Salt & Fig smell like?",
    "Can I exchange a candle for a different scent?",
    "My candle arrived cracked, what do I do?",
]


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), as bench/latency.py."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    low = int(pos)
    return s[low] + (s[min(low + 1, len(s) - 1)] - s[low]) * (pos - low)


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return tuple(int(fields[key].split()[0]) * 1024 / 1e6 for key in ("VmRSS", "VmHWM"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def configure(text: str, changes: dict[tuple[str, str], str]) -> str:
    """``text`` (a settings.toml) with each (section, key) set to the TOML value given: the key's line
    replaced where it is, else added under its section's header, else the section appended."""
    lines, section, done = text.splitlines(), "", set()
    for i, line in enumerate(lines):
        header = re.match(r"\s*\[([A-Za-z0-9_.]+)\]\s*(#.*)?$", line)
        if header:
            section = header.group(1)
            continue
        key = re.match(r"\s*([A-Za-z0-9_]+)\s*=", line)
        if key and (section, key.group(1)) in changes:
            lines[i] = f"{key.group(1)} = {changes[section, key.group(1)]}"
            done.add((section, key.group(1)))
    for (section, key), value in changes.items():
        if (section, key) in done:
            continue
        at = next((i for i, line in enumerate(lines) if re.match(rf"\s*\[{re.escape(section)}\]\s*(#.*)?$", line)),
                  None)
        if at is None:
            lines += ["", f"[{section}]"]
            at = len(lines) - 1
        lines.insert(at + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def write_config(folder: Path, port: int) -> Path:
    quoted = lambda value: json.dumps(str(value))  # a TOML basic string
    changes = {("web", "host"): quoted("127.0.0.1"), ("web", "port"): str(port),
               ("database", "url"): quoted(""), ("database", "data_dir"): quoted(folder / "data"),
               ("knowledge", "dir"): quoted(ROOT / "knowledge"),
               ("orders", "file"): quoted(ROOT / "knowledge" / "orders.csv"),
               ("routing", "max_auto_replies_per_hour"): "0", ("routing", "loop_threshold"): "1000000",
               ("chat", "enabled"): "true", ("chat", "messages_per_minute_per_address"): "10000",
               ("chat", "sessions_per_hour_per_address"): "10000"}
    path = folder / "settings.toml"
    path.write_text(configure((ROOT / "settings.toml").read_text(encoding="utf-8"), changes), encoding="utf-8")
    return path


def build_index(folder: Path) -> Path:
    """The sample shop's knowledge index, built once (``run.py ingest``) and copied into each daemon's folder."""
    config = write_config(folder, free_port())
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), "ingest"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run.py ingest failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return folder / "data" / "index"


class Daemon(contextlib.ExitStack):
    """One ``run.py`` daemon in a fresh folder with the bench's settings; stopped on exit."""

    def __init__(self, index: Path | None):
        super().__init__()
        self.index = index

    def __enter__(self):
        super().__enter__()
        self.folder = Path(self.enter_context(tempfile.TemporaryDirectory(prefix="deskhand-chat-")))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = write_config(self.folder, self.port)
        if self.index is not None:
            shutil.copytree(self.index, self.folder / "data" / "index")
        self.log = self.folder / "daemon.log"
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(config)],
                                     stdout=self.enter_context(open(self.log, "ab")), stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=ROOT)
        self.callback(self.stop)
        self.wait_ready()
        return self

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self.proc.kill()  # a no-op once it has exited
        self.proc.wait(timeout=10)

    def died(self, what: str) -> SystemExit:
        tail = "".join(self.log.read_text(errors="replace").splitlines(True)[-20:])
        return SystemExit(f"the daemon exited ({self.proc.returncode}) {what}; its log ends:\n{tail}")

    def wait_ready(self, timeout: float = 180) -> None:
        healthy = False
        deadline = time.monotonic() + timeout
        while not (healthy and READY in self.log.read_text(errors="replace")):
            if self.proc.poll() is not None:
                raise self.died("before it was ready")
            if time.monotonic() > deadline:
                raise SystemExit(f"the daemon was not ready after {timeout:.0f} s; see {self.log}")
            if not healthy:
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as r:
                    healthy = r.status == 200
            time.sleep(0.1)
        self.ready_s = time.monotonic() - self.started

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise self.died("during the bench")

    def rss(self, samples: int = 5, every: float = 0.5) -> float:
        readings = []
        for i in range(samples):
            readings.append(memory(self.proc.pid)[0])
            if i < samples - 1:
                time.sleep(every)
        return statistics.median(readings)

    def problems(self) -> list[str]:
        """The daemon's WARNING, ERROR and CRITICAL log lines so far."""
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)]

    def database(self) -> Path:
        return self.folder / "data" / "deskhand.sqlite3"


class Panel:
    """One visitor's chat panel: its session, its one long poll (always open), its questions."""

    def __init__(self, client: httpx.AsyncClient, name: str):
        self.client, self.name = client, name
        self.answers: asyncio.Queue = asyncio.Queue()
        self.cursor, self.token, self.task = "", "", None
        self.in_flight = asyncio.Event()
        self.errors: list[str] = []
        self.stray = 0  # shop items that came while no question of this bench was waiting

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    async def open(self) -> None:
        answer = await self.client.post("/chat/api/sessions", json={})
        if answer.status_code != 201:
            raise SystemExit(f"POST /chat/api/sessions answered {answer.status_code}: {answer.text[:300]}")
        self.token = answer.json()["token"]
        first = await self.client.get("/chat/api/messages", params={"after": "", "wait": 0}, headers=self.headers())
        first.raise_for_status()
        self.cursor = first.json()["cursor"]
        self.task = asyncio.create_task(self._poll(), name=f"poll-{self.name}")

    async def _poll(self) -> None:
        while True:
            self.in_flight.set()
            try:
                answer = await self.client.get("/chat/api/messages", params={"after": self.cursor, "wait": 25},
                                               headers=self.headers())
            except httpx.HTTPError as exc:
                self.in_flight.clear()
                self.errors.append(f"poll: {type(exc).__name__}")
                await asyncio.sleep(0.5)
                continue
            self.in_flight.clear()
            now, wall = time.perf_counter(), time.time()
            if answer.status_code != 200:
                self.errors.append(f"poll: {answer.status_code}")
                await asyncio.sleep(0.5)
                continue
            body = answer.json()
            self.cursor = body["cursor"]
            self.answers.put_nowait((now, wall, body))

    async def ask(self, text: str) -> dict:
        """Send one question with the long poll open; wait for the shop's first words (or their absence)."""
        while not self.answers.empty():  # anything that came during the pause
            self.stray += sum(i["role"] == "shop" for i in self.answers.get_nowait()[2]["items"])
        for _ in range(200):  # the poll is re-asked at once; make sure it is out before sending
            if self.in_flight.is_set():
                break
            await asyncio.sleep(0.005)
        cid = f"b{uuid.uuid4().hex[:16]}"
        out = {"question": text, "client_id": cid, "sent_wall": time.time()}
        t0 = time.perf_counter()
        answer = await self.client.post("/chat/api/messages", json={"text": text, "client_id": cid},
                                        headers=self.headers())
        out["post_s"] = time.perf_counter() - t0
        if answer.status_code != 202:
            out.update(outcome=f"POST {answer.status_code}", error=answer.text[:200])
            return out
        deadline = t0 + REPLY_TIMEOUT_S
        while True:
            try:
                now, wall, body = await asyncio.wait_for(self.answers.get(), max(0.0, deadline - time.perf_counter()))
            except TimeoutError:
                out["outcome"] = "no words"
                out["why"] = f"nothing within {REPLY_TIMEOUT_S:g} s"
                return out
            if "first_answer_s" not in out:
                out["first_answer_s"] = now - t0
            mine = any(i["role"] == "visitor" and i.get("client_id") == cid for i in body["items"])
            shop = [i for i in body["items"] if i["role"] == "shop"]
            if mine:
                out.setdefault("echo_s", now - t0)
            if shop:
                out.update(outcome=shop[0]["kind"], latency_s=now - t0, reply_wall=wall, text=shop[0]["text"],
                           shop_items=len(shop))
                return out
            if "echo_s" in out and not body["typing"]:
                out["outcome"] = "no words"
                out["why"] = "held without a holding reply"
                return out

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def client_for(base: str, panels: int) -> httpx.AsyncClient:
    room = 2 * panels + 10  # each panel: its long poll and a send
    return httpx.AsyncClient(base_url=base, headers={"Origin": base}, timeout=httpx.Timeout(40, connect=10),
                             limits=httpx.Limits(max_connections=room, max_keepalive_connections=room))


async def warm_up(base: str) -> dict:
    async with client_for(base, 1) as client:
        panel = Panel(client, "warm-up")
        await panel.open()
        try:
            result = await panel.ask(WARM_UP)
        finally:
            await panel.close()
    if "latency_s" not in result:
        raise SystemExit(f"the warm-up question got no answer: {result}")
    return result


async def visitors_at_once(daemon: Daemon, args, rng: random.Random) -> dict:
    """--visitors panels, --questions each with a human's pause between them."""
    async with client_for(daemon.base, args.visitors) as client:
        panels = [Panel(client, f"v{i}") for i in range(args.visitors)]
        await asyncio.gather(*(p.open() for p in panels))
        plans = [(rng.uniform(0, args.pause[1]), rng.sample(QUESTIONS, args.questions),
                  [rng.uniform(*args.pause) for _ in range(args.questions)]) for _ in panels]

        async def visitor(panel: Panel, start: float, questions: list[str], pauses: list[float]) -> list[dict]:
            await asyncio.sleep(start)
            results = []
            for n, question in enumerate(questions):
                results.append(await panel.ask(question))
                if n < len(questions) - 1:
                    await asyncio.sleep(pauses[n])
            return results

        cpu0, t0 = cpu_seconds(daemon.proc.pid), time.monotonic()
        try:
            per_visitor = await asyncio.gather(*(visitor(p, *plan) for p, plan in zip(panels, plans)))
        finally:
            cpu1, seconds = cpu_seconds(daemon.proc.pid), time.monotonic() - t0
            for p in panels:
                await p.close()
    results = [r for rs in per_visitor for r in rs]
    return {"results": results, "cpu_s": cpu1 - cpu0, "seconds": seconds,
            "errors": [e for p in panels for e in p.errors], "stray": sum(p.stray for p in panels)}


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    at = datetime.fromisoformat(value)
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def stages(database: Path, results: list[dict]) -> tuple[dict, dict]:
    """Where each reply's time went (from the daemon's rows), and the routes of the bench's messages."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as db:
        rows = db.execute(
            "SELECT m.provider_id, m.received_at, d.route, d.created_at, o.created_at, o.sent_at "
            "FROM message m LEFT JOIN draft d ON d.message_id = m.id "
            "LEFT JOIN outbox o ON o.draft_id = d.id AND o.kind IN ('reply', 'holding') "
            "WHERE m.channel = 'chat' AND m.direction = 'in'").fetchall()
    by_client = {provider.rsplit(":", 1)[-1]: row for provider, *row in rows}
    spans: dict[str, list[float]] = {"POST -> message stored": [], "stored -> draft written (queue + pipeline)": [],
                                     "draft written -> reply queued": [], "queued -> reply sent (chat worker)": [],
                                     "sent -> in the panel (long poll wakes, reads, answers)": []}
    routes: dict[str, int] = {}
    for r in results:
        row = by_client.get(r["client_id"])
        if row is None:
            continue
        received, route, drafted, queued, sent = row
        routes[route or "(no draft)"] = routes.get(route or "(no draft)", 0) + 1
        if "reply_wall" not in r or None in (drafted, queued, sent):
            continue
        t = [r["sent_wall"], parse_time(received), parse_time(drafted), parse_time(queued), parse_time(sent),
             r["reply_wall"]]
        for name, a, b in zip(spans, t, t[1:]):
            spans[name].append(b - a)
    out = {name: {"p50_ms": round(percentile(v, 50) * 1000, 1), "p95_ms": round(percentile(v, 95) * 1000, 1),
                  "max_ms": round(max(v) * 1000, 1)} for name, v in spans.items() if v}
    return out, routes


def latency_run(index: Path, args, rng: random.Random, served: dict) -> dict:
    with Daemon(index) as daemon:
        if not served:  # the first run: the widget as this daemon serves it
            served.update(served_widget(daemon.base))
        warm = asyncio.run(warm_up(daemon.base))
        load = asyncio.run(visitors_at_once(daemon, args, rng))
        daemon.check()
        where, routes = stages(daemon.database(), load["results"])
        problems = daemon.problems()
    results = load["results"]
    words = [r for r in results if "latency_s" in r]
    lat = [r["latency_s"] for r in words]
    kinds: dict[str, int] = {}
    for r in results:
        kinds[r["outcome"]] = kinds.get(r["outcome"], 0) + 1
    out = {"ready_s": round(daemon.ready_s, 1), "warm_up_s": round(warm["latency_s"], 3),
           "questions": len(results), "replies": len(words), "outcomes": kinds, "routes": routes,
           "seconds": round(load["seconds"], 1), "daemon_cpu_ms_per_question": round(load["cpu_s"] / len(results) * 1000, 1),
           "cores_busy": round(load["cpu_s"] / load["seconds"], 2), "errors": load["errors"][:10],
           "stray_shop_items": load["stray"], "stages": where, "log_problems": problems[:10],
           "no_words": [{"question": r["question"], "why": r.get("why", r["outcome"])}
                        for r in results if "latency_s" not in r][:10]}
    if lat:
        out.update(p50_s=percentile(lat, 50), p95_s=percentile(lat, 95), max_s=max(lat))
    firsts = [r["first_answer_s"] for r in results if "first_answer_s" in r]
    echoes = [r for r in words if "echo_s" in r]
    if firsts:
        out["first_poll_answer_p50_s"] = percentile(firsts, 50)
    out["echo_before_reply"] = sum(r["echo_s"] < r["latency_s"] - 1e-6 for r in echoes)
    out["post_p50_ms"] = round(percentile([r["post_s"] for r in results], 50) * 1000, 1)
    return out


async def open_sessions(daemon: Daemon, args) -> dict:
    """--sessions visitors: a session, one question answered, the long poll left open."""
    async with client_for(daemon.base, args.sessions) as client:
        panels = [Panel(client, f"s{i}") for i in range(args.sessions)]
        gate = asyncio.Semaphore(20)

        async def one(i: int, panel: Panel) -> dict:
            async with gate:
                await panel.open()
                return await panel.ask(QUESTIONS[i % len(QUESTIONS)])

        try:
            results = await asyncio.gather(*(one(i, p) for i, p in enumerate(panels)))
            await asyncio.sleep(args.settle)
            open_polls = sum(p.in_flight.is_set() for p in panels)
            rss_after = await asyncio.to_thread(daemon.rss)
            hwm = memory(daemon.proc.pid)[1]
            cpu0 = cpu_seconds(daemon.proc.pid)
            await asyncio.sleep(args.idle_seconds)
            idle_cpu = (cpu_seconds(daemon.proc.pid) - cpu0) / args.idle_seconds
            still_open = sum(p.in_flight.is_set() for p in panels)
        finally:
            for p in panels:
                await p.close()
    errors = [e for p in panels for e in p.errors]
    return {"answered": sum("latency_s" in r for r in results), "open_polls": min(open_polls, still_open),
            "rss_after_mb": rss_after, "hwm_mb": hwm, "idle_cpu_cores": idle_cpu, "errors": errors[:10]}


def sessions_run(index: Path, args) -> dict:
    with Daemon(index) as daemon:
        rss_ready = memory(daemon.proc.pid)[0]
        asyncio.run(warm_up(daemon.base))
        cpu0, t0 = cpu_seconds(daemon.proc.pid), time.monotonic()
        time.sleep(args.settle)
        before = daemon.rss()
        quiet_cpu = (cpu_seconds(daemon.proc.pid) - cpu0) / (time.monotonic() - t0)
        opened = asyncio.run(open_sessions(daemon, args))
        daemon.check()
        problems = daemon.problems()
    return {"sessions": args.sessions, "rss_ready_mb": round(rss_ready, 1), "rss_before_mb": round(before, 1),
            "quiet_cpu_cores": round(quiet_cpu, 3), **opened, "log_problems": problems[:10],
            "rss_after_mb": round(opened["rss_after_mb"], 1), "hwm_mb": round(opened["hwm_mb"], 1),
            "idle_cpu_cores": round(opened["idle_cpu_cores"], 3),
            "rss_diff_mb": round(opened["rss_after_mb"] - before, 1),
            "kb_per_session": round((opened["rss_after_mb"] - before) * 1000 / max(args.sessions, 1), 1)}


def widget_size() -> dict:
    """widget.js on disk, raw and gzip -9 (read at the end of the bench: it may be edited meanwhile)."""
    if not WIDGET.is_file():
        return {"exists": False, "path": str(WIDGET.relative_to(ROOT))}
    raw = WIDGET.read_bytes()
    out = {"exists": True, "path": str(WIDGET.relative_to(ROOT)), "raw_bytes": len(raw)}
    gzip_tool = shutil.which("gzip")
    if gzip_tool:  # GNU gzip's own deflate: a few dozen bytes smaller than zlib's at level 9
        out["gzip9_bytes"] = len(subprocess.run([gzip_tool, "-9", "-c"], input=raw, capture_output=True,
                                                check=True, timeout=30).stdout)
        out["gzip9_by"] = "gzip -9 -c < widget.js"
    else:
        out["gzip9_bytes"] = len(gzip.compress(raw, compresslevel=9, mtime=0))
        out["gzip9_by"] = "Python's gzip (zlib) at level 9"
    return out


def served_widget(base: str) -> dict:
    """What GET /chat/widget.js sends to a client that accepts gzip."""
    answer = httpx.get(f"{base}/chat/widget.js", headers={"Accept-Encoding": "gzip"}, timeout=10)
    encoding = answer.headers.get("content-encoding", "")
    return {"served_status": answer.status_code, "served_encoding": encoding or "none",
            "served_bytes": int(answer.headers.get("content-length") or 0) if encoding else len(answer.content),
            "served_cache_control": answer.headers.get("cache-control", "")}


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=50, help="visitors chatting at once")
    parser.add_argument("--questions", type=int, default=4, help="questions per visitor, in sequence")
    parser.add_argument("--pause", type=float, nargs=2, default=[4.0, 7.0], metavar=("MIN", "MAX"),
                        help="seconds a visitor pauses between a reply and the next question")
    parser.add_argument("--sessions", type=int, default=200, help="open sessions for the memory figure")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before an RSS reading")
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="the daemon's CPU is measured this long with the sessions' polls open")
    parser.add_argument("--runs", type=int, default=3, help="runs of each figure (medians)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="the result as one JSON object")
    args = parser.parse_args()
    if args.questions > len(QUESTIONS):
        parser.error(f"at most {len(QUESTIONS)} questions per visitor (each asks different ones)")
    if args.questions > 3 and 3 * args.pause[0] <= BURST_WINDOW_S:
        parser.error(f"a pause under {BURST_WINDOW_S / 3:.1f} s lets 4 messages fall in {BURST_WINDOW_S} s "
                     "(the burst rule would answer them together)")
    rng = random.Random(args.seed)
    started = time.monotonic()
    lat_runs, mem_runs, served = [], [], {}
    with tempfile.TemporaryDirectory(prefix="deskhand-chat-index-") as scratch:
        index = build_index(Path(scratch))
        for run in range(args.runs):
            lat_runs.append(latency_run(index, args, rng, served))
            r = lat_runs[-1]
            print(f"run {run + 1}: {r['replies']}/{r['questions']} replies, p50 {r.get('p50_s', 0) * 1000:.0f} ms, "
                  f"p95 {r.get('p95_s', 0) * 1000:.0f} ms, max {r.get('max_s', 0) * 1000:.0f} ms, {r['outcomes']}",
                  file=sys.stderr, flush=True)
            mem_runs.append(sessions_run(index, args))
            m = mem_runs[-1]
            print(f"run {run + 1}: RSS {m['rss_before_mb']:.0f} -> {m['rss_after_mb']:.0f} MB with "
                  f"{m['answered']}/{m['sessions']} sessions answered, {m['open_polls']} polls open",
                  file=sys.stderr, flush=True)
    widget = {**widget_size(), **served}
    lat = {k: median_of(lat_runs, k) for k in ("p50_s", "p95_s", "max_s", "replies", "questions",
                                                "daemon_cpu_ms_per_question", "first_poll_answer_p50_s")}
    lat["met"] = all(lat[f"{k}_s"] is not None and lat[f"{k}_s"] <= v for k, v in TARGETS.items())
    mem = {k: median_of(mem_runs, k) for k in ("rss_ready_mb", "quiet_cpu_cores", "rss_before_mb", "rss_after_mb", "rss_diff_mb", "hwm_mb",
                                                "kb_per_session", "idle_cpu_cores")}
    mem["met"] = mem["rss_after_mb"] <= RSS_WORKING_MB and all(
        m["answered"] == m["sessions"] and m["open_polls"] == m["sessions"] for m in mem_runs)
    result = {"cores": os.cpu_count(), "python": sys.version.split()[0], "httpx": httpx.__version__,
              "visitors": args.visitors, "questions_per_visitor": args.questions, "pause_s": args.pause,
              "runs": args.runs, "seconds": round(time.monotonic() - started, 1), "targets": TARGETS,
              "budget_mb": {"idle": RSS_IDLE_MB, "working": RSS_WORKING_MB},
              "first_words": lat, "first_words_runs": lat_runs, "sessions": mem, "sessions_runs": mem_runs,
              "widget": widget}
    if args.json:
        print(json.dumps(result))
        return 0
    report(result)
    return 0


def report(res: dict) -> None:
    lat, mem, w = res["first_words"], res["sessions"], res["widget"]
    ms = lambda s: f"{s * 1000:.0f} ms" if s is not None else "–"
    print(f"One daemon per figure, offline drafter, local embeddings, SQLite, {res['cores']} cores; "
          f"medians of {res['runs']} runs; {res['seconds']:.0f} s in all\n")
    print("| figure | measured | target | met? |\n|---|---|---|---|")
    print(f"| question sent -> first words, {res['visitors']} visitors x {res['questions_per_visitor']} questions "
          f"| p50 {ms(lat['p50_s'])}, p95 {ms(lat['p95_s'])}, max {ms(lat['max_s'])} "
          f"| p50 ≤ 400 ms, p95 ≤ 1 s | {'yes' if lat['met'] else '**no**'} |")
    print(f"| RSS with {mem_runs_sessions(res)} open sessions (each answered, long poll open) "
          f"| {mem['rss_before_mb']:.0f} -> {mem['rss_after_mb']:.0f} MB ({mem['rss_diff_mb']:+.0f} MB) "
          f"| ≤ {RSS_WORKING_MB} MB working (≤ {RSS_IDLE_MB} idle) | {'yes' if mem['met'] else '**no**'} |")
    if w.get("exists"):
        print(f"| widget.js | {w['raw_bytes']:,} B raw, {w['gzip9_bytes']:,} B gzip -9; GET /chat/widget.js "
              f"(Accept-Encoding: gzip): {w.get('served_bytes', 0):,} B, Content-Encoding "
              f"{w.get('served_encoding', '?')} | – | – |")
    else:
        print(f"| widget.js | {w['path']} does not exist | – | – |")
    print("\n| run | replies / questions | automatic / holding / no words | p50 | p95 | max "
          "| first poll answer p50 | own message echoed before the reply | daemon CPU per question |"
          "\n|---|---|---|---|---|---|---|---|---|")
    for n, r in enumerate(res["first_words_runs"], 1):
        o = r["outcomes"]
        print(f"| {n} | {r['replies']} / {r['questions']} | {o.get('reply', 0)} / {o.get('holding', 0)} / "
              f"{o.get('no words', 0)} | {ms(r.get('p50_s'))} | {ms(r.get('p95_s'))} | {ms(r.get('max_s'))} "
              f"| {ms(r.get('first_poll_answer_p50_s'))} | {r['echo_before_reply']} of {r['replies']} "
              f"| {r['daemon_cpu_ms_per_question']:.0f} ms |")
    print("\nwhere a reply's time went (last run, from the daemon's rows):\n\n| step | p50 | p95 | max |\n|---|---|---|---|")
    for name, s in res["first_words_runs"][-1]["stages"].items():
        print(f"| {name} | {s['p50_ms']:.0f} ms | {s['p95_ms']:.0f} ms | {s['max_ms']:.0f} ms |")
    print("\n| run | RSS at ready | RSS before | RSS after | difference | per session | VmHWM | polls open "
          "| CPU, no panel open | CPU, panels idle |\n|---|---|---|---|---|---|---|---|---|---|")
    for n, m in enumerate(res["sessions_runs"], 1):
        print(f"| {n} | {m['rss_ready_mb']:.0f} MB | {m['rss_before_mb']:.0f} MB | {m['rss_after_mb']:.0f} MB "
              f"| {m['rss_diff_mb']:+.1f} MB | {m['kb_per_session']:.0f} KB | {m['hwm_mb']:.0f} MB "
              f"| {m['open_polls']}/{m['sessions']} | {m['quiet_cpu_cores']:.3f} cores | {m['idle_cpu_cores']:.3f} cores |")
    for n, r in enumerate(res["first_words_runs"], 1):
        if r["no_words"] or r["errors"] or r["log_problems"]:
            print(f"\nrun {n}: no words for {r['no_words']}; client errors {r['errors']}; "
                  f"daemon log {r['log_problems']}")
    for n, m in enumerate(res["sessions_runs"], 1):
        if m["errors"] or m["log_problems"]:
            print(f"\nsessions run {n}: client errors {m['errors']}; daemon log {m['log_problems']}")


def mem_runs_sessions(res: dict) -> int:
    return res["sessions_runs"][0]["sessions"] if res["sessions_runs"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
