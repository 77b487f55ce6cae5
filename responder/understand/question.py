"""What a message asks: its questions, and the words in each that an answer has to speak to.

Pure text work, used after drafting by ``responder.decide.answerability`` (does the draft answer
*this* question?) and by the offline drafter (which sentence of a product's description answers
it). "Do you ship to Canada, and how long does it take? Also, is the Ocean Blue Shirt cotton?"
is three questions; "is it vegan?" asks about "vegan", and an answer that never says "vegan" (or
a word of its family) answers a neighbouring question. Words of asking ("could you help me
check"), greetings and function words are no part of what is asked; nor is a statement of
circumstance ("it's a birthday present for my sister") when the message also asks something.
Stems come from the Snowball English stemmer, so "straps" meets "strap" and "washing" "wash".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

WORD = re.compile(r"[a-z][a-z'’-]*[a-z]|[a-z]")
# Function words, and the words of asking, greeting and politeness: never what a question is about.
STOP = frozenset("""
a an the and or but if so as at by for from in into of on onto to with without about over under than then
is are was were be been being am do does did done doing have has had having can could will would shall should
may might must i me my mine we us our ours you your yours he him his she her hers it its they them their theirs
this that these those there here what which who whom whose when where why how whether any some all each every
no not nor only just also too very really quite more most less least up off out down such own same other another
again once still yet ever even please thanks thank hi hello hey dear regards cheers ok okay yes yeah
myself yourself ourselves itself i'm i've i'd i'll you're you've we're we've it's that's there's what's how's let's don't doesn't didn't can't
won't isn't aren't wasn't weren't haven't hasn't wouldn't couldn't shouldn't
help assist assistance check see know tell want need like wondering wonder wondered ask asking question
questions info information find look looking thinking think guys ya u ur hoping hope possible way get got
one thing things something anything quick sure mean well now today bit lot kind sort
determine seek seeking seeing hold turns turn top trying try tried able
left night overnight take takes took taking
""".split())
# Words that ask for a kind of answer rather than name a topic: covered by any answer of that kind.
KINDS: dict[str, tuple[frozenset[str], re.Pattern]] = {
    "price": (frozenset("price prices priced cost costs costing expensive cheap cheaper charge charged pay paid "
                        "dollars much".split()),
              re.compile(r"[$£€]\s?\d|\d\s?(?:usd|eur|gbp|dollars?)\b|\bfree\b", re.I)),
    "time": (frozenset("long time times quickly quick soon fast days weeks when".split()),
             re.compile(r"\b\d+(?:\s?[–-]\s?\d+)?[\s-]*(?:business\s+|working\s+)?(?:minutes?|mins?|hours?|days?|weeks?|"
                        r"months?|years?)\b|\b(?:today|tomorrow|monday|tuesday|wednesday|thursday|friday|saturday|"
                        r"sunday|january|february|march|april|may|june|july|august|september|october|november|"
                        r"december)\b|\b(?:an?|one|two|three|four|five|six|seven|ten)\s+(?:minutes?|hours?|days?|"
                        r"weeks?|months?|years?)\b", re.I)),
    "stock": (frozenset(["stock"]),
              re.compile(r"\b(?:in stock|out of stock|sold out|available|discontinued|pre-?order|we (?:still )?"
                         r"(?:have|make|sell|carry))\b", re.I)),
    "hours": (frozenset("hours open opening closing".split()),
              re.compile(r"\b\d{1,2}(?::\d\d)?\s?(?:am|pm)\b|\b\d{1,2}:\d\d\b|\b(?:monday|tuesday|wednesday|thursday|"
                         r"friday|saturday|sunday)\b|\b24/7\b", re.I)),
    "origin": (frozenset(), re.compile(r"\bmade in\b|\b(?:produced|manufactured|sourced) in\b", re.I)),
    "count": (frozenset("many number".split()), re.compile(r"\b\d+\b|\b(?:one|two|three|four|five|six|seven|"
                                                            r"eight|nine|ten|single|pair|set)\b", re.I)),
}
# Words of one family in a shop's answers: an answer with one of them speaks to a question with another.
FAMILIES = [set(f.split()) for f in """
ship shipping shipped deliver delivery delivered deliveries send sent post posted mail dispatch arrive arrival courier carrier freight
cost price charge fee fees free
pay payment payments paid card cards paypal visa mastercard instalment instalments installments checkout
return returns refund refunds refunded exchange exchanges swap money back reimburse replace replacement reship resend
clean cleaning wash washing washed care laundry machine
contact reach email customer service support assistance
call phone ring telephone line
bring carry carried inside upstairs indoors
order ordering purchase purchased buy bought checkout
international abroad overseas country countries worldwide outside
discount code codes coupon promo voucher
gift present wrap wrapping
warranty guarantee guaranteed
pickup collect pick local
assemble assembly assembled together build set up legs piece pieces
size sizes sizing measure measurements dimensions
damaged damage broken broke crack cracked defect defective faulty torn
outside outdoor outdoors weather rain frost frosts winter freeze freezing
time long days weeks quick fast soon
subscribe subscription unsubscribe newsletter emails
cancel cancellation cancelling canceling cancelled
""".strip().splitlines()]
# Words of one class: "is it pink or white?" is answered by "it's green", "nylon or cotton?" by "polyester".
CLASSES = {
    "colour": set("""black white grey gray red blue green yellow pink purple orange brown beige cream navy ivory silver
        gold teal turquoise lilac violet maroon burgundy tan khaki charcoal olive mint coral multicolor multicoloured""".split()),
    "material": set("""cotton polyester nylon wool silk linen leather denim flannel fleece cashmere velvet suede satin
        rayon viscose spandex elastane acrylic lycra wood wooden oak pine teak walnut bamboo rattan wicker metal steel
        iron copper brass aluminium aluminum glass ceramic porcelain stoneware earthenware clay terracotta plastic
        resin rubber cardboard paper concrete stone marble granite wax soy beeswax paraffin""".split()),
    "size": set("""xxs xs s m l xl xxl xxxl small medium large regular petite tall""".split()),
    "who": set("men mens men's man women womens women's woman womans unisex kids children boys girls".split()),
}
_stemmer = snowballstemmer.stemmer("english")
_NOT_PRICE = re.compile(r"\bhow much\b.*\b(?:hold|holds|weigh|weighs|fit|fits|contain|contains|space|room|water|soil)\b",
                        re.I)


@lru_cache(maxsize=20_000)
def stem(word: str) -> str:
    return _stemmer.stemWord(word.replace("’", "'").split("'")[0].lower())


def words(text: str) -> list[str]:
    return WORD.findall((text or "").lower().replace("’", "'"))


@dataclass(frozen=True)
class Term:
    word: str     # as the customer wrote it
    stem: str
    kind: str     # "" for a topic word, else the kind of answer it asks for ("price", "time", ...)
    group: str = ""  # a class of words ("colour", "material", "who") any of which answers it


def terms(text: str, *, names: tuple[str, ...] = ()) -> list[Term]:
    """The words of ``text`` an answer has to speak to, without those of the product ``names``."""
    named = {stem(w) for name in names for w in words(name) if not any(w in c for c in CLASSES.values())}
    out, seen = [], set()
    for word in words(text):
        if word in STOP or stem(word) in _stop_stems() or len(word) < 2 or stem(word) in named or stem(word) in seen:
            continue
        seen.add(stem(word))
        kind = next((k for k, (cues, _) in KINDS.items() if word in cues), "")
        if word == "much" and _NOT_PRICE.search(text):
            continue  # "how much does it hold / weigh": the other word says what is asked
        group = next((g for g, members in CLASSES.items() if word in members), "")
        if word in ("made", "make", "manufactured", "produced"):  # "where is it made?" asks for a place,
            kind, group = ("origin", "") if re.search(r"\bwhere\b", text, re.I) else ("", "material")  # else a material
        out.append(Term(word, stem(word), kind, group))
    return out


QWORDS = (r"(?:who|what|what's|whats|when|where|why|how|which|is|are|was|were|do|does|did|can|could|will|would|"
          r"should|shall|may|have|has|any)")
_QUESTION = re.compile(rf"^{QWORDS}\b", re.I)
_STATEMENT = re.compile(r"^(?:i|i'm|im|i've|we|we're|my|our|it's a|its a|thanks|thank|for)\b", re.I)
# Between questions: a sentence end, ", and how …", "… and can …", "Also, …".
_BETWEEN = re.compile(rf"(?<=[?!.])\s*|:\s+|\s+[-–—]\s+|,\s+(?:and\s+)?(?=(?:also\s+)?{QWORDS}\b)"
                      rf"|\s+and\s+(?={QWORDS}\b)|\balso,?\s+", re.I)
_REQUEST = re.compile(r"\b(?:i|we)(?:'d| would)? (?:want|need|like|wish)\b|\bplease\b"
                      r"|\b(?:have|got|need|want) to (?:check|know|see|find|ask)\b", re.I)
_ASKING = re.compile(r"\b(?:which|what|how|when|where|why|whether|can i|could i|do you|are there|is there)\b", re.I)


def questions(text: str) -> list[str]:
    """The message's questions, each on its own; what it says when it asks nothing outright
    ("shipping time to Ohio", "I want to unsubscribe"); [] when it asks nothing at all ("I'm
    looking at the yellow sofa"). A statement beside a question ("it's a birthday present for my
    sister") is circumstance, not something to answer."""
    pieces = [p.strip(" ,;:-") for p in _BETWEEN.split(" ".join((text or "").split()))]
    pieces = [p for p in pieces if p and WORD.search(p.lower())]
    asked = [p for p in pieces if _QUESTION.match(p) or _ASKING.search(p) or p.endswith("?")]
    return asked or [p for p in pieces if not _STATEMENT.match(p)] or [p for p in pieces if _REQUEST.search(p)]


def _with_parts(found: list[str]) -> list[str]:
    """Words, and the parts of hyphenated ones ("made-to-order" also counts as "order")."""
    return found + [part for w in found if "-" in w for part in w.split("-") if part]


def context(text: str) -> str:
    """What the message says beside what it asks ("my order arrived with a torn seam", "… if it has a
    good cover on it")."""
    pieces = [p.strip(" ,;:-") for p in _BETWEEN.split(" ".join((text or "").split()))]
    said = set(questions(text))
    return " ".join([p for p in pieces if p and p not in said] + [q[len(core(q)):] for q in said])


def family(word_stem: str) -> set[str]:
    """The stems of the word's family (itself included)."""
    out = {word_stem}
    for group in _families():
        if word_stem in group:
            out |= group
    return out


@lru_cache(maxsize=1)
def _stop_stems() -> frozenset[str]:
    return frozenset(stem(w) for w in STOP)


@lru_cache(maxsize=1)
def _families() -> tuple[frozenset[str], ...]:
    return tuple(frozenset(stem(w) for w in group) for group in FAMILIES)


def covers(term: Term, evidence: str) -> bool:
    """Whether ``evidence`` speaks to ``term``: a word of its family, a longer form of it
    ("seat" → "seater", "wood" → "wooden"), for a kind of question an answer of that kind, for a word of a
    class ("pink") any word of the class ("green")."""
    if term.kind and KINDS[term.kind][1].search(evidence):
        return True
    if term.kind in ("origin",):
        return False
    if term.group and any(w in CLASSES[term.group] for w in words(evidence)):
        return True
    wanted = family(term.stem)
    for word in _with_parts(words(evidence)):
        s = stem(word)
        if s in wanted or (len(term.stem) >= 4 and (s.startswith(term.stem) or term.stem.startswith(s) and len(s) >= 4)):
            return True
    return False


# Words a question leans on without being what it is about: the reply needn't repeat them.
WEAK = frozenset("""
easy easily hard difficult safe good best better fine able go goes going put leave use used using make makes
keep come comes came happen work works right normal usual usually typically generally exactly actually
policy policies option options details detail process procedure rules terms people person product products
item items stuff shop store website site online way ways available possible whole type kind anyone someone
case cases request requests available availability method methods
two three four five six seven eight nine ten first second deal whats
order orders ordering ordered buy buying purchase purchasing sell sells selling carry carries offer offers provide provides
""".split())
_PLACE = re.compile(r"\b(?:to|in|into|from|near|around)\s+([^?.!,;]+)", re.I)


def places(question: str, found: list[Term], known: frozenset[str] = frozenset()) -> set[str]:
    """Stems of a destination the shop's knowledge never names, in a question about shipping or
    pickup ("to 45040 in cincinnati ohio"): the rule for where it ships answers it. A place the
    knowledge does name ("Canada") is asked about and must be answered."""
    shipping = family(stem("ship")) | family(stem("pickup"))
    if not any(t.stem in shipping for t in found):
        return set()
    return {stem(w) for m in _PLACE.finditer(question) for w in words(m.group(1))} - known


_AUX = frozenset("can could do does did should will would may might shall must have has had am is are was were "
                 "if when where what how why which who".split())
_BECAUSE = re.compile(r"\s+(?:if|because|since|though|although|unless|as long as)\s+\S.*$", re.I)


def core(question: str) -> str:
    """The question without the circumstance around it: "can I return a candle I haven't lit?" asks
    whether a candle can be returned; "… if it has a good cover on it" is the customer's situation."""
    text = question
    if (m := _BECAUSE.search(question)) and len(question[:m.start()].split()) >= 3:  # "hello, if I wear a 7 …" asks after
        text = question[:m.start()]
    clause = r"(?<=\w)\s+(?:that\s+|which\s+)?(?:i|we)\s+(?:have|had|haven't|hadn't|didn't|never|already|just|don't)\b"
    for m in re.finditer(clause, text, re.I):
        before = text[:m.start()].split()[-1].lower().strip(",")
        if before not in _AUX and len(text[:m.start()].split()) >= 3:
            return text[:m.start()]
    return text


def asked(question: str, *, names: tuple[str, ...] = (), known: frozenset[str] = frozenset()) -> list[Term]:
    """What an answer to one question must speak to: its topic words (not the weak ones, nor a
    destination the knowledge never names) and the first word of each kind of answer it asks for.
    ``known``: stems of the words the knowledge uses (``vocabulary``)."""
    found = terms(core(question), names=names)
    where = places(question, found, known)
    topics = [t for t in found if not t.kind and t.word not in WEAK and t.stem not in _weak_stems()
              and t.stem not in where]
    kinds: dict[str, Term] = {}
    for t in found:
        if t.kind:
            kinds.setdefault(t.kind, t)
    return topics + list(kinds.values())


def missing(question: str, reply: str, *, names: tuple[str, ...] = (), kinds_of_goods: frozenset[str] = frozenset(),
            known: frozenset[str] = frozenset()) -> list[Term]:
    """What ``reply`` leaves unanswered of one question: the topic words it doesn't speak to, and
    each kind of answer it doesn't give ("how long" without a duration). ``kinds_of_goods``: stems
    of the words the shop's product names use; "can you send a mug to Toronto?" is answered by the
    shipping rule without the word "mug", once the reply speaks to the rest."""
    wanted = asked(question, names=names, known=known)
    gaps = [t for t in wanted if not covers(t, reply)]
    if any(not t.kind and t not in gaps and t.stem not in kinds_of_goods for t in wanted):
        gaps = [t for t in gaps if t.kind or t.stem not in kinds_of_goods]
    return gaps


def vocabulary(*texts: str) -> frozenset[str]:
    """Stems of every word in ``texts``."""
    return frozenset(stem(w) for text in texts for w in words(text))


def goods_words(names: list[str]) -> frozenset[str]:
    """Stems of the words product names are made of ("Big Harbor Mug" -> big, harbor, mug), not colours or materials."""
    return frozenset(stem(w) for name in names for w in words(name)
                     if len(w) > 2 and w not in STOP and not any(w in c for c in CLASSES.values()))


@lru_cache(maxsize=1)
def _weak_stems() -> frozenset[str]:
    return frozenset(stem(w) for w in WEAK)
