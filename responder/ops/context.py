"""What every job and request works with: settings, database, retriever, drafter.

Built once at start-up (``build_context``) by ``run.py`` and by the tests; nothing in here
reads global state, so several contexts (several shops, or a test beside a daemon) can live
in one process.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from channels.chat.hub import Hub
from responder.core.db import Database, ensure_writable
from responder.core.locks import job_lock
from responder.core.settings import Settings
from responder.draft.base import Drafter
from responder.knowledge.retrieve import Knowledge
from responder.orders.lookup import Lookup, source_for
from responder.understand.signals import warm_up as warm_signals


@dataclass
class Context:
    settings: Settings
    db: Database
    drafter: Drafter | None      # None: a context that drafts nothing (the owner's commands, tests)
    retriever: Knowledge | None
    orders: Lookup | None = None   # the shop's order data ([orders]), None when not connected
    stopping: threading.Event = field(default_factory=threading.Event)
    chat_hub: Hub = field(default_factory=Hub)  # wakes the chat panels' long polls (channels.chat.hub)


def build_context(settings: Settings, *, drafter=None, knowledge_dir: Path | None = None, migrate: bool = True,
                  database_url: str | None = None) -> Context:
    # start-up: the drafter, the embedding model and the index load only when a context is built
    from responder.draft import make_drafter
    from responder.knowledge.embeddings import make_embedder
    from responder.knowledge.index import KnowledgeIndex
    from responder.knowledge.retrieve import Retriever

    # The index and the secret key live in the data folder even when the database is PostgreSQL.
    ensure_writable(settings.data_dir)
    db = Database(database_url or settings.database_url)
    if migrate:
        # Daemons started together on one PostgreSQL would race to create the same tables.
        with job_lock(db, "migrate", wait=True):
            db.migrate()
    index = KnowledgeIndex(knowledge_dir or settings.knowledge_dir, settings.data_dir, make_embedder(settings),
                           root=index_root(settings))
    retriever = Retriever(index)
    retriever.refresh(force=True)
    warm_signals(settings.signals.languages)  # before any transaction needs them (see responder.understand.signals.warm_up)
    return Context(settings=settings, db=db, drafter=drafter or make_drafter(settings), retriever=retriever,
                   orders=source_for(settings))


def index_root(settings: Settings) -> Path | None:
    """``[knowledge] index_dir`` (relative to the settings file), or None for ``<data_dir>/index``."""
    configured = settings.knowledge.index_dir
    if configured is None or str(configured) in ("", "."):
        return None
    path = Path(configured).expanduser()
    return path if path.is_absolute() else (Path(settings.base_dir) / path).resolve()
