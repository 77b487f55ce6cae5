"""Language signals: which language a customer wrote in, and whether it is language at all.

Runs in the pipeline after parsing and before retrieval, called by ``responder.understand.signals``. Pure
functions over text; the only state is the py3langid model, loaded once (~0.5 s, at start-up by
``signals.warm_up``) under a lock and shared read-only by every thread afterwards. It keeps only
the columns of the languages it chooses among (``DETECT_LANGUAGES`` and the shop's): 51 MB
against 73 MB for all 140, the same answers, since the others are dropped from every ranking.

Why py3langid and not lingua-language-detector: lingua's high-accuracy models take ~225 MB for
8 languages and ~600 MB for 24 (the whole daemon targets <= 600 MB); its low-accuracy mode is
small but misreads short messages. py3langid (naive Bayes over byte n-grams, model in the
wheel, nothing downloaded) was as accurate on our short customer texts at ~0.02 ms per text.

Short texts are not a language: fewer than ``MIN_WORDS`` words ("ok thanks", "Hi", emoji) give
``"und"``, which callers treat as supported, so a two-word reply is never routed as foreign.
"""
from __future__ import annotations

import logging
import re
import threading
import unicodedata

log = logging.getLogger("deskhand.language")

UNDETERMINED = "und"
# Languages the detector chooses among (ISO 639-1): common shop-customer languages. Limiting the
# choice stops short English from being read as Serbian or Luxembourgish. Shop languages are added.
DETECT_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "sv", "da", "no", "fi", "pl", "cs",
                    "ro", "hu", "el", "tr", "ru", "uk", "ar", "he", "hi", "ja", "zh", "ko", "vi",
                    "id", "th")
MIN_WORDS = 3            # fewer words (space-separated scripts) -> "und"
MIN_CJK_CHARS = 4        # scripts without spaces (Chinese, Japanese, Thai) count characters
MIN_CONFIDENCE = 0.5     # probability among DETECT_LANGUAGES below which we say "und"
MAX_CHARS = 2_000        # the opening is enough to tell a language

_lock = threading.Lock()
_identifier = None       # py3langid's LanguageIdentifier over _languages' columns only
_languages: frozenset[str] = frozenset()
_known: frozenset[str] = frozenset()  # every language the model has
_load_failed = False

_WORD = re.compile(r"[^\W\d_]{1,}", re.UNICODE)
_URLISH = re.compile(r"\S+@\S+|https?://\S+|www\.\S+", re.I)


def _load(shop_languages=("en",)):
    """The shared identifier, covering DETECT_LANGUAGES and ``shop_languages``; None when it
    can't be loaded (logged once). A shop language it doesn't cover yet loads it again with that
    column added (the settings changed: rare)."""
    global _identifier, _languages, _known, _load_failed
    wanted = frozenset((*DETECT_LANGUAGES, *shop_languages))
    if _load_failed or (_identifier is not None and (wanted & _known) <= _languages):
        return _identifier
    with _lock:
        if not _load_failed and (_identifier is None or not (wanted & _known) <= _languages):
            try:
                _identifier, _languages, _known = _identifier_for(wanted | _languages)
            except Exception:  # pragma: no cover - a broken install must not stop the pipeline
                _load_failed = True
                log.exception("language detection unavailable; every message counts as 'und'")
    return _identifier


def _identifier_for(wanted: frozenset[str]):
    """py3langid's identifier built from its model file with only ``wanted``'s columns of the
    per-language n-gram table (its ``set_languages`` would keep the whole table beside them)."""
    # start-up: py3langid's model loads on first use, in the warm-up
    import numpy as np
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier
    from py3langid.modelio import load_model

    ptc, pc, classes, nextmove, row, output = load_model(MODEL_DIR / MODEL_FILE)
    known = frozenset(str(c) for c in classes)
    columns = [i for i, c in enumerate(classes) if c in wanted]
    identifier = LanguageIdentifier(np.ascontiguousarray(np.asarray(ptc)[:, columns]), np.asarray(pc)[columns],
                                    [str(classes[i]) for i in columns], nextmove, output, norm_probs=True,
                                    tk_row=row)
    return identifier, wanted & known, known


def _no_space_script(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "THAI", "HANGUL"))


def detect_language(text: str, shop_languages=("en",)) -> tuple[str, float]:
    """(ISO 639-1 code or "und", confidence 0..1) for ``text``; never raises."""
    try:
        sample = _URLISH.sub(" ", text[:MAX_CHARS])
        words = _WORD.findall(sample)
        cjk = sum(_no_space_script(ch) for w in words for ch in w[:50])
        if len(words) < MIN_WORDS and cjk < MIN_CJK_CHARS:
            return UNDETERMINED, 0.0
        identifier = _load(shop_languages)
        if identifier is None:
            return UNDETERMINED, 0.0
        wanted = {*DETECT_LANGUAGES, *shop_languages}
        ranked = [(lang, p) for lang, p in identifier.rank(sample) if lang in wanted]
        total = sum(p for _, p in ranked)
        if not ranked or total <= 0:
            return UNDETERMINED, 0.0
        lang, p = ranked[0]
        confidence = p / total
        if confidence < MIN_CONFIDENCE:
            return UNDETERMINED, round(confidence, 3)
        return lang, round(confidence, 3)
    except Exception:  # pragma: no cover - defensive: a signal must never break the pipeline
        log.exception("language detection failed")
        return UNDETERMINED, 0.0


def normalize_languages(languages) -> tuple[str, ...]:
    """Shop languages as ISO 639-1 codes: "en-US" -> "en", "DE" -> "de"; default ("en",)."""
    if isinstance(languages, str):
        languages = [languages]
    codes = []
    for item in languages or ():
        code = re.split(r"[-_]", str(item).strip().lower(), maxsplit=1)[0]
        if code and code not in codes:
            codes.append(code)
    return tuple(codes) or ("en",)


# --- gibberish ------------------------------------------------------------------------------
# Heuristic, Latin script only. A word (3+ letters) is implausible when it mostly walks along a
# keyboard row ("asdf", "qwer"), is mostly one letter ("aaaaa"), or >= 40 % of its letter pairs
# are consonant pairs that words in European languages hardly use ("jk", "fj", "dk", "qz").
# The text is gibberish when implausible words hold >= 60 % of its letters and it has none of
# the common words below. Non-Latin text is never gibberish; accented letters count as vowels.
_VOWELS = set("aeiouy")
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "azertyuiop", "qsdfghjklm", "wxcvbn", "qwertzuiop",
         "yxcvbnm")
_ROW_BIGRAMS = {r[i:i + 2] for r in _ROWS for i in range(len(r) - 1)}
_ROW_BIGRAMS |= {b[::-1] for b in _ROW_BIGRAMS}
# Consonant pairs common somewhere in en/de/fr/es/it/pt/nl/pl/cs words.
_COMMON_PAIRS = set("""bb bl br bs bt by cc ch ck cl cr ct cz dd dg dl dm dn dr ds dt dw dz ff fl fn fr
fs ft gg gh gl gm gn gr gs gt hl hm hn hr hs ht hw kk kl km kn kr ks kt kw lb lc ld lf lg lh lk ll lm
ln lp lr ls lt lv lz mb mm mn mp ms mt nc nd nf ng nh nj nk nl nm nn nr ns nt nv nw nz pf ph pl pn pp
pr ps pt rb rc rd rf rg rh rk rl rm rn rp rr rs rt rv rw rz sb sc sd sf sg sh sk sl sm sn sp sq ss st
sw sz tc th tl tm tn tr ts tt tw tz vl vr wl wn wr ws xt zn zw zz""".split())
_COMMON = set("""a i an the is are was be to of in on at it my me we you your and or but not no yes
ok okay hi hey hello dear thanks thank thx ty pls plz please cheers lol omg btw asap wtf idk fyi
tbh imo nvm brb xmas hm ah oh ugh grr brr pf pfft psst sh mm zz ich du und der die das ist nicht ja
nein mit ein eine bitte danke hallo le la les un une et est je tu vous pas oui non merci bonjour el
los las y es yo que por gracias hola si de da il che per sono ciao grazie o um uma com obrigado olá
en het een ik niet nee dank na je to w z nie tak""".split())


def _implausible(word: str) -> bool:
    if len(word) < 3:
        return False
    pairs = [word[i:i + 2] for i in range(len(word) - 1)]
    if len(word) >= 4 and sum(p in _ROW_BIGRAMS for p in pairs) / len(pairs) >= 0.75:
        return True
    if len(word) >= 4 and max(word.count(ch) for ch in set(word)) / len(word) >= 0.7:
        return True
    rare = sum(p.isascii() and not (set(p) & _VOWELS) and p not in _COMMON_PAIRS for p in pairs)
    return rare / len(pairs) >= 0.4


def _common(word: str) -> bool:
    """A common word, also when stretched ("hmmm", "sooo", "brrr"), but "aaaa" is not "a"."""
    once = re.sub(r"(.)\1+", r"\1", word)
    return word in _COMMON or re.sub(r"(.)\1\1+", r"\1\1", word) in _COMMON or (
        len(once) >= 2 and once in _COMMON)


def _latin(ch: str) -> bool:
    return ch.isascii() or "LATIN" in unicodedata.name(ch, "")


def is_gibberish(text: str) -> bool:
    """Keyboard mash or random letters ("asdfgh jkl", "xkqzvbt"); never for non-Latin script."""
    try:
        sample = _URLISH.sub(" ", text[:MAX_CHARS]).lower()
        words = _WORD.findall(sample)
        letters = sum(len(w) for w in words)
        if letters < 4 or any(_common(w) for w in words):
            return False
        if sum(_latin(ch) for w in words for ch in w) < 0.8 * letters:
            return False
        bad = sum(len(w) for w in words if _implausible(w))
        return bad >= 0.6 * letters
    except Exception:  # pragma: no cover
        log.exception("gibberish check failed")
        return False


# --- emoji and acknowledgements -------------------------------------------------------------
ACK_EMOJI = set("👍🙏😊🙂☺❤♥💕💖💗💛💙💚💜🧡🤍😀😃😄😁😆🥰😍😘🤗👌✅✔💯🎉👏🙌⭐🌟✨💐🌸🌷🌹🕯😉🤩")
# A question or a request anywhere means it is not a bare "thanks".
ASKING = re.compile(r"""\b(?:but|however|although|can|could|would|will\ you|when|where|what|which|how
  |why|who|is\ there|are\ there|do\ you|does|did|please\ (?!find\b)\w+|pls\ \w+|need|want|still|not
  |\w+n't|\w+n’t|no\ longer|wrong|missing|broken|problem|issue|kann|können|wann|wo|warum|wie|quand|où
  |pourquoi|comment|est-ce|cuándo|dónde|por\ qué|cómo|puede)\b|[¿]""", re.I | re.X)
ACK = re.compile(r"""\b(?:thanks?(?:\ ?you|\ u)?|thx|tnx|ty|tysm|cheers|ta|many\ thanks|(?:much\ )?appreciated
  |appreciate\ (?:it|that|you)|ok(?:ay|ey)?|k+|great|perfect|awesome|brilliant|lovely|wonderful|excellent
  |fantastic|amazing|cool|nice|super|sweet|fab|grand|got\ (?:it|that)|noted|understood|will\ do
  |sounds\ (?:good|great|perfect)|all\ (?:good|set|sorted)|no\ (?:worries|problem)|received|that\ helps
  |(?:very\ )?helpful|have\ a\ (?:nice|good|great|lovely)\ (?:day|weekend|evening)|you\ too
  |you(?:'re|\ are)\ (?:the\ best|a\ star|amazing)|merci(?:\ beaucoup)?|danke(?:\ schön|\ sehr)?
  |vielen\ dank|gracias|muchas\ gracias|grazie(?:\ mille)?|obrigad[oa]|dank\ je(?:wel)?|bedankt|tack
  |takk|parfait|génial|genial|perfecto|perfekt|d'accord|vale|alles\ klar|prima|top)\b""",
                 re.I | re.X)
FILLER = set("""so much very a lot million again for the your all that this it is that's thats it's
was really help reply replies answer response info information update quick fast kind of and oh ah
guys team mate everyone everybody x xx xxx xo xoxo lol haha hehe best regards kind warm wishes many
again once sir madam dear you just""".split())
REQUEST_WORDS = {"refund", "cancel", "return", "order", "help", "question", "shipping", "exchange", "invoice"}


def _is_emoji(ch: str) -> bool:
    """A pictograph; skin tones, joiners and variation selectors only modify one."""
    cp = ord(ch)
    if 0x1F3FB <= cp <= 0x1F3FF:
        return False
    return unicodedata.category(ch) == "So" or 0x1F000 <= cp <= 0x1FAFF or 0x2600 <= cp <= 0x27BF


def emoji_only(text: str) -> bool:
    """Emoji (with joiners, skin tones, punctuation) and nothing that reads as words or numbers."""
    return any(_is_emoji(ch) for ch in text) and not any(unicodedata.category(ch)[0] in "LN" for ch in text)


def is_acknowledgement(text: str) -> bool:
    """Thanks/ok with nothing asked: "thanks!", "ok great", "👍", "got it, cheers", "thanks, Anna"."""
    try:
        if not text.strip() or len(text) > 200 or "?" in text or ASKING.search(text):
            return False
        if emoji_only(text):
            return all(ch in ACK_EMOJI or not _is_emoji(ch) for ch in text)
        if any(_is_emoji(ch) and ch not in ACK_EMOJI for ch in text):
            return False
        rest = ACK.sub(" ", text.lower())
        if rest == text.lower():
            return False            # no thanks/ok in it at all
        left = [w for w in _WORD.findall(rest) if w not in FILLER]
        if not left:
            return True
        # "Thanks, Anna": one capitalised word at the end is a name, not a request.
        last = _WORD.findall(text)[-1:]
        return (len(left) == 1 and bool(last) and last[0].lower() == left[0] and last[0][:1].isupper()
                and left[0] not in REQUEST_WORDS)
    except Exception:  # pragma: no cover
        log.exception("acknowledgement check failed")
        return False
