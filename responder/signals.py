"""Signals: cheap, pure facts about a customer message, computed before anything is drafted.

Runs in the pipeline after parsing (quoted history already stripped) and before retrieval.
``compute_signals`` reads the new text, the subject, the channel and the thread's earlier
customer messages, and returns a frozen :class:`Signals` that is stored with the draft and read
by routing: frustrated customers, requests for a person, sensitive topics and prompt-injection
attempts go to the owner, with each reason in plain words. Nothing here blocks or raises: any
text (any script, 100 kB pastes, control characters, nothing at all) gives a ``Signals``.

Helpers: ``responder.frustration`` (score and reasons) and ``responder.language`` (language,
gibberish). Heavy detectors (VADER, py3langid) load once, lazily, under a lock.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from responder import patterns as _p
from responder.frustration import FRUSTRATION_THRESHOLD, score_frustration
from responder.language import UNDETERMINED, detect_language, is_gibberish, normalize_languages

log = logging.getLogger("deskhand.signals")

DEFAULT_LANGUAGES = ("en",)
DEFAULT_SENSITIVE_PATTERNS = _p.DEFAULT_SENSITIVE_PATTERNS
DEFAULT_REFUND_WINDOW_DAYS = 30
LONG_PASTE_CHARS = 2_000   # longer new text counts as a paste: answer the new question only
MAX_SCAN = 20_000          # characters read by the pattern checks (the drafter reads as many)


@dataclass(frozen=True)
class SignalConfig:
    """Shop settings the signals use; ``SignalConfig.of(x)`` accepts None, a dict or an object."""
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    # topic -> regexes (case-insensitive); merged over DEFAULT_SENSITIVE_PATTERNS topic by topic,
    # an empty list switches a default topic off.
    sensitive_patterns: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
        (k, tuple(v)) for k, v in DEFAULT_SENSITIVE_PATTERNS.items())
    refund_window_days: int = DEFAULT_REFUND_WINDOW_DAYS
    long_paste_chars: int = LONG_PASTE_CHARS
    frustration_threshold: float = FRUSTRATION_THRESHOLD

    @classmethod
    def of(cls, settings=None) -> "SignalConfig":
        if isinstance(settings, cls):
            return settings
        if settings is None:
            return cls()
        if not isinstance(settings, Mapping) and getattr(settings, "signals", None) is not None:
            return cls.of(settings.signals)      # a Settings object with a [signals] section

        def get(*names):
            for name in names:
                value = settings.get(name) if isinstance(settings, Mapping) else getattr(settings, name, None)
                if value is not None:
                    return value
            return None

        config = cls()
        try:
            if (langs := get("languages", "shop_languages")) is not None:
                config = dataclasses.replace(config, languages=normalize_languages(langs))
            if (extra := get("sensitive_patterns", "sensitive")) is not None:
                merged = dict(DEFAULT_SENSITIVE_PATTERNS)
                merged.update({str(k): ([v] if isinstance(v, str) else list(v or ())) for k, v in dict(extra).items()})
                config = dataclasses.replace(config, sensitive_patterns=tuple(
                    (k, tuple(str(p) for p in v)) for k, v in merged.items()))
            for name, kind in (("refund_window_days", int), ("long_paste_chars", int),
                               ("frustration_threshold", float)):
                if (value := get(name)) is not None:
                    config = dataclasses.replace(config, **{name: kind(value)})
        except (TypeError, ValueError) as exc:
            log.warning("signal settings partly ignored (%s); using defaults for the rest", exc)
        return config


@dataclass(frozen=True)
class Signals:
    frustration: float = 0.0
    frustration_reasons: list[str] = field(default_factory=list)
    is_frustrated: bool = False            # frustration >= frustration_threshold (default 0.5)
    wants_human: str | None = None         # plain-words reason, e.g. "asked for a person: 'talk to a human'"
    language: str = UNDETERMINED           # ISO 639-1, "und" when too short to tell
    language_confidence: float = 0.0
    language_supported: bool = True        # "und" counts as supported
    acknowledgement: bool = False          # "thanks!", "👍": needs no reply
    emoji_only: bool = False
    empty: bool = False                    # no visible text in the message nor the subject
    gibberish: bool = False
    long_paste: bool = False               # answer the new question only
    paste_start: int | None = None         # index in the given text where a pasted email begins
    sensitive: list[str] = field(default_factory=list)   # e.g. "safety: 'caught fire'"
    injection: str | None = None           # e.g. "prompt injection: 'ignore previous instructions'"

    def reasons(self) -> list[str]:
        """Every signal that is set, in plain words, for the owner."""
        out = list(self.sensitive)
        if self.wants_human:
            out.append(self.wants_human)
        if self.is_frustrated:
            out.append(f"frustrated ({self.frustration:.2f}): " + "; ".join(self.frustration_reasons))
        if self.injection:
            out.append(self.injection)
        if not self.language_supported:
            out.append(f"written in an unsupported language ({self.language})")
        flags = {"empty": "the message is empty", "emoji_only": "only emoji", "gibberish": "looks like gibberish",
                 "acknowledgement": "an acknowledgement that needs no reply",
                 "long_paste": "a long paste or forwarded email: answer the new question only"}
        return out + [text for name, text in flags.items() if getattr(self, name)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_RE_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|tr|sv|rv|antw)\s*(?:\[\d+\])?\s*:\s*)+", re.I)


def _clean(value, limit: int = MAX_SCAN) -> str:
    """NFKC, no control or invisible format characters (keeps the emoji joiner), straight quotes."""
    text = str(value or "")[:limit].replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFKC", _CONTROL.sub(" ", text))
    text = "".join(ch for ch in text if ch == "\u200d" or unicodedata.category(ch) not in ("Cf", "Cs", "Co"))
    return text.translate(_p.QUOTES)


@lru_cache(maxsize=32)
def _compiled(patterns: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[tuple[str, re.Pattern], ...]:
    out = []
    for topic, regexes in patterns:
        parts = []
        for regex in regexes:
            try:
                re.compile(regex)
                parts.append(f"(?:{regex})")
            except re.error:
                log.warning("sensitive pattern %r for %r is not a valid regex; matched literally", regex, topic)
                parts.append(re.escape(regex))
        if parts:
            out.append((topic, re.compile("|".join(parts), re.I)))
    return tuple(out)


def _quoted(match: re.Match) -> str:
    return "'" + re.sub(r"\s+", " ", match.group(0)).strip()[:80] + "'"


def sensitive_topics(text: str, config: SignalConfig) -> list[str]:
    found = [f"{topic}: {_quoted(m)}" for topic, rx in _compiled(config.sensitive_patterns)
             if (m := rx.search(text))]
    if reason := refund_beyond_policy(text, config.refund_window_days):
        found.append(reason)
    return found


def refund_beyond_policy(text: str, window_days: int) -> str | None:
    """A refund/return asked for something older than the policy window ("bought 3 months ago")."""
    for sentence in re.split(r"(?<=[.!?\n])\s+", text):
        if not _p.REFUND.search(sentence):
            continue
        for m in _p.AGE.finditer(sentence):
            if m.group("last"):
                days = 365 if m.group("last").lower().endswith("year") else 31
            else:
                n = m.group("n").lower()
                count = int(n) if n.isdigit() else _p.NUMBER_WORDS.get(n, 0)
                days = count * _p.UNIT_DAYS[m.group("unit").lower().rstrip("s")]
            if days > window_days:
                return f"refund beyond policy: {_quoted(m)} (policy {window_days} days)"
    return None


def wants_person(text: str) -> str | None:
    m = _p.HUMAN_REQUEST.search(text)
    return f"asked for a person: {_quoted(m)}" if m else None


def injection_attempt(text: str) -> str | None:
    m = _p.INJECTION.search(text)
    return f"prompt injection: {_quoted(m)}" if m else None


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return unicodedata.category(ch) == "So" or 0x1F000 <= cp <= 0x1FAFF or 0x2600 <= cp <= 0x27BF


def emoji_only(text: str) -> bool:
    """Emoji (with joiners, skin tones, punctuation) and nothing that reads as words or numbers."""
    if not any(_is_emoji(ch) for ch in text):
        return False
    return not any(unicodedata.category(ch)[0] in "LN" for ch in text)


def is_acknowledgement(text: str) -> bool:
    """Thanks/ok with nothing asked: "thanks!", "ok great", "👍", "got it, cheers", "thanks, Anna"."""
    if not text.strip() or len(text) > 200 or "?" in text or _p.ASKING.search(text):
        return False
    if emoji_only(text):
        return all(ch in _p.ACK_EMOJI or not _is_emoji(ch) for ch in text)
    if any(_is_emoji(ch) and ch not in _p.ACK_EMOJI for ch in text):
        return False
    rest = _p.ACK.sub(" ", text.lower())
    if len(rest) == len(text):
        return False            # no thanks/ok at all
    left = [w for w in re.findall(r"[^\W\d_]+", rest) if w not in _p.FILLER]
    if not left:
        return True
    # "Thanks, Anna": one capitalised word at the end is a name, not a request.
    last = re.findall(r"[^\W\d_]+", text)[-1:]
    return len(left) == 1 and bool(last) and last[0].lower() == left[0] and last[0][:1].isupper() \
        and left[0] not in _p.REQUEST_WORDS


def paste_start(text: str) -> int | None:
    m = _p.FORWARDED.search(text[:MAX_SCAN * 5])
    return m.start() if m else None


def compute_signals(text, *, subject="", channel="email", earlier=(), settings=None) -> Signals:
    """Signals for one new customer message; never raises (a failure logs and gives defaults)."""
    try:
        return _compute(text, subject=subject, channel=channel, earlier=earlier, settings=settings)
    except Exception:  # pragma: no cover - defensive: signals must never stop the pipeline
        log.exception("signals failed; storing defaults")
        return Signals(empty=not str(text or "").strip())


def _compute(text, *, subject, channel, earlier, settings) -> Signals:
    config = SignalConfig.of(settings)
    raw = text if isinstance(text, str) else str(text or "")
    body = _clean(raw).strip()
    subj = _RE_PREFIX.sub("", _clean(subject, 1000)).strip() if channel == "email" else ""
    visible = lambda s: any(not ch.isspace() and ch != "\u200d" for ch in s)  # noqa: E731
    if not visible(body) and not visible(subj):
        return Signals(empty=True)
    main = body if visible(body) else subj           # a subject-only email is read from its subject
    words = f"{subj}\n{body}" if subj and main is body else main
    start = paste_start(raw)
    long_paste = len(raw) > config.long_paste_chars or start is not None
    new_part = _clean(raw[:start]).strip() if start else main  # judge the new words, not the paste
    ack = is_acknowledgement(main)
    history = [] if ack else [_clean(e, 4_000) for e in list(earlier or ())[-20:] if isinstance(e, str)]
    score, why = score_frustration(new_part or main, subj if main is body else "", history)
    lang, confidence = detect_language(new_part or main, config.languages)
    return Signals(
        frustration=score, frustration_reasons=why, is_frustrated=score >= config.frustration_threshold,
        wants_human=wants_person(words), language=lang, language_confidence=confidence,
        language_supported=lang == UNDETERMINED or lang in config.languages, acknowledgement=ack,
        emoji_only=emoji_only(main), empty=False, gibberish=is_gibberish(main), long_paste=long_paste,
        paste_start=start, sensitive=sensitive_topics(words, config), injection=injection_attempt(words))
