"""The offline drafter: answers from retrieved knowledge with no model and no network.

Runs after retrieval. Each question of the message (``understand.question.questions``) gets its
own answer, from the hit whose answer speaks to everything that question asks (the best-ranked
such hit): a product's facts (``responder.draft.product``) or the sentences of a FAQ or policy
section that speak to the question, not the whole section. "Do you ship to Canada, and how long
does it take? Also, is the shirt cotton?" is answered in three parts. A question no hit answers
gets "I don't know that one; I've asked <owner>" and a reason naming what is missing, and the
draft waits; so does one whose best knowledge is below ``MIN_SIMILARITY``: never a guess, never
a neighbouring answer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from responder.core.clock import utcnow
from responder.core.settings import Settings
from responder.draft.base import DraftRequest, DraftResult
from responder.draft.product import asks_about_product, product_answer
from responder.understand.question import (
    CLASSES,
    Term,
    asked,
    context,
    covers,
    missing,
    questions,
    stem,
    terms,
    vocabulary,
    words,
)

SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
MIN_SIMILARITY = 0.30   # below: the knowledge does not speak to the question
SURE_SIMILARITY = 0.60  # at or above: as sure as this drafter gets
NAMED_SLACK = 0.05      # how far below MIN_SIMILARITY a section about the named product's material may be
ANSWERED = 0.85         # confidence when the evidence speaks to every word of every question
BARE = re.compile(r"^(?:yes|no|yep|nope|sure)[.!]?$", re.I)
EXCEPTION = re.compile(r"\b(?:not|never|except|only|but|unless)\b|n't\b", re.I)


@dataclass(frozen=True)
class Scene:
    """What every question of one message is answered against, worked out once per message."""
    names: tuple[str, ...]       # the products among the hits, whose names needn't be repeated
    named: tuple[str, ...]       # the products the customer names (or the conversation is about)
    known: frozenset[str]        # stems the hits use: a place they name ("Canada") must be answered
    of_named: tuple[Term, ...]   # what the named product is made of or looks like ("wool", "yellow")
    around: tuple[Term, ...]     # what the message says beside its questions ("my order arrived torn")
    topic: tuple[Term, ...]      # the email's subject ("returns")

    @classmethod
    def of(cls, hits: list, request: DraftRequest) -> "Scene":
        products = [h for h in hits if h.kind == "product" and h.facts.get("name")]
        named = tuple(h.facts["name"] for h in products if h.named)
        return cls(names=tuple(h.facts["name"] for h in products), named=named,
                   known=vocabulary(*(h.text for h in hits)),
                   of_named=tuple(t for t in terms(" ".join(named)) if t.group),
                   around=tuple(terms(context(request.text))),
                   topic=tuple(terms(request.subject)) if request.channel == "email" else ())


@dataclass
class Answer:
    question: str
    text: str = ""
    source: str = ""
    similarity: float = 0.0
    gaps: list[Term] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    found: bool = True      # the product row holds the asked-for attribute
    named: bool = False


def relevant_sentences(body: str, question: str, limit: int = 3, names: tuple[str, ...] = (),
                       prefer: tuple[str, ...] = ()) -> str:
    """The section's sentences that answer the question, in their order: the first (it answers the
    heading's question), those that speak to every word the question asks about, preferring the
    ones that also name what it names ("the gold rim cup": the sentence about gold luster, not the
    general rule), then those sharing most words with it. A bare "Yes." leads only the sentence
    it introduces, and never an exception ("not microwave safe")."""
    sentences = [s.strip() for s in SENTENCE.split(body.strip()) if s.strip()]
    if len(sentences) <= limit and not (BARE.match(sentences[0]) and EXCEPTION.search(body)):
        return " ".join(sentences)
    # product words included (the question's and the products it's about): a sentence naming them is the more specific
    everything = asked(question) + terms(" ".join(prefer))
    open_terms, picked = asked(question, names=names), []
    while open_terms and len(picked) < limit:
        i = max(range(len(sentences)), key=lambda i: (sum(covers(t, sentences[i]) for t in open_terms),
                                                      sum(covers(t, sentences[i]) for t in everything), -i))
        if i in picked or not any(covers(t, sentences[i]) for t in open_terms):
            break
        picked.append(i)
        open_terms = [t for t in open_terms if not covers(t, sentences[i])]
    bare = BARE.match(sentences[0])
    kept = list(picked) + ([] if bare or 0 in picked or len(picked) >= limit else [0])
    for i in sorted(range(1, len(sentences)), key=lambda i: -sum(covers(t, sentences[i]) for t in everything)):
        if len(kept) >= limit or not any(covers(t, sentences[i]) for t in everything):
            break
        kept += [] if i in kept else [i]
    kept = kept[:limit]
    if bare and limit > 1 and 1 in kept[:limit - 1] and not EXCEPTION.search(" ".join(sentences[i] for i in kept)):
        kept = kept[:limit - 1] + [0]  # "Yes." with the sentence it introduces, within the limit
    return " ".join(sentences[i] for i in sorted(set(kept)))


def other_material(text: str, named: list[Term]) -> bool:
    """Whether ``text`` speaks of materials, none of them the named product's (cotton care for wool)."""
    own = {t.word for t in named if t.group == "material"}
    if not own:
        return False
    said = {w for w in words(text.lower()) if w in CLASSES["material"]}
    return bool(said) and not any(a.startswith(b) or b.startswith(a) for a in said for b in own)  # wood ~ wooden


def body_of(hit) -> str:
    return hit.text.split("\n", 1)[1] if hit.text.startswith(hit.title) and "\n" in hit.text else hit.text


class OfflineDrafter:
    name = "offline"
    wants_examples = False  # it answers from the facts alone

    @property
    def offline(self) -> "OfflineDrafter":
        return self

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    def draft(self, request: DraftRequest) -> DraftResult:
        hits = [h for h in request.hits if h.kind != "example"]
        if request.knowledge_empty:
            return DraftResult("", 0.0, reasons=["the knowledge folder is empty: add FAQ, policies or a catalog"],
                               backend=self.name)
        if not hits:
            return DraftResult("", 0.0, reasons=["nothing in the knowledge matches the question"],
                               backend=self.name)
        best = hits[0]
        if best.similarity < MIN_SIMILARITY and not best.named:
            return DraftResult("", round(best.similarity, 3), [best.source],
                               [f"no knowledge above {MIN_SIMILARITY:.2f} similarity "
                                f"(best: {best.source} at {best.similarity:.2f})"], self.name)
        qs, scene = questions(request.text)[:4], Scene.of(hits, request)
        if not qs:  # a statement ("I'm looking at the yellow sofa"): what the knowledge says of what it names
            best = next((h for h in hits if h.named and h.kind == "product"), best)
            answer = self.render(best, "" if best.kind == "product" else request.text or request.subject, request,
                                 prefer=scene.named)
            return self.combine([answer], request, checked=False)
        answers: list[Answer] = []
        for q in qs:
            # "…ship to Canada, and how long does it take?": "it" is the answer before's topic.
            after = answers[-1].source if answers and not any(not t.kind for t in terms(q)) else None
            limit = {1: 3, 2: 2}.get(len(qs), 1)  # sentences per answer: the whole reply stays short
            answers.append(self.answer(q, hits, request, scene, limit=limit, after=after))
        return self.combine(answers, request)

    def answer(self, question: str, hits: list, request: DraftRequest, scene: Scene, limit: int = 3,
               after: str | None = None) -> Answer:
        """The best answer to one question: fewest unanswered words, then the best-ranked hit."""
        names, of_named = scene.names, scene.of_named
        product_question = asks_about_product(question)
        best: tuple | None = None
        for rank, hit in enumerate(hits):
            # Below the similarity floor only what speaks of the named product ("wool" for the wool jumper);
            # the product the customer names is the one answered for, not another that shares a word.
            floor = MIN_SIMILARITY - (NAMED_SLACK if any(covers(t, hit.text) for t in of_named) else 0)
            if hit.similarity < floor and not hit.named or scene.named and hit.kind == "product" and not hit.named:
                continue
            answer = self.render(hit, question, request, names, scene.named, limit)
            if not answer.text:
                continue
            answer.gaps = missing(question, answer.text, names=names + ((hit.facts.get("name", ""),)
                                                                        if hit.kind == "product" else ()),
                                  kinds_of_goods=request.goods, known=scene.known)
            if hit.kind == "product":  # "the Winter Pine candle": the product's own answer is about a candle
                answer.gaps = [t for t in answer.gaps if t.kind or t.stem not in request.goods]
            # "Can the pasta bowls go in the dishwasher?" names a product but asks the FAQ; a section about
            # other materials ("How do I wash cotton and denim?") is not about the wool jumper asked of.
            off_topic = (hit.kind == "product" and not product_question and not answer.found) or \
                (hit.kind != "product" and other_material(hit.text, of_named))
            heading = {stem(w) for w in words(hit.title)}
            # The heading about what is asked: "Returns" for the return policy (or a mail about "returns").
            subject = sum(t.stem in heading for t in scene.topic) / (2 * max(1, len(heading)))
            titled = sum(t.stem in heading for t in terms(question, names=names)) + \
                (subject if hit.kind != "product" else 0)
            about = sum(covers(t, hit.text) for t in scene.around + of_named)
            key = (len(answer.gaps) + off_topic, hit.source != after, -about, not hit.named, -titled, rank)
            if best is None or key < best[0]:
                best = (key, answer)
        return best[1] if best else Answer(question, gaps=[Term(question, question, "")])

    def render(self, hit, question: str, request: DraftRequest, names: tuple[str, ...] = (),
               prefer: tuple[str, ...] = (), limit: int = 3) -> Answer:
        answer = Answer(question, source=hit.source, similarity=hit.similarity, named=hit.named)
        if hit.kind == "product":
            today = utcnow().astimezone(self.settings.tz).date() if self.settings else utcnow().date()
            answer.text, answer.found, answer.notes = product_answer(hit.facts, question, today, request.text)
            if hit.facts.get("status") == "discontinued" and request.alternatives:
                other = request.alternatives[0]
                answer.text += f" If you'd like something similar, we still make the {other['name']} (${other['price']})."
            if not answer.found:
                answer.notes.append(f"the catalog row for {hit.facts.get('name', hit.source)} doesn't say that")
        else:
            answer.text = relevant_sentences(body_of(hit), question, limit=limit, names=names, prefer=prefer)
        return answer

    def combine(self, answers: list[Answer], request: DraftRequest, checked: bool = True) -> DraftResult:
        """One reply from the answers; a part nothing answers is said honestly, and the draft waits."""
        owner = self.settings.store.owner_name if self.settings else "the owner"
        parts, reasons, sources, unanswered = [], [], [], 0
        for a in answers:
            if a.gaps or not a.text:
                said = ", ".join(f"'{t.word}'" for t in a.gaps if not t.kind) or \
                       ", ".join(f"{t.kind} ('{t.word}')" for t in a.gaps)
                missing_part = f" ({said})" if said else ""
                reasons.append(f"nothing in the knowledge answers \"{a.question[:80]}\"{missing_part}")
                unanswered += 1
                continue
            fresh = [x for x in SENTENCE.split(a.text) if x and not any(x in p for p in parts)]
            if fresh:
                parts.append(" ".join(fresh))
            sources.append(a.source)
            reasons += a.notes
        if not parts:  # for the owner to start from: the nearest knowledge, marked as not an answer
            nearest = next((a for a in answers if a.text), None)
            return DraftResult(nearest.text if nearest else "", 0.2, [nearest.source] if nearest else [], reasons,
                               self.name)
        if unanswered:
            parts.append(f"I don't know the answer to the rest, so I've asked {owner}.")
        similarity = min(a.similarity for a in answers if a.text and not a.gaps)
        confidence = min(1.0, 0.5 + 0.5 * (similarity - MIN_SIMILARITY) / (SURE_SIMILARITY - MIN_SIMILARITY))
        if checked and not reasons and not unanswered:
            confidence = max(confidence, ANSWERED)
        if any(a.named for a in answers if not a.gaps):
            confidence = max(confidence, ANSWERED)
        if reasons:
            confidence = min(confidence, 0.5)
        return DraftResult(" ".join(parts), round(max(0.0, confidence), 3), list(dict.fromkeys(sources)), reasons,
                           self.name)
