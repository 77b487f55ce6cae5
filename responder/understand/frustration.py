"""Frustration: how upset the customer sounds, as a 0..1 score with plain-words reasons.

Runs in the pipeline after parsing and before retrieval, called by ``responder.understand.signals``; the
score and reasons are stored with the draft so the owner reads *why* ("angry words: ridiculous",
"a burst of ?!"). Pure: the only state is the VADER analyser (~4 MB, ~30 ms to load), loaded
once on first use under a lock and read-only afterwards.

The score is the sum of the cue weights below, capped at 1. ``FRUSTRATION_THRESHOLD`` (0.5)
makes a customer frustrated: any one strong cue (a threat, two angry words, the same question
asked again) or two weaker ones ("RIDICULOUS ... ???", ALL CAPS plus a burst of ?!). A polite
question scores 0.
"""
from __future__ import annotations

import logging
import re
import threading

from rapidfuzz import fuzz

log = logging.getLogger("deskhand.frustration")

FRUSTRATION_THRESHOLD = 0.5
W_THREAT = 0.5             # chargeback, lawyer, "report you", bad-review threats
W_REPEAT = 0.5             # the new message repeats an earlier one in the thread
REPEAT_REASON = "asked the same question again"
W_ANGER = 0.35             # one angry word; two or more: W_ANGER_MANY
W_ANGER_MANY = 0.5
W_CAPS = 0.4               # the whole message shouted; W_CAPS_PART: a shouted run of 3+ words
W_CAPS_PART = 0.25
W_WAITING = 0.25           # "I asked yesterday", "still waiting", "no one replied"
W_BURST = 0.2              # "???", "!!!", "?!"; two or more bursts: W_BURST_MANY
W_BURST_MANY = 0.3
W_VERY_NEGATIVE = 0.3      # VADER compound <= VERY_NEGATIVE
W_NEGATIVE = 0.15          # VADER compound <= NEGATIVE
VERY_NEGATIVE, NEGATIVE = -0.7, -0.4
REPEAT_SIMILARITY = 85     # rapidfuzz token_set_ratio over content words
MAX_CHARS = 20_000         # cues read this much; VADER reads VADER_CHARS in VADER_CHUNK pieces
VADER_CHARS, VADER_CHUNK = 3_000, 300

ANGER_WORDS = re.compile(r"""\b(?:ridiculous|unacceptable|outrageous|disgusting|disgraceful|pathetic
  |useless|incompetent|absurd|scam(?:med|mers?)?|fraud(?:ulent)?|rip-?off|ripped\ off|furious|livid
  |fed\ up|sick\ (?:and\ tired|of\ (?:this|waiting))|(?:is|what)\ a\ joke|shameful|appalling|terrible\ service
  |worst\ (?:service|company|shop|experience)|wtf|what\ the\ (?:hell|heck|fuck)|bullshit|fuck\w*|shit\w*
  |crap|damn|lächerlich|unverschämt|inakzeptabel|frechheit|betrug|abzocke|inacceptable|scandaleux
  |arnaque|honteux|inaceptable|vergüenza|estafa|ridicolo|vergogna|truffa|inaccettabile)\b""",
                         re.I | re.X)
THREATS = re.compile(r"""\b(?:charge\s?backs?|dispute\ (?:the|this|my)\ (?:charge|payment|transaction)
  |(?:open|file|raise)\w*\ an?\ (?:dispute|(?:paypal|bank)\ (?:claim|case))|(?:paypal|bank|card)\ (?:dispute|claim)
  |(?:my|a|see\ you\ in)\ (?:lawyer|attorney|solicitor)|legal\ action|lawsuit|small\ claims
  |report\ (?:you|your\ (?:shop|store|company|business))|better\ business\ bureau|bbb
  |trading\ standards|consumer\ (?:protection|rights)|ftc
  |(?:bad|negative|terrible|(?:1|one)[-\ ]star)\ reviews?|(?:post|tell)\w*\ (?:about\ (?:this|you)\ )?on\ (?:social\ media
  |facebook|instagram|tiktok|twitter|reddit)|never\ (?:order|buy|shop)\w*\ (?:from\ you\ )?again)\b""",
                     re.I | re.X)
WAITING = re.compile(r"""\b(?:(?:i(?:'ve)?|we(?:'ve)?)\ (?:already\ )?(?:asked|wrote|emailed|messaged|contacted)
  \b[^.?!\n]{0,40}\b(?:before|already|yesterday|last\ week|days?\ ago|weeks?\ ago|again|twice|times)
  |(?:still|been)\ waiting|(?:no\ one|nobody)\ (?:has\ )?(?:replied|answered|responded|got\ back)
  |still\ no\ (?:reply|answer|response|update|news)|(?:haven't|have\ not|never)\ (?:had|got(?:ten)?
  |received|heard)\ (?:a\ |any\ )?(?:reply|answer|response|back)|asking\ again|for\ the\ last\ time
  |(?:second|third|fourth|fifth|\d+(?:st|nd|rd|th))\ (?:email|message)|(?:for|asking)\ the\ (?:second
  |third|fourth|fifth|\d+(?:st|nd|rd|th))\ time|(?:ich|wir)\ (?:habe|haben)\ (?:schon|bereits)\ (?:gefragt|geschrieben|nachgefragt)
  |immer\ noch\ (?:keine?|nicht)|toujours\ pas|déjà\ demandé|todavía\ no|ya\ (?:pregunté|escribí))""", re.I | re.X)
BURST = re.compile(r"[?!？！]{3,}|[?？][!！]|[!！][?？]")
CAPS_WORD = re.compile(r"\b[A-ZÀ-ÖØ-Þ]{2,}\b")
ACRONYMS = {"OK", "US", "USA", "UK", "EU", "ID", "TV", "PS", "PPS", "FAQ", "ASAP", "FYI", "BTW", "DHL",
            "UPS", "USPS", "FEDEX", "GDPR", "VAT", "SKU", "PDF", "URL", "CEO", "AM", "PM", "EST", "PST",
            "GMT", "UTC", "CET", "LED", "DIY", "RSVP", "SMS", "IMO", "TBH", "LOL", "OMG", "NYC", "LA",
            "XL", "XXL", "XS", "SM", "UV", "II", "III", "IV", "MR", "MRS", "MS", "DR", "ST", "RE", "FW",
            "FWD", "AW", "WG", "TR", "RV", "PO", "COD", "ETA", "API", "CBD", "NFT", "IT", "HR", "PR"}
_STOP = set("""a an the is are was were be been am i me my we our you your it its this that to of in on
at for and or but so do does did can could would will please pls hi hello hey thanks thank just
there here have has had with from as about any some""".split())
_TOKEN = re.compile(r"[^\W_]+")
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF]")
_EMOJI_RUN = re.compile("(?:[\U0001F000-\U0001FAFF\u2600-\u27BF][\uFE0F\u200D]*\\s*){4,}")

_lock = threading.Lock()
_vader = None
_vader_failed = False


def _analyser():
    global _vader, _vader_failed
    if _vader is not None or _vader_failed:
        return _vader
    with _lock:
        if _vader is None and not _vader_failed:
            try:
                # start-up: VADER reads its lexicon on first use, in the warm-up
                from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
                _vader = SentimentIntensityAnalyzer()
            except Exception:  # pragma: no cover - a broken install must not stop the pipeline
                _vader_failed = True
                log.exception("VADER unavailable; sentiment is left out of frustration")
    return _vader


def _quote(matches, limit: int = 4) -> str:
    seen = list(dict.fromkeys(re.sub(r"\s+", " ", m).strip().lower() for m in matches))
    return ", ".join(seen[:limit])


def _content(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()[:MAX_CHARS]) if t not in _STOP]


def repeats_earlier(text: str, earlier) -> bool:
    """The new text asks again what an earlier customer message asked (>= 2 content words)."""
    new = _content(text)
    if len(new) < 2:
        return False
    for old in list(earlier)[-20:]:
        old_words = _content(str(old or "")[:4_000])
        if len(old_words) >= 2 and fuzz.token_set_ratio(" ".join(new), " ".join(old_words)) >= REPEAT_SIMILARITY:
            return True
    return False


def caps_cue(text: str) -> tuple[float, str | None]:
    """ALL CAPS counted in letters, ignoring acronyms, SKUs and one or two emphasised words."""
    letters = sum(ch.isalpha() for ch in text)
    shouted = [m for m in CAPS_WORD.finditer(text) if m.group() not in ACRONYMS]
    if len(shouted) < 3 or not letters:
        return 0.0, None
    if sum(len(m.group()) for m in shouted) / letters >= 0.6:
        return W_CAPS, "ALL CAPS"
    run, best = [shouted[0]], []
    for prev, cur in zip(shouted, shouted[1:]):
        if re.fullmatch(r"[\s,.'’-]*(?:[A-Z]\s+)?", text[prev.end():cur.start()]):
            run.append(cur)
        else:
            run = [cur]
        best = max(best, run, key=len)
    if len(best) >= 3:
        return W_CAPS_PART, f"ALL CAPS in part: '{text[best[0].start():best[-1].end()][:60]}'"
    return 0.0, None


def sentiment(text: str) -> float | None:
    """VADER compound (-1..1); long text is scored in ~300-character chunks and averaged.

    VADER's cost grows with the square of the words in one call and every emoji becomes words, so
    emoji runs are cut to three and each call is bounded.
    """
    analyser = _analyser()
    text = _EMOJI_RUN.sub(lambda m: "".join(_EMOJI.findall(m.group())[:3]), text[:VADER_CHARS])
    if analyser is None or not text.strip():
        return None
    chunks, current = [], ""
    for sentence in re.split(r"(?<=[.!?\n])\s+", text):
        if current and len(current) + len(sentence) > VADER_CHUNK:
            chunks.append(current)
            current = ""
        current = f"{current} {sentence}"[:VADER_CHUNK]
    chunks.append(current)
    scores = [analyser.polarity_scores(chunk)["compound"] for chunk in chunks if chunk.strip()]
    return round(sum(scores) / len(scores), 4) if scores else None


def score_frustration(text: str, subject: str = "", earlier=()) -> tuple[float, list[str]]:
    """(score 0..1, reasons) for the new customer text; subject words count, repeats don't."""
    body = text[:MAX_CHARS]
    words = f"{subject}\n{body}" if subject else body
    score, reasons = 0.0, []

    def add(weight: float, reason: str) -> None:
        nonlocal score
        score += weight
        reasons.append(reason)

    if threats := THREATS.findall(words):
        add(W_THREAT, f"threatens: {_quote(threats)}")
    if anger := ANGER_WORDS.findall(words):
        add(W_ANGER_MANY if len({a.lower() for a in anger}) > 1 else W_ANGER, f"angry words: {_quote(anger)}")
    if repeats_earlier(body, earlier):
        add(W_REPEAT, REPEAT_REASON)
    if waiting := WAITING.findall(words):
        add(W_WAITING, f"says they are still waiting or asked before: {_quote(waiting, 2)}")
    weight, why = caps_cue(body or subject)
    if why:
        add(weight, why)
    if (bursts := len(BURST.findall(words))) > 0:
        add(W_BURST_MANY if bursts > 1 else W_BURST, "a burst of ?!" if bursts == 1 else f"{bursts} bursts of ?!")
    compound = sentiment(words)
    if compound is not None:
        if compound <= VERY_NEGATIVE:
            add(W_VERY_NEGATIVE, f"very negative sentiment (VADER {compound:.2f})")
        elif compound <= NEGATIVE:
            add(W_NEGATIVE, f"negative sentiment (VADER {compound:.2f})")
    return round(min(score, 1.0), 3), reasons
