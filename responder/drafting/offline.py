"""The offline drafter: answers from the knowledge folder with no model and no network.

Stand-in until hybrid retrieval lands: entries are ranked by IDF-weighted word overlap with the
customer's question (titles count double), and the best FAQ/policy entry's opening sentences
become the reply. Confidence is the share of the question's weighted words the entry covers, so
a question the knowledge does not speak to gets a low score and goes to the owner, never a guess.
"""
from __future__ import annotations

import math
import re
from collections import Counter

from responder.drafting.base import DraftRequest, DraftResult
from responder.knowledge import Entry, load_knowledge

STOPWORDS = set("""a an the and or but if of to in on at by for with from as is are was were be been
being do does did doing have has had having i me my we our you your he she it its they them their this
that these those what which who whom when where why how can could would should will shall may might
must just so than too very not no yes please hi hello hey thanks thank there here about into out up
down over under again any all some more most other such only own same also get got any im i'm you're
dont don't ok okay one""".split())
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def words(text: str) -> list[str]:
    out = []
    for word in WORD.findall(text.lower()):
        if word in STOPWORDS or len(word) < 2:
            continue
        out.append(word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word)
    return out


class OfflineDrafter:
    name = "offline"

    def __init__(self, settings) -> None:
        knowledge = load_knowledge(settings.knowledge_dir)
        self.entries: list[Entry] = knowledge.of_kind("faq", "policy")
        self.warnings = knowledge.warnings
        docs = [set(words(e.title + " " + e.text)) for e in self.entries]
        frequency = Counter(w for doc in docs for w in doc)
        self.idf = {w: math.log(1 + len(docs) / n) for w, n in frequency.items()}
        self.index = [(Counter(words(e.title)), set(words(e.text))) for e in self.entries]

    def draft(self, request: DraftRequest) -> DraftResult:
        question = set(words(f"{request.subject} {request.text}" if len(request.text) < 40 else request.text))
        weight = {w: self.idf.get(w, 0.0) for w in question}
        total = sum(weight.values())
        if not self.entries:
            return DraftResult("", 0.0, reasons=["the knowledge folder has no FAQ or policy entries"],
                               backend=self.name)
        if total == 0:
            return DraftResult("", 0.0, reasons=["no question the knowledge speaks to"], backend=self.name)
        scored = []
        for entry, (title, body) in zip(self.entries, self.index):
            covered = sum(wt for w, wt in weight.items() if w in title or w in body)
            bonus = sum(wt for w, wt in weight.items() if w in title)
            scored.append((covered + bonus, covered / total, entry))
        scored.sort(key=lambda item: item[0], reverse=True)
        _, coverage, best = scored[0]
        confidence = round(min(1.0, coverage), 3)
        reasons = [] if confidence >= 0.5 else [f"weak match with the knowledge ({confidence:.2f})"]
        sentences = SENTENCE.split(best.text.strip())
        reply = " ".join(sentences[:3]).strip()
        return DraftResult(reply, confidence, [best.source], reasons, self.name)
