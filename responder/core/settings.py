"""Settings: one typed object loaded from ``settings.toml`` and the environment.

Read once at start-up by ``run.py``; everything else receives the object. Relative paths in the
file resolve against the file's folder. Secrets never live in the file: it names the environment
variable that holds each one (``password_env = "DESKHAND_IMAP_PASSWORD"``). Any value can also be
overridden from the environment as ``DESKHAND_<SECTION>__<KEY>`` (e.g. ``DESKHAND_EMAIL__IMAP_HOST``).

A bad or missing setting raises :class:`ConfigError` with one sentence that names the key.
"""
from __future__ import annotations

import functools
import os
import re
import secrets as _secrets
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from responder.core.errors import ConfigError

# Values that people paste from examples instead of a real secret.
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "password", "secret", "xxx", "your-password",
                       "your_password", "<password>", "app-password-here"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSettings(Section):
    name: str = "Wick & Willow Candle Co."
    owner_name: str = "Maya"
    support_email: str = "hello@wickandwillow.example"
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/London')")
        return value


class KnowledgeSettings(Section):
    dir: Path = Path("knowledge")
    # How often to look for edits in the folder (a cheap mtime check; changed entries re-embedded).
    refresh_s: float = Field(30.0, gt=0)
    # Optional catalog feed: a CSV URL or path copied to <dir>/catalog.csv every catalog_sync_minutes.
    catalog_source: str = ""
    catalog_sync_minutes: float = Field(60.0, gt=0)
    # Where the knowledge index lives; empty: <data_dir>/index. Daemons on one machine may share it
    # (a file lock serializes rebuilds); each process also keeps the vectors in memory.
    index_dir: Path | None = None


class EmbeddingsSettings(Section):
    provider: Literal["local", "openai"] = "local"
    model: str = "text-embedding-3-small"   # openai only; local is always all-MiniLM-L6-v2
    dim: int = Field(1536, ge=8)            # openai only
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"


class DatabaseSettings(Section):
    # Empty means a SQLite file in data_dir.
    url: str = ""
    data_dir: Path = Path("data")


class LLMSettings(Section):
    provider: Literal["offline", "openai"] = "offline"
    model: str = "gpt-4o-mini"
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(15.0, gt=0)   # one request; slow local models on a CPU may need more
    budget_s: float = Field(20.0, gt=0)    # every retry included; then the draft is made offline
    # USD per million tokens, for the spend shown in the digest and the dashboard (0 for a local model).
    price_input_per_mtok: float = Field(0.15, ge=0)
    price_output_per_mtok: float = Field(0.60, ge=0)
    # Hard cap on model spend per day (shop's timezone), in USD, counted from the tokens each call
    # used at the prices above. When it is spent, drafts are made offline and held for review,
    # and the owner is told once that day. 0: no cap.
    daily_budget_usd: float = Field(2.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_input_per_mtok + completion_tokens * self.price_output_per_mtok) / 1e6


class EmailSettings(Section):
    imap_host: str = ""
    imap_port: int = Field(993, ge=1, le=65535)
    imap_ssl: bool = True
    username: str = ""
    password_env: str = "DESKHAND_IMAP_PASSWORD"
    mailbox: str = "INBOX"
    smtp_host: str = ""
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_tls: Literal["starttls", "ssl", False] = "starttls"
    # SMTP login; empty smtp_username means "same as username", smtp_password_env likewise.
    smtp_username: str = ""
    smtp_password_env: str = ""
    from_address: str = ""
    poll_interval_s: float = Field(60.0, gt=0)
    idle: bool = True
    # First start: answer mail received this many days before the start (0 = only new mail).
    answer_backlog_days: int = Field(0, ge=0)
    fetch_batch: int = Field(50, ge=1, le=1000)
    max_process_attempts: int = Field(3, ge=1)
    max_auto_replies_per_thread_per_day: int = Field(4, ge=0)
    max_auto_replies_per_sender_per_day: int = Field(8, ge=0)
    # Skip TLS certificate checks (self-signed test servers only).
    tls_verify: bool = True

    @field_validator("smtp_tls", mode="before")
    @classmethod
    def _tls_mode(cls, value: Any) -> Any:
        if value in (False, "false", "none", "off", "", None):
            return False
        return value

    @property
    def imap_enabled(self) -> bool:
        return bool(self.imap_host and self.username)

    @property
    def smtp_enabled(self) -> bool:
        return bool(self.smtp_host)

    def password(self) -> str:
        return _secret(self.password_env, "[email] password_env")

    def smtp_credentials(self) -> tuple[str, str] | None:
        user = self.smtp_username or self.username
        env = self.smtp_password_env or self.password_env
        if not user or not os.environ.get(env):
            return None
        return user, _secret(env, "[email] smtp_password_env" if self.smtp_password_env else "[email] password_env")


class RoutingSettings(Section):
    auto_send_threshold: float = Field(0.75, ge=0, le=1)
    auto_send_email: bool = True
    auto_send_sms: bool = True
    auto_send_whatsapp: bool = True
    auto_send_chat: bool = True
    max_customer_turns: int = Field(5, ge=1)  # more customer messages than this unresolved: handoff
    # Per-sender rate limit: more than burst_limit messages within burst_window_s seconds are
    # not answered one by one; they become context for the next reply.
    burst_limit: int = Field(3, ge=1)
    burst_window_s: float = Field(10.0, gt=0)
    # All automatic replies together, per hour (a runaway stops here; the rest wait for the owner). 0: no cap.
    max_auto_replies_per_hour: int = Field(60, ge=0)
    # Loop breaker: this many near-identical inbound messages within loop_window_minutes (from
    # anyone) pause automatic sending for loop_pause_minutes, and the owner is told.
    loop_threshold: int = Field(5, ge=2)
    loop_window_minutes: float = Field(10.0, gt=0)
    loop_pause_minutes: float = Field(60.0, gt=0)


# Openers that sound like a form letter; the tone step drops them (responder.draft.tone).
BANNED_OPENERS = ("Certainly", "Of course", "Great question", "Good question", "Excellent question",
                  "Absolutely", "Sure thing", "I hope this finds you well", "I hope this email finds you well",
                  "I hope this message finds you well", "I hope you're doing well", "I hope you are doing well",
                  "I hope you're well", "I hope you are well", "Thank you for reaching out",
                  "Thanks for reaching out", "Thank you for contacting us", "Thanks for contacting us",
                  "Thank you for your email", "Thank you for your message", "I'd be happy to help",
                  "I would be happy to help")


class ToneSettings(Section):
    """Tone rules are data; ``responder.draft.tone`` enforces them for every backend."""
    banned_openers: list[str] = Field(default_factory=lambda: list(BANNED_OPENERS))
    max_sentences: int = Field(3, ge=1, le=10)
    acknowledgement: str = "I'm sorry about the trouble."
    sms_max_segments: int = Field(2, ge=1, le=10)

class SignalSettings(Section):
    languages: list[str] = Field(default_factory=lambda: ["en"])  # languages the shop answers in
    # Extra patterns per topic that always go to the owner, e.g. {legal = ["small claims"]}.
    sensitive_patterns: dict[str, list[str]] = Field(default_factory=dict)
    refund_window_days: int = Field(30, ge=0)


class WebSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8025, ge=0, le=65535)
    # Where the owner's browser and the customers' feedback links reach this server, e.g.
    # https://help.example.com behind a reverse proxy. Empty: http://host:port, and customer
    # emails carry no feedback links (a customer can't reach 127.0.0.1).
    public_url: str = ""
    # The variable holding the secret that signs links and sessions. Unset: a random secret is
    # made once and kept in <data_dir>/secret.key (set the variable when several daemons share a database).
    secret_env: str = "DESKHAND_SECRET"
    session_hours: float = Field(12.0, gt=0)
    # Reverse proxies whose X-Forwarded-For is believed (their addresses, e.g. ["127.0.0.1"] for
    # nginx on the same machine). Empty: no header names the client, so none can reset the login limit.
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class ChatSettings(Section):
    """The chat widget on the shop's own website (channels/chat, responder/web/chat_api.py)."""
    enabled: bool = True
    # Pages allowed to use the widget: scheme://host[:port] of the shop's site, exactly as the
    # browser sends it in Origin. The daemon's own address is always allowed (its /shop demo page).
    allowed_origins: list[str] = Field(default_factory=list)
    greeting: str = "Hi! Ask me anything about our products, shipping or your order."
    # When a person answers, in OpenStreetMap's opening_hours syntax, in [store] timezone, e.g.
    # "Mo-Fr 09:00-17:00; Sa 10:00-14:00". Outside them the widget says when a person will reply.
    # Empty: no hours are shown.
    hours: str = ""
    max_chars: int = Field(2000, ge=100, le=20_000)     # one chat message
    offer_person_after: int = Field(5, ge=1)            # exchanges before "talk to a person" is offered
    messages_per_minute: int = Field(12, ge=1)          # per visitor, a hard cap (bursts are answered together)
    messages_per_minute_per_address: int = Field(30, ge=1)  # per IP address, all its visitors
    sessions_per_hour_per_address: int = Field(20, ge=1)    # new visitors from one IP address
    # Automatic replies to one visitor a day (a chat has more exchanges than an email thread; the
    # [email] caps of 4 per thread and 8 per sender stop mail loops, which a person typing is not). 0: no cap.
    max_auto_replies_per_day: int = Field(40, ge=0)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        cleaned = []
        for value in values:
            value = value.strip().rstrip("/").lower()
            if not re.fullmatch(r"https?://[a-z0-9.\-\[\]:]+", value):
                raise ValueError(f"{value!r} is not an origin: write scheme://host[:port] with no path, "
                                 "e.g. https://shop.example.com")
            cleaned.append(value)
        return cleaned

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        value = value.strip()
        if value:
            from opening_hours import OpeningHours  # a Rust parser: loaded only when hours are set
            try:
                OpeningHours(value)
            except Exception as exc:
                raise ValueError(f"{value!r} is not in opening_hours syntax (e.g. \"Mo-Fr 09:00-17:00\"): {exc}")
        return value


class TwilioSettings(Section):
    """SMS and WhatsApp through Twilio (channels/twilio). Empty account_sid: texting is off."""
    account_sid: str = ""
    auth_token_env: str = "TWILIO_AUTH_TOKEN"   # the variable holding the auth token
    sms_from: str = ""          # the shop's number in E.164, e.g. +15550100000
    whatsapp_from: str = ""     # the WhatsApp sender, e.g. +15550100000 (whatsapp: is added)
    # webhook: Twilio POSTs to <public_url>/twilio/sms and /twilio/whatsapp (signature checked);
    # poll: a job lists new inbound messages through the REST API (no public URL needed).
    mode: Literal["webhook", "poll"] = "webhook"
    poll_interval_s: float = Field(30.0, gt=0)
    # The URL Twilio calls, as Twilio sees it (signatures are computed over it); default [web] public_url.
    public_url: str = ""
    api_base_url: str = ""      # empty: Twilio's API (a loopback fake in tests)
    # WhatsApp outside the 24-hour customer-service window: an approved template (content SID)
    # or, when empty, the reply goes to the owner.
    whatsapp_template_sid: str = ""
    help_text: str = "This is {store} support. Text your question any time; reply STOP to opt out."
    owner_sms: str = ""         # optional: your mobile, texted at once when a customer is handed to you

    @property
    def enabled(self) -> bool:
        return bool(self.account_sid)

    def auth_token(self) -> str:
        return _secret(self.auth_token_env, "[twilio] auth_token_env")


class OrderSettings(Section):
    """Where order data comes from (responder.orders): "where is my order?" answered to the order's
    own customer. "none": order questions go to the owner, as before."""
    source: Literal["none", "file", "shopify", "woocommerce"] = "none"
    # file: a Shopify orders export CSV (optional columns Tracking Company, Tracking Number,
    # Tracking URL, Delivered at), read again whenever it changes.
    file: Path = Path("orders.csv")
    # shopify: https://your-shop.myshopify.com; woocommerce: https://your-shop.example (the WordPress site).
    shop_url: str = ""
    # Shopify: a custom app's Admin API access token with the read_orders scope.
    token_env: str = "SHOPIFY_ACCESS_TOKEN"
    api_version: str = "2026-10"
    # WooCommerce: a REST API key with Read access (WooCommerce > Settings > Advanced > REST API).
    consumer_key_env: str = "WOOCOMMERCE_CONSUMER_KEY"
    consumer_secret_env: str = "WOOCOMMERCE_CONSUMER_SECRET"
    timeout_s: float = Field(5.0, gt=0)      # one lookup, retries included
    cache_s: float = Field(60.0, ge=0)       # a looked-up order is reused this long
    # Wrong guesses (an order number with another customer's email) per sender per hour; then
    # lookups stop for that sender and the owner is told.
    max_failed_checks_per_hour: int = Field(3, ge=1)
    # Lookups of any kind per sender per hour (a customer asking now and then is far below it).
    max_lookups_per_hour: int = Field(20, ge=1)
    # Days after shipping when an order counts as late; 0: read from the knowledge ("delivery
    # takes 3–5 business days" gives 5 business days).
    late_after_days: int = Field(0, ge=0)

    @field_validator("shop_url")
    @classmethod
    def _shop_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a shop on this machine)")
        return value

    def secret(self, name: str) -> str:
        env = getattr(self, name)
        return _secret(env, f"[orders] {name}")


class ApprovalSettings(Section):
    """The approval queue (responder.owner.approvals)."""
    remind_after_hours: float = Field(24.0, gt=0)  # a pending draft this old gets one reminder
    expire_days: float = Field(14.0, gt=0)         # then it expires and is never sent
    notify: Literal["none", "handoff", "all"] = "handoff"  # email the owner at once for these
    link_ttl_hours: float = Field(72.0, gt=0)      # one-click approve/reject links
    feedback_ttl_days: float = Field(60.0, gt=0)   # thumbs up/down links in replies


class DigestSettings(Section):
    enabled: bool = True
    time: str = "08:00"   # local time in [store] timezone
    to: str = ""          # the owner's address; empty: no digest and no owner email. Approval
                          # replies are accepted only from this address (and with the draft's token).

    @field_validator("time")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
        if not match:
            raise ValueError("must be a 24-hour time such as '08:00'")
        return f"{int(match.group(1)):02d}:{match.group(2)}"

    @property
    def hour_minute(self) -> tuple[int, int]:
        hour, minute = self.time.split(":")
        return int(hour), int(minute)


class PrivacySettings(Section):
    # Conversations whose last message is older than this many days are erased by a daily job
    # (messages, drafts, outbox rows, identities left without messages). 0: kept forever.
    retention_days: int = Field(0, ge=0)


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DESKHAND_", env_nested_delimiter="__", extra="forbid")

    store: StoreSettings = StoreSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    embeddings: EmbeddingsSettings = EmbeddingsSettings()
    database: DatabaseSettings = DatabaseSettings()
    llm: LLMSettings = LLMSettings()
    email: EmailSettings = EmailSettings()
    routing: RoutingSettings = RoutingSettings()
    tone: ToneSettings = ToneSettings()
    signals: SignalSettings = SignalSettings()
    web: WebSettings = WebSettings()
    twilio: TwilioSettings = TwilioSettings()
    chat: ChatSettings = ChatSettings()
    orders: OrderSettings = OrderSettings()
    approvals: ApprovalSettings = ApprovalSettings()
    digest: DigestSettings = DigestSettings()
    privacy: PrivacySettings = PrivacySettings()
    log: LogSettings = LogSettings()
    # Folder of the settings file: the base of every relative path.
    base_dir: Path = Path(".")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource):
        # The environment wins over the file, so a deployment can override one key.
        return env_settings, init_settings

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'deskhand.sqlite3'}"

    @property
    def data_dir(self) -> Path:
        return _resolve(self.base_dir, self.database.data_dir)

    @property
    def knowledge_dir(self) -> Path:
        return _resolve(self.base_dir, self.knowledge.dir)

    @property
    def reply_address(self) -> str:
        return self.email.from_address or self.store.support_email

    @property
    def own_addresses(self) -> set[str]:
        found = {self.store.support_email, self.email.from_address, self.email.username}
        return {a.strip().lower() for a in found if a and "@" in a}

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.store.timezone)

    def daily_caps(self, channel: str) -> tuple[int, int]:
        """Automatic replies a day to one thread, and to one recipient, on ``channel`` (0: no cap)."""
        if channel == "chat":
            return self.chat.max_auto_replies_per_day, self.chat.max_auto_replies_per_day
        return self.email.max_auto_replies_per_thread_per_day, self.email.max_auto_replies_per_sender_per_day

    @property
    def owner_address(self) -> str:
        return self.digest.to.strip().lower()

    @property
    def base_url(self) -> str:
        """Where links in emails point: [web] public_url, else the local server."""
        return self.web.public_url or f"http://{self.web.host}:{self.web.port}"

    def secret(self) -> bytes:
        """The key for signed links and session cookies (see [web] secret_env)."""
        value = os.environ.get(self.web.secret_env, "")
        if value:
            if value.strip().lower() in PLACEHOLDER_SECRETS or len(value) < 16:
                raise ConfigError(f"The environment variable {self.web.secret_env} named by [web] secret_env "
                                  "must hold at least 16 random characters.")
            return value.encode()
        return _stored_secret(self.data_dir / "secret.key")


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the settings file (default ``./settings.toml``) and the environment."""
    file = Path(path) if path else Path("settings.toml")
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file} is not valid TOML: {exc}.") from None
    elif path is not None:
        raise ConfigError(f"The settings file {file} does not exist.")
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        data.setdefault(section, {})[name] = value
    data["base_dir"] = file.resolve().parent
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_explain(file, exc)) from None


def _explain(file: Path, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else loc[0] if loc else "?"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "is not a known setting (check the spelling)"
    elif "input" in err and err["type"] != "missing":
        msg = f"{msg[0].lower()}{msg[1:]} (got {err['input']!r})"
    return f"{file.name}: {key} {msg}."


def _secret(env_name: str, key: str) -> str:
    value = os.environ.get(env_name, "")
    if value.strip().lower() in PLACEHOLDER_SECRETS:
        why = "is not set" if not value else "holds a placeholder, not a real secret"
        raise ConfigError(f"The environment variable {env_name} named by {key} {why}.")
    return value


@functools.lru_cache(maxsize=8)
def _stored_secret(path: Path) -> bytes:
    """Read once per process (every signed link needs it; the file never changes while running)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(_secrets.token_urlsafe(32))
    return path.read_bytes().strip()


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()
