"""Prepared queries: what ``Retriever.prepare`` computed ahead for the process job's batches.

``responder.ops.prepare`` hands the retriever a batch of questions before their messages are
routed; the retriever embeds them in one model call and starts their full-text searches, and
keeps the results here until ``Retriever.search`` asks for them, message by message.
"""
from __future__ import annotations

import threading


class Prepared:
    """What ``Retriever.prepare`` computed for the last few batches: vectors by text (the
    embedding model's, whatever the index version) and full-text searches by query, each for the
    index version it ran on. Older batches drop out; anything not prepared is computed as usual."""
    KEEP = 512  # texts: a few batches' worth (the one being routed and the one being prepared)

    def __init__(self) -> None:
        self._vectors: dict[str, object] = {}
        self._searches: dict[str, tuple[str, object]] = {}
        self._lock = threading.Lock()

    def add(self, vectors: dict, searches: dict, version: str) -> None:
        with self._lock:
            self._vectors.update(vectors)
            self._searches.update((query, (version, future)) for query, future in searches.items())
            for kept in (self._vectors, self._searches):
                for old in list(kept)[:max(0, len(kept) - self.KEEP)]:  # dicts keep insertion order
                    del kept[old]

    def missing(self, texts: dict, searches: dict, version: str) -> tuple[dict, dict]:
        """Of these, the texts and searches not prepared yet (a batch prepared ahead of a run
        that stopped at its limit is the next run's first batch)."""
        with self._lock:
            return ({t: None for t in texts if t not in self._vectors},
                    {q: None for q in searches if self._searches.get(q, ("",))[0] != version})

    def vectors(self, embedder, texts: list[str]):
        with self._lock:
            found = [self._vectors.get(t) for t in texts]
        return embedder.embed(texts) if any(v is None for v in found) else found

    def text_hits(self, query: str, version: str):
        with self._lock:
            ran_on, future = self._searches.get(query, ("", None))
        return future if future is not None and ran_on == version else None
