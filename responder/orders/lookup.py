"""The order source as the pipeline uses it: built from settings, cached briefly, failing fast.

``source_for(settings)`` builds the adapter ``[orders] source`` names (``None`` when it is "none")
and wraps it in :class:`Lookup`, which the order step calls:

- a short cache (``[orders] cache_s``) per question asked, so a customer's follow-ups and the
  owner's Try it don't call the shop's API again;
- a breaker: after a failure every lookup for the next ``BREAK_S`` seconds fails at once with the
  same reason, so a dead or slow API costs one timeout, not one per message, and never holds up
  the messages behind it;
- the time each lookup took, for the bench and the log.

A cache of a few hundred small records needs no library: a dict with expiry times, bounded.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from responder.core.clock import utcnow
from responder.core.settings import Settings
from responder.orders.base import Order, OrderSource, OrderSourceError

log = logging.getLogger("deskhand.orders")
BREAK_S = 30.0
MAX_CACHED = 512


class Lookup:
    def __init__(self, source: OrderSource, *, cache_s: float = 60.0, clock: Callable[[], float] | None = None):
        # The shop's clock (a test or the evaluation may freeze or move it), in seconds.
        self.source, self.cache_s, self.clock = source, cache_s, clock or (lambda: utcnow().timestamp())
        self._cache: dict[tuple, tuple[float, list[Order]]] = {}
        self._broken: tuple[float, str] | None = None
        self.down = False          # the last lookup failed (an outage the owner was told of)
        self._lock = threading.Lock()
        self.last_ms = 0.0

    @property
    def name(self) -> str:
        return self.source.name

    def by_number(self, number: str) -> list[Order]:
        return self._ask(("number", number), lambda: self.source.by_number(number))

    def by_contact(self, *, email: str = "", phone: str = "") -> list[Order]:
        return self._ask(("contact", email, phone), lambda: self.source.by_contact(email=email, phone=phone))

    def _ask(self, key: tuple, call: Callable[[], list[Order]]) -> list[Order]:
        now = self.clock()
        with self._lock:
            if (hit := self._cache.get(key)) and hit[0] > now:
                return hit[1]
            if self._broken and self._broken[0] > now:
                raise OrderSourceError(f"{self._broken[1]} (not asked again for {BREAK_S:.0f} s)")
        started = time.perf_counter()
        try:
            found = list(call())
        except OrderSourceError as exc:
            self._trip(str(exc))
            raise
        except Exception as exc:  # an adapter's bug is an outage too: hold the draft, keep the daemon
            log.exception("order source %s raised", self.name)
            self._trip(f"the {self.name} order source failed ({type(exc).__name__})")
            raise OrderSourceError(f"the {self.name} order source failed ({type(exc).__name__})") from None
        finally:
            self.last_ms = (time.perf_counter() - started) * 1000
        with self._lock:
            self._broken, self.down = None, False
            if self.cache_s > 0:
                if len(self._cache) >= MAX_CACHED:
                    self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                    while len(self._cache) >= MAX_CACHED:
                        self._cache.pop(next(iter(self._cache)))
                self._cache[key] = (now + self.cache_s, found)
        return found

    def _trip(self, reason: str) -> None:
        with self._lock:
            self._broken, self.down = (self.clock() + BREAK_S, reason), True


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
