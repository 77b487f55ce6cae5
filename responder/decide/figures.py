"""Figures in text: prices, dates, percentages, quantities and durations, as comparable claims.

Part of the claim guard (``responder/decide/guard.py``): it extracts every figure from a draft and from
the knowledge it was drafted from, and ``covered`` says whether the knowledge states a figure,
or a range around it ("4 days" is covered by "3–5 days"). Pure and bounded; never raises on
ordinary text.
"""
from __future__ import annotations

import re
from collections import namedtuple
from decimal import Decimal

WORDS = dict(zip("one two three four five six seven eight nine ten twelve twenty thirty forty fifty sixty".split(),
                 "1 2 3 4 5 6 7 8 9 10 12 20 30 40 50 60".split()))
NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?|" + "|".join(WORDS) + ")"
RANGE = rf"(?P<lo>{NUM})(?:\s*(?:-|–|—|to|or)\s*(?P<hi>{NUM}))?"
UNITS = dict(u.split("=", 1) for u in (  # unit=how it is written; the six durations first
    r"hour=hours?|hrs? minute=minutes?|mins? day=(?:business\s|working\s|calendar\s)?days? week=(?:business\s)?weeks? "
    r"month=months? year=years? oz=(?:fl\.?\s?)?oz|ounces? lb=lbs?|pounds? kg=kgs?|kilos?|kilograms? g=g|grams? "
    r"ml=ml|millilit(?:er|re)s? l=lit(?:er|re)s? cm=cm mm=mm ft=ft|feet|foot "
    r"inch=inch(?:es)?|in(?=\s*(?:wide|tall|long|high|deep|across|x\b|×|[,;)]|\.(?!\w)|$))|\"|″ "
    r"count=pieces?|pcs|packs?|items?|units?|candles?|wicks?|tins?|jars?|mugs?|bowls?|plates?|cups?|sets?|pairs?"
    r"|boxes|bottles?|bars?|samples?|orders?|or\smore|or\sfewer|\+").split())
QUANTITY = re.compile(rf"(?<![\w.,/$€£]){RANGE}\s?(?:" + "|".join(f"(?P<u_{k}>{v})" for k, v in UNITS.items())
                      + r")(?!\w)", re.I)
AMOUNT = r"\d{1,3}(?:[,.]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
MONEY = re.compile(rf"[$€£]\s?(?P<a>{AMOUNT})(?:\s*(?:-|–|to)\s*[$€£]?\s?(?P<b>{AMOUNT}))?|\b(?:USD|EUR|GBP|CAD|AUD)"
                   rf"\s?(?P<c>{AMOUNT})|(?P<d>{AMOUNT})\s?(?:dollars|bucks|euros?|USD|EUR|GBP|CAD)\b", re.I)
PERCENT = re.compile(rf"(?<![\w.]){RANGE}\s?(?:%|percent\b|per cent\b)", re.I)
MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
MONTH = r"(?P<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(?:uary|ruary|ch|il|e|y|ust|t|tember|ober|ember)?"
DAY, YEAR = r"(?P<d>\d{1,2})(?:st|nd|rd|th)?\b", r"(?:,?\s+(?P<y>\d{4}))?"
DATES = [re.compile(p, re.I) for p in (rf"\b{MONTH}\.?\s+{DAY}{YEAR}", rf"\b{DAY}\s+(?:of\s+)?{MONTH}\b{YEAR}",
                                       r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b")]
Claim = namedtuple("Claim", "kind unit lo hi text start", defaults=("", 0))  # lo/hi: Decimal, or (y|None, m, d)


def decimal_of(raw) -> Decimal | None:
    raw = WORDS.get(str(raw or "").lower(), str(raw or ""))
    raw = raw.replace(".", "") if re.fullmatch(r"\d{1,3}(?:\.\d{3})+,\d{1,2}", raw) else raw  # 1.299,00
    raw = raw.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", raw) else raw.replace(",", ".")
    return Decimal(raw) if re.fullmatch(r"\d+(?:\.\d+)?", raw) else None


def overlaps(span: tuple[int, int], spans) -> bool:
    return any(a < span[1] and span[0] < b for a, b, *_ in spans)


def extract(text: str) -> list[Claim]:
    """Every figure in ``text`` (kind: price, date, percentage, quantity, duration), in order."""
    out: list[Claim] = []

    def add(m: re.Match, kind: str, unit: str, lo, hi=None) -> None:
        if lo is not None and not overlaps(m.span(), [(c.start, c.start + len(c.text)) for c in out]):
            out.append(Claim(kind, unit, lo, lo if hi is None else hi, m.group(0), m.start()))
    for m in MONEY.finditer(text):
        add(m, "price", "money", decimal_of(m.group("a") or m.group("c") or m.group("d")), decimal_of(m.group("b")))
    for m in (m for pattern in DATES for m in pattern.finditer(text)):
        g = m.groupdict()
        month = int(g["m"]) if g.get("m") else MONTHS.index(g["mon"].lower()) + 1
        if 1 <= month <= 12 and 1 <= int(g["d"]) <= 31 and g.get("mon") != "may":  # "you may 2…" is no date
            add(m, "date", "date", (int(g["y"]) if g.get("y") else None, month, int(g["d"])))
    for m in PERCENT.finditer(text):
        add(m, "percentage", "%", decimal_of(m.group("lo")), decimal_of(m.group("hi")))
    for m in QUANTITY.finditer(text):
        unit = m.lastgroup[2:]
        kind = "duration" if unit in list(UNITS)[:6] else "quantity"
        add(m, kind, unit, decimal_of(m.group("lo")), decimal_of(m.group("hi")))
    return sorted(out, key=lambda c: c.start)


def covered(claim: Claim, known: list[Claim]) -> bool:
    """The knowledge states the figure, or a range around it ("4 days" in "3–5 days")."""
    if claim.kind == "date":
        y, m, d = claim.lo
        return any(k.lo[1:] == (m, d) and (y is None or k.lo[0] in (None, y)) for k in known if k.kind == "date")
    units = {claim.unit, "bare"} if claim.unit == "count" else {claim.unit}
    return (claim.unit == "count" and claim.lo <= 1) or any(
        k.unit in units and k.lo <= claim.lo and claim.hi <= k.hi for k in known if k.kind != "date")
