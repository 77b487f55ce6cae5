"""Full text: how an entry's text and a customer's question become terms, and how BM25 weighs them.

Used by the knowledge index (``responder/knowledge/index.py``) on both sides: an entry's terms
are counted into the index file when it is added (``responder/knowledge/store.py``), and a
question's terms, weighted here, are looked up there. Pure: no database, no state.

The normalisation and the scoring are LanceDB's, whose full-text index this replaced (the
fusion constants in ``responder/knowledge/retrieve.py`` were measured on its ranking): accents
folded ("café" -> "cafe"), lowercased, split on anything but letters and digits, tokens over 40
characters dropped, each word's Snowball English (Porter 2) stem, then stems in NLTK's English
stop list dropped (the list is matched against stems, so "does" -> "doe" stays, as it did).
A question matches any entry sharing a term, scored with Okapi BM25 (k1 = 1.2, b = 0.75, IDF
ln(1 + (N - n + 0.5) / (n + 0.5)), a term repeated in the question counted again).

SQLite's FTS5 was tried first: its bm25() takes the IDF without the "1 +", so a word in more than
half the entries weighs nothing, and its order moved enough entries to cost the hearth store an
automatic answer (``run.py eval``). This scoring agrees with LanceDB's first hit on 99.7% of 309
questions (bench/questions.jsonl and the eval stores' cases), with its first five on 96.4%, and
bench/retrieval.py's recall is LanceDB's in every mode and store.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from functools import lru_cache

import snowballstemmer

MAX_TOKEN = 40            # longer "words" are hashes, URLs, base64: never what a customer types
MAX_QUERY_CHARS = 1000    # a pasted email is searched by its beginning
K1, B = 1.2, 0.75         # BM25's usual constants (Robertson & Zaragoza 2009), LanceDB's too
# NLTK's English stop list, LanceDB's (it came from the nltk_data corpus "stopwords", english).
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his himself
she she's her hers herself it it's its itself they them their theirs themselves what which who whom this that that'll
these those am is are was were be been being have has had having do does did doing a an the and but if or because as
until while of at by for with about against between into through during before after above below to from up down in
out on off over under again further then once here there when where why how all any both each few more most other
some such no nor not only own same so than too very s t can will just don don't should should've now d ll m o re ve
y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn
mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
""".split())
# Letters NFKD does not decompose into a base letter and an accent (LanceDB's ASCII folding has them).
FOLD = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d", "ł": "l", "þ": "th", "ı": "i"})
TOKEN = re.compile(r"[^\W_]+")
_stemmer = snowballstemmer.stemmer("english")


@lru_cache(maxsize=50_000)
def _stem(word: str) -> str:
    return _stemmer.stemWord(word)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(FOLD))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def terms(text: str) -> list[str]:
    """The text's terms in order, repeats kept (BM25 counts them)."""
    stems = (_stem(word) for word in TOKEN.findall(_fold(text or "")) if len(word) <= MAX_TOKEN)
    return [stem for stem in stems if stem not in STOP_WORDS]


def question_terms(text: str) -> Counter[str]:
    """How often each term occurs in the question's first ``MAX_QUERY_CHARS`` characters."""
    return Counter(terms((text or "")[:MAX_QUERY_CHARS]))


def term_weights(asked: Counter[str], holding: dict[str, int], entries: int) -> dict[str, float]:
    """BM25's weight of each asked term found in the index, ``holding[term]`` entries of
    ``entries`` having it: its IDF times (k1 + 1), once per time the question says it."""
    return {term: math.log(1 + (entries - n + 0.5) / (n + 0.5)) * (K1 + 1) * asked[term]
            for term, n in holding.items() if term in asked}


def length_norm(average_length: float) -> tuple[float, float]:
    """(a, b) such that an entry of ``length`` terms has tf / (tf + a + b * length) per term."""
    return K1 * (1 - B), K1 * B / (average_length or 1.0)
