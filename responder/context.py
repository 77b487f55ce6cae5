"""What every job and request works with: settings, database, retriever, drafter.

Built once at start-up (``build_context``) by ``run.py`` and by the tests; nothing in here
reads global state, so several contexts (several shops, or a test beside a daemon) can live
in one process.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from responder.db import Database


@dataclass
class Context:
    settings: object
    db: Database
    drafter: object
    retriever: object
    stopping: threading.Event = field(default_factory=threading.Event)


def build_context(settings, *, drafter=None, knowledge_dir: Path | None = None, migrate: bool = True,
                  database_url: str | None = None) -> Context:
    from responder.drafting import make_drafter
    from responder.embeddings import make_embedder
    from responder.retrieve import Retriever
    from responder.index import KnowledgeIndex

    db = Database(database_url or settings.database_url)
    if migrate:
        db.migrate()
    index = KnowledgeIndex(knowledge_dir or settings.knowledge_dir, settings.data_dir, make_embedder(settings))
    retriever = Retriever(index)
    retriever.refresh(force=True)
    return Context(settings=settings, db=db, drafter=drafter or make_drafter(settings), retriever=retriever)
