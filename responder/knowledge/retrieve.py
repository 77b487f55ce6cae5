"""Retrieval: a customer's question in, ranked knowledge out (hybrid vector + full text).

Runs in the pipeline after signals and before drafting, and behind ``run.py search``. Three
rankings are fused with reciprocal-rank fusion (Cormack et al. 2009, k=60): cosine similarity
of MiniLM vectors, BM25 over the words of the index's SQLite file, and catalog matches — a SKU, a
product name written exactly or fuzzily ("cedar smoke candle" -> Cedar & Smoke, via rapidfuzz), or an
attribute value ("the blue one" -> products whose colors include blue). Every hit carries its
cosine similarity too, so the drafter can tell "nothing relevant" from "the best of a bad lot".
"""
from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from rapidfuzz import fuzz, process

from responder.knowledge.embeddings import LocalEmbedder, _shared
from responder.knowledge.folder import Entry
from responder.knowledge.index import KnowledgeIndex, SyncReport
from responder.knowledge.prepared_queries import Prepared

# Fusion constants, measured with bench/retrieval.py (164 labelled questions, two stores): a
# small k lets a clear first place count; full text is a tie-breaker beside MiniLM; a product
# named outright counts like a vector hit, one only described ("the blue one") half as much.
RRF_K = 5
VECTOR_WEIGHT, TEXT_WEIGHT, STRONG_WEIGHT, WEAK_WEIGHT = 1.0, 0.2, 1.0, 0.5
# A product reaches the answer through the catalog lookup (named or described) or a close
# vector match; otherwise "can I return a mug" would rank mugs above the returns policy.
PRODUCT_SIMILARITY = 0.60
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fts")
CANDIDATES = 50
MODES = ("hybrid", "fts", "vector")
FACT_KINDS = ("faq", "policy", "product")
# Product columns whose values are words a customer may describe a product by.
ATTRIBUTE_COLUMNS = ("colors", "color", "colour", "colours", "size", "scent_notes", "materials", "material",
                     "type", "tags", "capacity", "style")
NAME_STOPWORDS = {"the", "and", "of", "a", "an", "co", "with", "&"}


MAX_LOOSE_PRODUCTS = 2  # products matched by a shared word, not by name, among the hits


@dataclass
class Hit:
    source: str
    kind: str
    title: str
    text: str
    score: float
    similarity: float = 0.0
    facts: dict[str, str] = field(default_factory=dict)
    named: bool = False  # a product the question names outright (SKU, name, "the blue one")


@dataclass
class KnowledgeFacts:
    catalog: list[dict[str, str]]
    policies: str
    store: dict = field(default_factory=dict)


def folder_fingerprint(folder: Path) -> tuple:
    """Names, sizes and mtimes: cheap enough to check every few seconds."""
    try:
        return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns)
                            for e in os.scandir(folder) if e.is_file()))
    except OSError:
        return ()


class Knowledge(Protocol):
    """What the pipeline, the guard and the daemon ask of the shop's knowledge (``Retriever`` is
    the one implementation; a test double or another store implements the same)."""

    @property
    def version(self) -> str: ...

    def search(self, question: str, k: int = 5, mode: str = "hybrid", kinds: tuple[str, ...] = FACT_KINDS,
               context_product: str | None = None) -> list[Hit]: ...

    def product_in(self, text: str) -> str | None: ...

    def facts(self) -> "KnowledgeFacts": ...

    def prepare(self, questions: list[str]) -> None: ...

    def refresh(self, force: bool = False) -> SyncReport | None: ...


class Retriever:
    """The knowledge index searched the hybrid way (vectors and words, product names first)."""

    def __init__(self, index: KnowledgeIndex):
        self.index = index
        self.fingerprint: tuple | None = None
        self._lock = threading.Lock()
        self._catalog: tuple[str, Catalog] | None = None
        self._facts: tuple[str, KnowledgeFacts] | None = None
        self._prepared = Prepared()

    def product_in(self, text: str) -> str | None:
        """The key of the one product a text names, if it names exactly one (for memory)."""
        strong, weak = self.catalog().matches(text)
        rows = strong or weak
        if len(rows) == 1 or (strong and len(strong) >= 1):
            return next(key for key, row in self.index.by_key.items() if row == rows[0])
        return None

    def facts(self) -> "KnowledgeFacts":
        """What the guard checks claims against, for the index as it is now."""
        if self._facts is None or self._facts[0] != self.index.version:
            entries = self.index.entries
            self._facts = (self.index.version, KnowledgeFacts(
                catalog=[e.facts for e in entries if e.kind == "product"],
                policies="\n\n".join(e.text for e in entries if e.kind in ("policy", "faq"))))
        return self._facts[1]

    def catalog(self) -> "Catalog":
        """The product lookup for the index as it is now (rebuilt when the index changed)."""
        if self._catalog is None or self._catalog[0] != self.index.version:
            self._catalog = (self.index.version, Catalog(self.index.entries))
        return self._catalog[1]

    @property
    def version(self) -> str:
        return self.index.version

    def refresh(self, force: bool = False) -> SyncReport | None:
        """Re-sync the index when a file in the folder changed, when a search found the index
        file damaged, or when forced."""
        with self._lock:
            fingerprint = folder_fingerprint(self.index.folder)
            if not force and fingerprint == self.fingerprint and not self.index.damaged:
                return None
            report = self.index.sync()
            self.fingerprint = fingerprint
            return report

    def search(self, question: str, k: int = 5, mode: str = "hybrid",
               kinds: tuple[str, ...] = FACT_KINDS, context_product: str | None = None) -> list[Hit]:
        """The ``k`` best entries of ``kinds``; tone examples are not facts, so not by default.

        ``context_product`` (an entry key) is the product the conversation is about: when the
        question names none ("how tall is it?"), that one counts as named.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        question = (question or "").strip()[:4000]
        index = self.index
        with index.lock:
            if not question or not index.entries:
                return []
            catalog = self.catalog()
            # Full text hears the topic too; products are found by the catalog lookup. It runs
            # on a second core while MiniLM embeds the question.
            words = catalog.without_product_words(question) if mode == "hybrid" else ""
            text_hits = (self._prepared.text_hits(words or question, index.version)
                         or _POOL.submit(index.text_search, words or question, CANDIDATES * 2)) \
                if mode in ("hybrid", "fts") else None
            similarity = self._similarity(question, catalog)
            strong, weak = catalog.matches(question) if mode == "hybrid" else ([], [])
            if mode == "hybrid" and context_product is not None and not strong:
                strong = [row for row in (index.by_key.get(context_product),) if row is not None]
            named = set(strong) | set(weak)

            def wanted(row: int) -> bool:
                entry = index.entries[row]
                if entry.kind not in kinds:
                    return False
                return mode != "hybrid" or entry.kind != "product" or row in named \
                    or similarity[row] >= PRODUCT_SIMILARITY

            rankings: list[tuple[list[int], float]] = []
            if mode in ("hybrid", "vector"):
                rankings.append(([row for row, _ in index.top(similarity, CANDIDATES * 2)], VECTOR_WEIGHT))
            if mode in ("hybrid", "fts"):
                rankings.append(([row for row, _ in text_hits.result()], TEXT_WEIGHT))
            if mode == "hybrid":
                rankings += [(strong, STRONG_WEIGHT), (weak, WEAK_WEIGHT)]
            fused: dict[int, float] = {}
            for rows, weight in rankings:
                rows = [row for row in rows if wanted(row)]
                for rank, row in enumerate(rows):
                    fused[row] = fused.get(row, 0.0) + weight / (RRF_K + rank + 1)
            hits, seen, loose = [], set(), 0
            for row in sorted(fused, key=lambda r: (-fused[r], -similarity[r])):
                entry: Entry = index.entries[row]
                if entry.source in seen:  # chunks of one section: the best one speaks for it
                    continue
                if mode == "hybrid" and entry.kind == "product" and row not in strong:
                    # "the yellow sofa … will you price match?": the named sofa, not every sofa, and
                    # room for the policy asked about; with none named, two of a kind at most.
                    loose += 1
                    if strong or loose > MAX_LOOSE_PRODUCTS:
                        continue
                seen.add(entry.source)
                hits.append(Hit(entry.source, entry.kind, entry.title, entry.text, round(fused[row], 6),
                                round(float(similarity[row]), 4), entry.facts, named=row in strong))
                if len(hits) == k:
                    break
            return hits


    def prepare(self, questions: list[str]) -> None:
        """Embed a batch of questions (and their topic-only forms) in one model call and start
        their full-text searches, for the ``search`` calls that follow: the process job calls
        this for the messages it is about to route, outside their transactions and while it
        routes the batch before. MiniLM costs a third as much per question in a batch."""
        index = self.index
        with index.lock:  # the catalog of the index as it is now; the model runs outside the lock
            if not index.entries:
                return
            catalog, version = self.catalog(), index.version
        texts, searches = {}, {}
        for question in questions:
            question = (question or "").strip()[:4000]
            if question:
                topic = catalog.without_product_words(question)
                texts.update(dict.fromkeys([question, topic] if topic else [question]))
                searches.setdefault(topic or question, None)
        texts, searches = self._prepared.missing(texts, searches, version)
        for text in searches:
            searches[text] = _POOL.submit(index.text_search, text, CANDIDATES * 2)
        vectors = index.embedder.embed(list(texts)) if texts else []
        self._prepared.add(dict(zip(texts, vectors)), searches, version)

    def _similarity(self, question: str, catalog: "Catalog"):
        """Cosine similarity per row. Documents are also compared with the question minus its
        product words: "can you send a mug to Toronto?" is a shipping question, and MiniLM
        otherwise hears mostly "mug"."""
        index = self.index
        topic = catalog.without_product_words(question)
        if not topic:
            return index.similarities(self._prepared.vectors(index.embedder, [question])[0])
        full, stripped = self._prepared.vectors(index.embedder, [question, topic])
        similarity, topical = index.similarities(full), index.similarities(stripped)
        return np.where(catalog.is_product, similarity, np.maximum(similarity, topical))


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in NAME_STOPWORDS}


def _values(entry: Entry) -> set[str]:
    return {v.strip().lower() for column in ATTRIBUTE_COLUMNS
            for v in re.split(r"[,;/|]", entry.facts.get(column, "")) if v.strip()}


class Catalog:
    """Products by SKU, name words and attribute words, so a query checks only candidates.

    A word that many products share ("mug" in a mug shop) names none of them, so only
    distinctive words count (in at most a quarter of the products, or two).
    """

    def __init__(self, entries: list[Entry]):
        self.entries = entries
        self.by_sku: dict[str, int] = {}
        self.by_word: dict[str, set[int]] = {}
        products = [row for row, e in enumerate(entries) if e.kind == "product"]
        for row in products:
            entry = entries[row]
            if entry.facts.get("sku"):
                self.by_sku[entry.facts["sku"].lower()] = row
            for word in _words(entry.facts.get("name", entry.title)) | {w for v in _values(entry) for w in _words(v)}:
                self.by_word.setdefault(word, set()).add(row)
        limit = max(2, len(products) // 4)
        self.distinctive = {w for w, rows in self.by_word.items() if len(rows) <= limit and not w.isdigit()}
        self.is_product = np.array([e.kind == "product" for e in entries], dtype=bool)
        self.name_words = {w for row in products for w in re.findall(r"[a-z]+", entries[row].facts.get(
            "name", entries[row].title).lower())} - NAME_STOPWORDS

    def without_product_words(self, question: str) -> str:
        """The question with product-name words removed; "" when that changes nothing useful."""
        def keep(match: re.Match) -> str:
            word = match.group(0).lower()
            return "" if word in self.name_words or word.rstrip("s") in self.name_words else match.group(0)
        stripped = re.sub(r"[A-Za-z]+", keep, question)
        return stripped if stripped != question and len(stripped.split()) >= 2 else ""

    def matches(self, question: str) -> tuple[list[int], list[int]]:
        """(strong, weak) product rows, best first: named by SKU or name, or only described."""
        lowered = question.lower()
        words = _words(question)
        words |= {w[:-1] for w in words if w.endswith(("y", "s")) and len(w) > 4}  # sandy -> sand, minty -> mint
        for word in [w for w in words if len(w) >= 5 and w not in self.by_word]:  # "lavendar" -> "lavender"
            found = process.extractOne(word, self.distinctive, scorer=fuzz.ratio, score_cutoff=80)
            if found:
                words.add(found[0])
        strong: dict[int, float] = {}
        weak: dict[int, float] = {}
        for token in re.findall(r"[\w-]+", lowered):
            if token in self.by_sku:
                strong[self.by_sku[token]] = 100.0
        described = set(re.findall(r"\b([a-z]+)\s+ones?\b", lowered)) - {"the", "a", "that", "this", "other"}
        keys = words & self.distinctive
        candidates = set().union(*(self.by_word[w] for w in keys)) if keys else set()
        for row in candidates:
            entry = self.entries[row]
            name = entry.facts.get("name", entry.title).lower()
            name_words = _words(name)
            named = name_words & self.distinctive
            if name and name in lowered:
                strong[row] = max(strong.get(row, 0), 90.0)
            elif named and named <= words:
                strong[row] = max(strong.get(row, 0), 80.0 + len(named))
            elif named & words:
                weak[row] = max(weak.get(row, 0), 50.0 * len(named & words) / len(named))
            for value in _values(entry):
                if _words(value) & described:  # "the blue one" picks out the blue products
                    strong[row] = max(strong.get(row, 0), 70.0)
                elif re.search(rf"\b{re.escape(value)}\b", lowered) or value in words:
                    weak[row] = max(weak.get(row, 0), 40.0)
                elif any(w in keys and len(w) > 3 and w.isalpha() for w in _words(value) & words):
                    weak[row] = max(weak.get(row, 0), 30.0)
        weak = {row: score for row, score in weak.items() if row not in strong}
        return (sorted(strong, key=lambda r: -strong[r]), sorted(weak, key=lambda r: -weak[r]))


def open_retriever(knowledge_dir: Path, data_dir: Path, embedder=None) -> Retriever:
    """A retriever over ``knowledge_dir`` with its index under ``data_dir``, synced now."""
    if embedder is None:
        embedder = _shared.setdefault("local", LocalEmbedder())
    retriever = Retriever(KnowledgeIndex(Path(knowledge_dir), Path(data_dir), embedder))
    retriever.refresh(force=True)
    return retriever
