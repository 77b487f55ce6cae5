"""Plain-text helpers every stage shares: cleaning stored text, phone numbers, sentences, SMS segments.

Part of the core (no stage of its own): the channels, normalize, tone, the guard and the send
rules all read text the same way, so these live once, below all of them.
"""
from __future__ import annotations

import math
import re
from datetime import date

PHONE = re.compile(r"^\+?[1-9]\d{6,14}$")


GSM_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
                "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXTENDED = set("^{}\\[]~|€\f")  # sent as escape + char: two septets each
GSM_LOOKALIKES = {"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "–": "-", "—": "-",
                  "…": "...", "\u00a0": " ", "\u202f": " ", "\u2009": " ", "•": "-"}


ABBREVIATIONS = {"e.g", "i.e", "mr", "mrs", "ms", "dr", "st", "vs", "approx", "cf", "a.m", "p.m", "u.s", "jr", "sr"}
BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")

def clean(text: str | None, limit: int | None = None) -> str:
    """PostgreSQL text can't hold NUL, no database a lone surrogate; column limits are enforced there too."""
    text = (text or "").replace("\x00", "")
    if re.search("[\ud800-\udfff]", text):
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:limit] if limit else text


def normalize_phone(value: str) -> str:
    """``whatsapp:+1 (415) 555-0100`` and ``+14155550100`` are the same number (E.164)."""
    value = re.sub(r"^(?:whatsapp|sms|tel):", "", (value or "").strip(), flags=re.I)
    digits = re.sub(r"[^\d+]", "", value)
    return digits if PHONE.match(digits) else ""


def sms_segments(text: str) -> int:
    """SMS segments the text takes: GSM-7 (160, or 153 per part; ^{}[]~|€ count 2) unless any
    character is outside GSM-7, then UCS-2 (70, or 67 per part; emoji count 2). "" is 0."""
    text = text or ""
    if not text:
        return 0
    if all(c in GSM_BASIC or c in GSM_EXTENDED for c in text):
        units, single, part = sum(2 if c in GSM_EXTENDED else 1 for c in text), 160, 153
    else:
        units, single, part = len(text.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / part)


def split_sentences(text: str) -> list[str]:
    """Sentences, one per line at least; never splits "e.g. Cedar", "$4.50", "3.5 in", "Mr. Lee"
    or a URL (none of those has a full stop followed by a space and a capital that ends a sentence)."""
    out: list[str] = []
    for line in re.split(r"\n+", text or ""):
        start = 0
        for m in BOUNDARY.finditer(line):
            before = line[start:m.start()].split()
            word = before[-1].lower().rstrip(".") if before else ""
            word = word.lstrip("(\"'“‘")
            if word in ABBREVIATIONS or re.fullmatch(r"(?:[a-z]\.)+[a-z]?", word) \
                    or (word == "no" and line[m.end():m.end() + 1].isdigit()):
                continue
            out.append(line[start:m.end()].strip())
            start = m.end()
        out.append(line[start:].strip())
    return [s for s in out if re.search(r"[^\W\d_]", s)]


def human_date(iso: str, today: date) -> str:
    """"December 5" (this year) or "January 12, 2027", as a customer reads a date; "" for a value
    that isn't an ISO date (YYYY-MM-DD)."""
    try:
        day = date.fromisoformat(str(iso).strip()[:10])
    except ValueError:
        return ""
    text = f"{day:%B} {day.day}"
    return text if day.year == today.year else f"{text}, {day.year}"
