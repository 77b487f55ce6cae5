"""The order source as the pipeline uses it: built from settings, cached briefly, never in the way.

``source_for(settings)`` builds the adapter ``[orders] source`` names (``None`` when it is "none")
and wraps it in :class:`Lookup`, which the order step calls:

- **Out of line.** Each lookup runs on the lookup's own threads. The message waits for it at most
  ``inline_s`` (0.3 s: a healthy API answers by then); past that, :class:`Pending` is raised and
  the process job puts the message back for a moment (Zulip's accept-then-process), so the messages
  behind it are routed meanwhile. When the answer arrives, ``on_done`` (the daemon's kick)
  brings the message back, and it finds the answer waiting (``KEEP_S``).
- **A short cache** (``[orders] cache_s``) per question asked, so a customer's follow-ups and the
  owner's Try it don't call the shop's API again.
- **A breaker**: after a failure every lookup for the next ``BREAK_S`` seconds fails at once with
  the same reason, so a dead API costs one timeout, on the lookup's thread, not the queue's.

A cache of a few hundred small records needs no library: dicts with expiry times, bounded.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillRunning
from typing import Callable

from responder.core.clock import utcnow
from responder.core.settings import Settings
from responder.orders.base import Order, OrderSource, OrderSourceError

log = logging.getLogger("deskhand.orders")
BREAK_S = 30.0     # after a failure, no call to the source for this long
INLINE_S = 0.3     # how long a message waits on the source in line before it steps aside
KEEP_S = 120.0     # a finished lookup's answer waits this long for its message to come back
MAX_CACHED = 512


class Pending(Exception):
    """The source is still answering: the message steps aside and comes back when it has."""


class Lookup:
    def __init__(self, source: OrderSource, *, cache_s: float = 60.0, clock: Callable[[], float] | None = None,
                 inline_s: float = INLINE_S):
        # The shop's clock (a test or the evaluation may freeze or move it), in seconds.
        self.source, self.cache_s, self.clock = source, cache_s, clock or (lambda: utcnow().timestamp())
        self.inline_s = inline_s
        self.on_done: Callable[[], None] | None = None  # the daemon's kick: a deferred message can go on
        self._cache: dict[tuple, tuple[float, list[Order]]] = {}
        self._ready: dict[tuple, tuple[float, list[Order] | OrderSourceError]] = {}
        self._inflight: dict[tuple, Future] = {}
        self._started: dict[tuple, float] = {}   # when each lookup in flight began (monotonic)
        self._broken: tuple[float, str] | None = None  # (until, why) since the last lookup failed
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="orders")
        self.last_ms = 0.0

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def down(self) -> bool:
        """The last lookup failed (an outage the owner was told of); a success ends it."""
        return self._broken is not None

    def patient(self) -> "Lookup":
        """The same lookup (one cache, one breaker) for a caller with no queue behind it (Try it,
        ``run.py eval``): it waits for the answer however long the source's own timeout allows."""
        view = copy.copy(self)
        view.inline_s = None
        return view

    def by_number(self, number: str) -> list[Order]:
        return self._ask(("number", number), lambda: self.source.by_number(number))

    def by_contact(self, *, email: str = "", phone: str = "") -> list[Order]:
        return self._ask(("contact", email, phone), lambda: self.source.by_contact(email=email, phone=phone))

    def _ask(self, key: tuple, call: Callable[[], list[Order]]) -> list[Order]:
        now = self.clock()
        with self._lock:
            ready = self._ready.pop(key, None)
            if ready is not None and ready[0] > now:  # answered while its message stepped aside
                if isinstance(ready[1], OrderSourceError):
                    raise ready[1]
                return ready[1]
            if (hit := self._cache.get(key)) and hit[0] > now:
                return hit[1]
            future = self._inflight.get(key)
            if future is None:
                if self._broken and self._broken[0] > now:
                    raise OrderSourceError(f"{self._broken[1]} (not asked again for {BREAK_S:.0f} s)")
                future = self._inflight[key] = self._pool.submit(self._run, key, call)
                self._started[key] = time.monotonic()
            # While another lookup is already late, the source is slow: don't wait in line at all.
            lagging = self.inline_s is not None and any(time.monotonic() - t > self.inline_s
                                                         for k, t in self._started.items() if k != key)
        try:
            found = future.result(timeout=0 if lagging else self.inline_s)
        except StillRunning:
            raise Pending(f"waiting on the {self.name} order source") from None
        finally:
            if future.done():
                with self._lock:
                    self._ready.pop(key, None)  # answered in line: nothing waits for it
        return found

    def _run(self, key: tuple, call: Callable[[], list[Order]]) -> list[Order]:
        started = time.perf_counter()
        outcome: list[Order] | OrderSourceError
        try:
            outcome = list(call())
        except OrderSourceError as exc:
            outcome = exc
        except Exception as exc:  # an adapter's bug is an outage too: hold the draft, keep the daemon
            log.exception("order source %s raised", self.name)
            outcome = OrderSourceError(f"the {self.name} order source failed ({type(exc).__name__})")
        self.last_ms = (time.perf_counter() - started) * 1000
        now = self.clock()
        with self._lock:
            self._inflight.pop(key, None)
            self._started.pop(key, None)
            if isinstance(outcome, OrderSourceError):
                self._broken = (now + BREAK_S, str(outcome))
            else:
                self._broken = None
                if self.cache_s > 0:
                    self._cache[key] = (now + self.cache_s, outcome)
            self._ready[key] = (now + KEEP_S, outcome)
            for store in (self._cache, self._ready):
                if len(store) > MAX_CACHED:
                    for stale in [k for k, v in store.items() if v[0] <= now] or list(store)[:len(store) // 2]:
                        store.pop(stale, None)
        if self.on_done is not None:
            try:
                self.on_done()
            except Exception:  # noqa: BLE001 - a missed kick only waits for the next tick
                log.exception("order lookup: the process kick failed")
        if isinstance(outcome, OrderSourceError):
            raise outcome
        return outcome


def source_for(settings: Settings) -> Lookup | None:
    """The configured order source, or None. Raises ConfigError for a missing secret or URL."""
    config = settings.orders
    if config.source == "none":
        return None
    if config.source == "file":
        from responder.orders.csvfile import FileSource
        path = config.file if config.file.is_absolute() else settings.base_dir / config.file
        source: OrderSource = FileSource(path, shop_url=config.shop_url)
    else:
        from responder.core.errors import ConfigError
        if not config.shop_url:
            raise ConfigError(f"[orders] source = \"{config.source}\" needs [orders] shop_url.")
        if config.source == "shopify":
            from responder.orders.shopify import ShopifySource
            source = ShopifySource(config.shop_url, config.secret("token_env"), api_version=config.api_version,
                                   timeout_s=config.timeout_s, max_wait_s=config.timeout_s * 2)
        else:
            from responder.orders.woocommerce import WooCommerceSource
            source = WooCommerceSource(config.shop_url, config.secret("consumer_key_env"),
                                       config.secret("consumer_secret_env"), timeout_s=config.timeout_s,
                                       max_wait_s=config.timeout_s * 2)
    return Lookup(source, cache_s=config.cache_s)
