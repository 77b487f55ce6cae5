"""Tone: the owner's house style as data (``TONE_DEFAULTS``), enforced in code for every backend.

Runs after drafting, before the claim guard and routing: ``apply_tone`` takes the drafted body
(greeting and signature are the channel's job) and fixes what is safe to fix — a banned opener
dropped, "we will" contracted, markdown flattened for SMS and WhatsApp, curly quotes made GSM-7,
whitespace collapsed, an ISO date written in words ("2026-12-05" → "December 5"), an apology put first for a frustrated customer. What it can't fix without
changing the meaning comes back as plain-words violations ("4 sentences; the limit is 3") for
routing to hold the reply for the owner. The offline drafter and the LLM drafter get the same rules.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import date

from responder.core.clock import utcnow
from responder.core.settings import BANNED_OPENERS
from responder.core.text import (
    GSM_LOOKALIKES,
    human_date,
    sms_segments,
    split_sentences,
)


@dataclass(frozen=True)
class ToneRules:
    banned_openers: tuple[str, ...]
    contractions: dict[str, str]
    acknowledgements: tuple[str, ...]        # a first sentence with one of these acknowledges
    acknowledgement: str = "I'm sorry about the trouble."
    max_sentences: int = 3
    max_sentences_detail: int = 4             # when the answer needs detail
    hard_max_sentences: int = 4               # the eval scorer's ceiling, counted its plain way
    plain_channels: tuple[str, ...] = ("sms", "whatsapp", "chat")  # no markdown (the chat shows text as text)
    sms_channels: tuple[str, ...] = ("sms",)
    sms_max_segments: int = 2                 # 306 GSM-7 characters or 134 UCS-2
    auxiliary_only: tuple[str, ...] = ("we have", "I have", "you have", "they have")


TONE_DEFAULTS = ToneRules(
    banned_openers=BANNED_OPENERS,
    contractions={"will not": "won't", "can not": "can't", "cannot": "can't", "do not": "don't",
                  "does not": "doesn't", "did not": "didn't", "is not": "isn't", "are not": "aren't",
                  "was not": "wasn't", "were not": "weren't", "have not": "haven't", "has not": "hasn't",
                  "could not": "couldn't", "would not": "wouldn't", "should not": "shouldn't",
                  "we will": "we'll", "I will": "I'll", "you will": "you'll", "it will": "it'll",
                  "they will": "they'll", "we are": "we're", "you are": "you're", "they are": "they're",
                  "I am": "I'm", "it is": "it's", "that is": "that's", "there is": "there's",
                  "we would": "we'd", "I would": "I'd", "we have": "we've", "I have": "I've",
                  "you have": "you've", "they have": "they've"},
    acknowledgements=("sorry", "apolog", "I understand", "understandable", "frustrat", "I hear you",
                      "that's not ok", "not good enough", "annoying", "I can imagine", "my apologies"),
)


def rules_for(tone) -> ToneRules:
    """The house style with the owner's ``[tone]`` settings applied."""
    return dataclasses.replace(TONE_DEFAULTS, banned_openers=tuple(tone.banned_openers),
                               max_sentences=tone.max_sentences,
                               max_sentences_detail=max(tone.max_sentences + 1, 4),
                               acknowledgement=tone.acknowledgement, sms_max_segments=tone.sms_max_segments)

# What the eval scorer counts as uncontracted or a banned start; left over after fixing = violation.
UNCONTRACTED = re.compile(r"\b(we will|we are|cannot|do not|does not|you will|is not|are not|we would|i am"
                          r"|it is not|we have not|did not|will not|can not)\b", re.I)
BANNED_START = re.compile(r"^\s*(certainly|of course|absolutely|great question|sure thing|i hope (this|you)"
                          r"|thank you for (reaching|contacting)|dear )", re.I)
PARTICIPLE = re.compile(r"\s+(?:(?:already|just|also|now|never|recently|since)\s+)?(?:\w{3,}ed|been|got|gotten|sent|"
                        r"made|had|done|seen|found|heard|put|set|taken|given|written|kept|left|lost|paid|sold|"
                        r"told|brought|bought|built|chosen|known|shown|begun|run|spent|not)\b", re.I)
GREETING = re.compile(r"^\s*(?:hi|hello|hey|dear)\b(?:[ \t]+[^\s,.!?]+){0,3}[ \t]*(?:[,!][ \t]*\n*|\n+)", re.I)
SIGN_OFF = re.compile(r"\n\s*\n((?:[ \t]*(?:--|—|–)?[ \t]*[^\n.?]{0,30}\n?){1,3})\s*$")


@dataclass
class ToneResult:
    text: str
    fixes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def plain_sentence_count(text: str) -> int:
    """Sentences of the first paragraph counted the eval scorer's plain way (splits on "Mr. Lee" too)."""
    first = re.split(r"\n\s*(?:--|—|–)?\s*\n", text or "")[0]
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", first.strip())
    return len([p for p in parts if re.search(r"[A-Za-z]", p)])


def _cased(original: str, replacement: str) -> str:
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    return replacement[0].upper() + replacement[1:] if original[:1].isupper() else replacement


def _contract(text: str, rules: ToneRules, fixes: list[str]) -> str:
    aux = {a.lower() for a in rules.auxiliary_only}
    # "it is not" -> "it's not" and "we will not" -> "we won't": be-forms first, then longest first
    for phrase in sorted(rules.contractions, key=lambda p: (p.split()[-1].lower() not in ("am", "is", "are"), -len(p))):
        words = phrase.split()
        pattern = r"\b" + r"\s+".join(re.escape(w) for w in words) + r"\b"
        if phrase.lower() == "can not":
            pattern += r"(?!\s+only)"
        elif words[-1].lower() in ("am", "is", "are", "will", "have", "would"):
            pattern += r"(?=\s+[^\s.,!?;:)])"  # "that's who we are." stays; "we are shipping" contracts

        def swap(m: re.Match, phrase=phrase) -> str:
            if phrase.lower() in aux and not PARTICIPLE.match(m.string, m.end()):
                return m.group(0)
            return _cased(m.group(0), rules.contractions[phrase])
        new = re.sub(pattern, swap, text, flags=re.I)
        if new != text:
            fixes.append(f"contracted '{phrase}' to '{rules.contractions[phrase]}'")
            text = new
    return text


def _strip_markdown(text: str) -> str:
    text = re.sub(r"\[([^\]\n]+)\]\((\S+?)\)", lambda m: m.group(2) if m.group(1) == m.group(2)
                  else f"{m.group(1)} ({m.group(2)})", text)
    lines = []
    for line in text.split("\n"):
        if re.fullmatch(r"\s*(?:`{3,}.*|~{3,}.*|[-*_]{3,})\s*", line):
            continue
        line = re.sub(r"^\s*>\s?", "", line)
        item = re.match(r"^\s{0,3}(?:#{1,6}|[-*+•]|\d{1,2}[.)])\s+(.*?)\s*#*\s*$", line)
        if item and item.group(1):
            line = item.group(1)
            line = line[0].upper() + line[1:]
            line += "" if re.search(r"[.!?:;]$", line) else "."
        lines.append(line)
    text = "\n".join(lines)
    text = re.sub(r"\*\*(.+?)\*\*|__(.+?)__", lambda m: m.group(1) or m.group(2), text)
    text = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", r"\1", text)
    text = re.sub(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])", r"\1", text)
    return re.sub(r"`([^`\n]+)`", r"\1", text)


def _drop_openers(text: str, rules: ToneRules, fixes: list[str]) -> str:
    greeting = GREETING.match(text)
    head, body = (text[:greeting.end()], text[greeting.end():]) if greeting else ("", text)
    alternatives = "|".join(re.escape(o).replace(r"\ ", r"\s+").replace("'", "['’]") for o in
                            sorted(rules.banned_openers, key=len, reverse=True))
    opener = re.compile(rf"^\s*(?:{alternatives})\b(?![\s,]*(?:not|no)\b)"  # "Absolutely not" carries the answer
                        r"(?:\s+(?:to us|to me|today|again|about [^.!?\n,]{0,60}))?"
                        r"[\s!.,;:—–-]*(?:and\s+)?", re.I)
    while (m := opener.match(body)) and body[m.end():].strip():
        fixes.append(f"dropped the opener '{m.group(0).strip()}'")
        body = body[m.end():]
        body = body[:1].upper() + body[1:]
    if re.match(r"\s*dear\b", head, re.I):
        head = re.sub(r"(?i)^(\s*)dear\b", r"\1Hi", head)
        fixes.append("changed 'Dear' to 'Hi'")
    return head + body


# A date as a database writes it, not inside a longer code ("WW-2026-12-05", "2026-12-05T10:00").
ISO_DATE = re.compile(r"(?<![\w-])\d{4}-\d{2}-\d{2}(?![\w-]|:\d|T\d)")


def _dates_in_words(text: str, today: date, fixes: list[str]) -> str:
    """Customers read "December 5", not "2026-12-05", whoever drafted the reply."""
    def words(m: re.Match) -> str:
        said = human_date(m.group(0), today)
        if said:
            fixes.append(f"wrote the date {m.group(0)} as '{said}'")
        return said or m.group(0)
    return ISO_DATE.sub(words, text)


def _collapse(text: str, plain_sms: bool) -> str:
    if plain_sms:
        return re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def body_of(text: str) -> str:
    """The text without a greeting line or a short sign-off paragraph ("Thanks,\\nMaya")."""
    text = GREETING.sub("", text, count=1)
    return SIGN_OFF.sub("", text).strip()


def apply_tone(reply: str, *, channel: str, frustrated: bool, needs_detail: bool = False,
               rules: ToneRules = TONE_DEFAULTS, today: date | None = None) -> ToneResult:
    """Fix what is safe to fix in ``reply`` and list what isn't; never raises on text.
    ``today``: the shop's date, which decides whether a date needs its year."""
    text = str(reply or "").replace("\r\n", "\n").replace("\r", "\n")
    fixes: list[str] = []
    channel = (channel or "email").lower()
    plain, sms = channel in rules.plain_channels, channel in rules.sms_channels
    if plain:
        flat = _strip_markdown(text)
        if flat != text:
            fixes.append(f"removed markdown for {channel}")
            text = flat
    text = _drop_openers(text, rules, fixes)
    text = _contract(text, rules, fixes)
    text = _dates_in_words(text, today or utcnow().date(), fixes)
    if sms and any(c in GSM_LOOKALIKES for c in text):
        text = "".join(GSM_LOOKALIKES.get(c, c) for c in text)
        fixes.append("replaced curly quotes and dashes so the SMS stays GSM-7")
    collapsed = _collapse(text, sms)
    if re.sub(r"\s+", " ", collapsed).strip() != re.sub(r"\s+", " ", text).strip():
        fixes.append("collapsed whitespace")
    text = collapsed
    violations: list[str] = []
    acknowledged = False
    if frustrated:
        first = split_sentences(body_of(text))[:1]
        acknowledged = bool(first) and any(a.lower() in first[0].lower() for a in rules.acknowledgements)
        if not acknowledged:
            greeting = GREETING.match(text)
            cut = greeting.end() if greeting else 0
            rest = text[cut:]
            candidate = f"{text[:cut]}{rules.acknowledgement} {rest[:1].upper()}{rest[1:]}".strip()
            if sms and sms_segments(candidate) > rules.sms_max_segments:
                violations.append("frustrated customer but the reply doesn't acknowledge it first")
            else:
                text, acknowledged = candidate, True
                fixes.append(f"added an acknowledgement: '{rules.acknowledgement}'")
    body = body_of(text)
    count = len(split_sentences(body))
    limit = rules.max_sentences_detail if needs_detail else rules.max_sentences
    if frustrated and acknowledged:
        limit = min(limit + 1, rules.hard_max_sentences)  # the apology is not part of the answer
    if count > limit:
        violations.append(f"{count} sentences; the limit is {limit}")
    elif plain_sentence_count(text) > rules.hard_max_sentences:
        violations.append(f"{plain_sentence_count(text)} sentences counted plainly (abbreviations split); "
                          f"the limit is {rules.hard_max_sentences}")
    if BANNED_START.search(text):
        violations.append(f"opens with '{BANNED_START.search(text).group(1).strip()}'")
    if (m := UNCONTRACTED.search(text)):
        violations.append(f"uncontracted '{m.group(0)}' left as written")
    if sms and (n := sms_segments(text)) > rules.sms_max_segments:
        over = n - rules.sms_max_segments
        violations.append(f"SMS reply is {over} segment{'s' if over > 1 else ''} over the limit "
                          f"({n} segments; the limit is {rules.sms_max_segments})")
    return ToneResult(text, fixes, violations)
