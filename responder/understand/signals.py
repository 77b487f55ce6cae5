"""Signals: cheap, pure facts about a customer message, computed before anything is drafted.

Runs in the pipeline after parsing (quoted history already stripped) and before retrieval.
``compute_signals`` reads the new text, the subject, the channel and the thread's earlier
customer messages, and returns a frozen :class:`Signals` that is stored with the draft and read
by routing: frustrated customers, requests for a person, sensitive topics and prompt-injection
attempts go to the owner, with each reason in plain words. Nothing here blocks or raises: any
text (any script, 100 kB pastes, control characters, nothing at all) gives a ``Signals``.
Helpers: ``responder.understand.frustration``, ``responder.understand.language``,
``responder.understand.injection`` and ``responder.understand.orders``; the heavy detectors (VADER,
py3langid) load once, lazily, under a lock.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from responder.core.settings import Settings
from responder.understand.frustration import (
    FRUSTRATION_THRESHOLD,
    _analyser,
    score_frustration,
)
from responder.understand.injection import injection_attempt
from responder.understand.language import (
    UNDETERMINED,
    _load,
    detect_language,
    emoji_only,
    is_acknowledgement,
    is_gibberish,
    normalize_languages,
)
from responder.understand.orders import about_an_order

log = logging.getLogger("deskhand.signals")

DEFAULT_LANGUAGES = ("en",)
# Topics that always go to the owner: topic -> regexes (case-insensitive, searched anywhere).
DEFAULT_SENSITIVE_PATTERNS: dict[str, list[str]] = {
    "chargeback/dispute": [
        r"\bcharge\s?-?backs?\b", r"\bdisput\w* (?:the|this|my|a|that) (?:charge|payment|transaction)",
        r"\b(?:open|file|raise)\w* an? (?:dispute|(?:paypal|bank|card) (?:claim|case))\b(?: with \w+)?",
        r"\b(?:claim|case) with (?:paypal|my bank|the bank|my card|my credit card|visa|amex|mastercard|klarna)\b",
        r"\b(?:paypal|bank|card) (?:dispute|claim)\b", r"\breverse (?:the|this|my) (?:charge|payment)",
        r"\b(?:rückbuchung|contracargo|rétrofacturation)\b"],
    "legal": [
        r"\b(?:lawyer|attorney|solicitor)s?\b", r"\b(?:sue|suing|sued)\s+(?:you|your|the|this|them)\b",
        r"\blawsuit\b", r"\blegal action\b", r"\bsmall claims\b", r"\b(?:to|in|into) court\b",
        r"\b(?:rechtsanwalt|anwalt|avocat|abogado|avvocato)\b"],
    "safety": [
        r"\bcaught (?:on )?fire\b", r"\b(?:on|set|started an?) fire\b", r"\bfire hazard\b",
        r"\bflames? (?:was|were|got|is|are) (?:huge|enormous|too (?:big|high|tall))", r"\bexplod(?:ed|ing)\b",
        r"\b(?:shattered|cracked|broke) while (?:burning|lit)\b",
        r"\bburn(?:ed|t|s)? (?:my|his|her|their|our) (?:hands?|fingers?|skin|arms?|face|legs?|child|kids?|son"
        r"|daughter|baby|dog|cat)\b", r"\b(?:i|we|he|she|they|my \w+) (?:got|was|were|ha(?:ve|s) been) (?:badly )?"
        r"burn(?:ed|t)\b", r"\bburn (?:injury|injuries|wound|marks?)\b", r"\ballergic reaction\b", r"\banaphyla",
        r"\b(?:rash|hives)\b", r"\bhospital\b", r"\bemergency room\b", r"\bcarbon monoxide\b",
        r"\b(?:verbrannt|verbrennung|allergische reaktion|krankenhaus|brûlure|réaction allergique|hôpital"
        r"|quemadura|reacción alérgica|incendio)\b"],
    "harassment/threats": [
        r"\b(?:kill|hurt|beat up|shoot) you\b", r"\bi know where you live\b", r"\bwatch your back\b",
        r"\byou(?:'ll| will) (?:regret|pay for) (?:this|it)\b", r"\bthreat(?:en)?(?:ed|ing|s)?\b",
        r"\bharass(?:ed|ing|ment)?\b", r"\bstalk(?:ed|ing|er)\b", r"\b(?:bitch|cunt|whore|retard(?:ed)?)\b"],
    "privacy/data request": [
        r"\b(?:gdpr|dsgvo|rgpd|ccpa|dsar)\b", r"\bright to (?:be forgotten|erasure|access)\b",
        r"\b(?:delete|erase|remove) (?:all )?(?:of )?my (?:personal )?(?:data|information|info|details|account)\b",
        r"\b(?:data|subject) (?:access|deletion|erasure) request\b",
        r"\bwhat (?:personal )?data (?:do )?you (?:hold|have|store|keep)\b",
        r"\b(?:löschung meiner daten|meine daten löschen|supprimer mes données|borrar mis datos)\b"],
}
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
    def of(cls, settings: Settings | Mapping | None = None) -> "SignalConfig":
        if isinstance(settings, cls) or settings is None:
            return settings or cls()
        if not isinstance(settings, Mapping) and getattr(settings, "signals", None) is not None:
            return cls.of(settings.signals)      # a Settings object with a [signals] section
        get = settings.get if isinstance(settings, Mapping) else lambda name: getattr(settings, name, None)
        config = cls()
        try:
            if (langs := get("languages") or get("shop_languages")) is not None:
                config = dataclasses.replace(config, languages=normalize_languages(langs))
            if (extra := get("sensitive_patterns")) is not None:
                merged = dict(DEFAULT_SENSITIVE_PATTERNS)
                extra = extra if isinstance(extra, Mapping) else {"sensitive": extra}
                merged.update({str(k): [v] if isinstance(v, str) else list(v or ()) for k, v in extra.items()})
                config = dataclasses.replace(config, sensitive_patterns=tuple(
                    (k, tuple(str(p) for p in v)) for k, v in merged.items()))
            for name, kind in (("refund_window_days", int), ("long_paste_chars", int),
                               ("frustration_threshold", float)):
                if (value := get(name)) is not None:
                    config = dataclasses.replace(config, **{name: kind(value)})
        except Exception as exc:  # a bad setting must not stop the pipeline: keep the defaults
            log.warning("signal settings partly ignored (%s); using defaults for the rest", exc)
        return config


@dataclass(frozen=True)
class Signals:
    """What ``compute_signals`` found; stored with the draft (``to_dict``), read by routing."""
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
    about_order: str | None = None         # e.g. "about a particular order (an order number): 'order #1044'"
    failed: str | None = None              # the detectors raised: nothing above was checked (fail closed)

    def reasons(self) -> list[str]:
        """Every signal that is set, in plain words, for the owner."""
        out = [*filter(None, (self.failed,)), *self.sensitive,
               *filter(None, (self.wants_human, self.injection, self.about_order))]
        if self.is_frustrated:
            out.append(f"frustrated ({self.frustration:.2f}): " + "; ".join(self.frustration_reasons))
        if not self.language_supported:
            out.append(f"written in an unsupported language ({self.language})")
        flags = {"empty": "the message is empty", "emoji_only": "only emoji", "gibberish": "looks like gibberish",
                 "acknowledgement": "an acknowledgement that needs no reply",
                 "long_paste": "a long paste or forwarded email: answer the new question only"}
        return out + [text for name, text in flags.items() if getattr(self, name)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Asking for a person: a request verb aimed at a human, "real person"-style wording, a call-back.
# "safe around a person with asthma" mentions a person without asking for one.
_WHO = (r"(?:a |an |the |your |some |to )?(?:real |actual |live |human )?(?:human|person|people|agent"
        r"|representative|rep|manager|supervisor|owner|someone|somebody|staff|support team|customer service)")
HUMAN_REQUEST = re.compile(
    rf"\b(?:speak|talk|chat|connect|transfer|put|get|pass|escalate)\s+(?:me\s+|this\s+)?(?:to|with|through to)"
    rf"\s+{_WHO}\b(?!\s+(?:who|that|with|in)\b)|\b(?:want|need|like|request|get me|give me|can i have)\s+"
    rf"(?:to\s+(?:reach|contact|speak\s+(?:to|with)|talk\s+(?:to|with))\s+)?{_WHO}\b(?!\s+(?:with|who|that|in|for"
    rf"|to\s+(?!help|call|contact|look|check|get\s+back))\b)|\b(?:real|actual|live)\s+(?:person|human|people)\b"
    rf"|\bhuman\s+being\b|\bare\s+you\s+(?:a\s+)?(?:bot|robot|machine|real)\b|\bnot\s+(?:a|another)\s+bot\b"
    rf"|\b(?:call|phone|ring)\s+me\b(?!\s+(?-i:[A-Z])[a-z]+\b)|\bgive\s+me\s+a\s+(?:call|ring)\b"
    rf"|\bparler\s+(?:à|a|avec)\s+(?:quelqu'un|une\s+(?:vraie\s+)?personne|un\s+(?:humain|conseiller|agent"
    rf"|responsable|être\s+humain))|\b(?:vraie\s+personne|être\s+humain)\b|\bmit\s+(?:einem|einer|jemandem)"
    rf"(?:\s+(?:echten|richtigen))?\s*(?:menschen|mensch|person|mitarbeiter(?:in)?|berater(?:in)?|verantwortlichen)?"
    rf"\s+(?:sprechen|reden)|\becht(?:e|en)\s+(?:menschen|person)\b|\bhablar\s+con\s+(?:alguien|una\s+persona"
    rf"|un\s+(?:humano|agente|asesor)|el\s+(?:encargado|gerente|due[ñn]o))|\bpersona\s+real\b"
    rf"|\bparlare\s+con\s+(?:qualcuno|una\s+persona|un\s+operatore)|\bfalar\s+com\s+(?:algu[ée]m|uma\s+pessoa"
    rf"|um\s+atendente)|\bmet\s+een\s+(?:mens|medewerker|persoon)\s+(?:spreken|praten)", re.I)
# A forwarded or pasted email inside the new text.
_FORWARDED = re.compile(
    r"(?im)^[ \t>]*-{2,}\s*(?:original message|forwarded message|ursprüngliche nachricht|weitergeleitete nachricht"
    r"|message d'origine|message transféré|mensaje original|mensaje reenviado)\s*-{2,}|^[ \t]*begin forwarded message:"
    r"|^[ \t>*]*(?:from|de|von|van|da)\s*:[^\n]*\n(?:[^\n]*\n)?[ \t>*]*(?:sent|date|datum|envoyé|enviado|gesendet"
    r"|data|inviato|to|an|à|para)\s*:|^[^\n]{0,20}\bon\s[^\n]{5,200}\swrote:[ \t]*$|^(?:>[^\n]*\n){3}")
_REFUND = re.compile(r"\b(?:refund|money back|return|reimburse|remboursement|rückerstattung|reembolso)", re.I)
_AGE = re.compile(r"\b(?:(?P<n>\d{1,4}|an?|one|two|three|four|five|six|seven|eight|nine|ten|several)\s+"
                  r"(?P<unit>days?|weeks?|months?|years?)\b|\blast\s+(?P<last>month|year)\b)", re.I)
_NUMBER_WORDS = dict(a=1, an=1, one=1, two=2, three=3, four=4, five=5, six=6, seven=7, eight=8, nine=9, ten=10,
                     several=3)
_UNIT_DAYS = dict(day=1, week=7, month=30, year=365)
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_RE_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|tr|sv|rv|antw)\s*(?:\[\d+\])?\s*:\s*)+", re.I)


def _clean(value, limit: int = MAX_SCAN) -> str:
    """NFKC, no control or invisible format characters (keeps the emoji joiner), straight quotes."""
    text = str(value or "")[:limit].replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFKC", _CONTROL.sub(" ", text))
    text = "".join(ch for ch in text if ch == "\u200d" or unicodedata.category(ch) not in ("Cf", "Cs", "Co"))
    return text.translate(_QUOTES)


def _pattern(regex: str, topic: str) -> re.Pattern:
    try:
        return re.compile(regex, re.I)
    except re.error:
        log.warning("sensitive pattern %r for %r is not a valid regex; matched literally", regex, topic)
        return re.compile(re.escape(regex), re.I)


@lru_cache(maxsize=32)
def _compiled(patterns: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[tuple[str, tuple[re.Pattern, ...]], ...]:
    return tuple((topic, tuple(_pattern(r, topic) for r in regexes if r)) for topic, regexes in patterns)


def _quoted(match: re.Match) -> str:
    return "'" + re.sub(r"\s+", " ", match.group(0)).strip()[:80] + "'"


def sensitive_topics(text: str, config: SignalConfig) -> list[str]:
    found = []
    for topic, regexes in _compiled(config.sensitive_patterns):
        if hits := [m for rx in regexes if (m := rx.search(text)) and m.group(0).strip()]:
            found.append(f"{topic}: {_quoted(min(hits, key=lambda m: m.start()))}")   # the first in the text
    if reason := refund_beyond_policy(text, config.refund_window_days):
        found.append(reason)
    return found


def refund_beyond_policy(text: str, window_days: int) -> str | None:
    """A refund or return asked for something older than the policy window ("bought 3 months ago")."""
    for refund in _REFUND.finditer(text):
        for m in _AGE.finditer(text[max(0, refund.start() - 150):refund.end() + 150]):
            if m.group("last"):
                days = 365 if m.group("last").lower() == "year" else 31
            else:
                n = m.group("n").lower()
                days = (int(n) if n.isdigit() else _NUMBER_WORDS[n]) * _UNIT_DAYS[m.group("unit").lower().rstrip("s")]
            if days > window_days:
                return f"refund beyond policy: {_quoted(m)} (policy {window_days} days)"
    return None


def wants_person(text: str) -> str | None:
    return f"asked for a person: {_quoted(m)}" if (m := HUMAN_REQUEST.search(text)) else None


def _as_list(items) -> list:
    try:
        return [items] if isinstance(items, str) else list(items or ())
    except TypeError:
        return []


def paste_start(text: str) -> int | None:
    m = _FORWARDED.search(text[:MAX_SCAN * 5])
    return m.start() if m else None


def compute_signals(text, *, subject="", channel="email", earlier=(), settings: Settings | Mapping | None = None) -> Signals:
    """Signals for one new customer message; never raises. A failure logs and says so in
    ``failed``: routing then holds the draft (nothing was checked, so nothing is known).

    ``text`` is the new text with quoted history stripped; ``subject`` counts for email only;
    ``earlier`` holds the thread's earlier customer messages, oldest first, without this one;
    ``settings`` is anything ``SignalConfig.of`` accepts (None means the module defaults).
    """
    try:
        return _compute(text, subject=subject, channel=channel, earlier=earlier, settings=settings)
    except Exception as exc:  # signals must never stop the pipeline, nor let a reply out unchecked
        log.exception("signals failed; the draft is held")
        return Signals(empty=not str(text or "").strip(),
                       failed=f"the signal checks failed ({type(exc).__name__}): frustration, sensitive topics, "
                              "a request for a person and prompt injection were not checked")


def _compute(text, *, subject, channel, earlier, settings: Settings | Mapping | None) -> Signals:
    config = SignalConfig.of(settings)
    raw = text if isinstance(text, str) else str(text or "")
    body = _clean(raw).strip()
    subj = _RE_PREFIX.sub("", _clean(subject, 1000)).strip() if channel == "email" else ""
    visible = lambda s: any(not ch.isspace() and ch != "\u200d" for ch in s)  # noqa: E731
    if not visible(body) and not visible(subj):
        return Signals(empty=True)
    main = body if visible(body) else subj           # a subject-only email is read from its subject
    subj_words = subj if main is body else ""
    words = f"{subj_words}\n{main}" if subj_words else main
    start = paste_start(raw)
    new = (_clean(raw[:start]).strip() if start else "") or main   # the new words, not the paste
    asked = f"{subj_words}\n{new}" if subj_words else new
    ack = is_acknowledgement(main)
    history = [] if ack else [_clean(e, 4_000) for e in _as_list(earlier)[-20:] if isinstance(e, str)]
    score, why = score_frustration(new, subj_words, history)
    lang, confidence = detect_language(new, config.languages)
    return Signals(
        frustration=score, frustration_reasons=why, is_frustrated=score >= config.frustration_threshold,
        wants_human=wants_person(asked), language=lang, language_confidence=confidence,
        language_supported=lang == UNDETERMINED or lang in config.languages, acknowledgement=ack,
        emoji_only=emoji_only(main), gibberish=is_gibberish(main),
        long_paste=len(raw) > config.long_paste_chars or start is not None, paste_start=start,
        sensitive=sensitive_topics(words, config), injection=injection_attempt(words),
        about_order=about_an_order(asked))


def warm_up(languages=DEFAULT_LANGUAGES) -> None:
    """Load the language (for the shop's ``languages``) and sentiment detectors now: loading them
    lazily inside the first message's transaction took seconds (up to SQLite's lock timeout on a
    busy machine), during which every other writer waited."""
    _load(normalize_languages(languages))
    _analyser()
