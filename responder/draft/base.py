"""The drafting interface: a request in, a proposed reply with its confidence out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Turn:
    direction: str  # in | out
    text: str


@dataclass(frozen=True)
class DraftRequest:
    text: str            # the customer's new text (quoted history already removed)
    subject: str = ""
    channel: str = "email"
    customer_name: str = ""
    history: tuple[Turn, ...] = ()
    hits: tuple = ()     # retrieve.Hit, best first: the only facts a reply may use
    knowledge_empty: bool = False
    # In-stock products of the same kind as a discontinued one the question names (catalog rows),
    # to offer instead (``catalog.alternatives``).
    alternatives: tuple[dict, ...] = ()
    # Stems of the words the shop's product names use (``understand.question.goods_words``).
    goods: frozenset[str] = frozenset()


@dataclass
class DraftResult:
    reply: str                    # the body, without greeting or signature (the channel adds those)
    confidence: float | None      # 0..1; None means unknown, which never auto-sends
    sources: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why confidence is low, in plain words
    backend: str = ""


class Drafter(Protocol):
    """A drafting backend (``responder.draft.BACKENDS``): the offline one, the OpenAI-compatible one,
    or a test's double; the pipeline asks nothing else of it."""
    name: str
    wants_examples: bool  # True: the pipeline adds a few tone examples to the hits

    @property
    def offline(self) -> "Drafter":
        """The drafter that answers without a model, used when today's budget is spent (itself
        for the offline drafter)."""
        ...

    def draft(self, request: DraftRequest) -> DraftResult: ...
