"""The knowledge index: entries from the folder, embedded once per content hash, kept in SQLite.

Runs at start-up, on the refresh job (when a file changed) and on ``run.py ingest``. One SQLite
file per knowledge folder (``<data_dir>/index/<folder>-<hash>/index.sqlite``, laid out by
``responder/knowledge/store.py``) holds every entry with its vector and its terms for full text.
A sync embeds only entries whose content hash changed (simonw/llm's rule) and deletes entries
that left the folder, so a removed product stops being found at once. The vectors are also kept
in memory: at helpdesk scale a flat numpy scan is the fastest vector search there is (see
bench/RESULTS.md). A missing, corrupt, older-format or foreign index (another embedding model)
is rebuilt from the folder; the folder is the truth.

Several daemons on one machine share the index folder: a sync holds an exclusive ``flock`` on
``<index>.lock`` beside it, so only one process writes at a time and the next one finds the
entries already embedded (two writers would add the same rows twice, or one would delete the
file under the other during a rebuild). The lock goes with the process, a killed one included.
Searching needs no lock: the file is in WAL mode, so the others read on while one writes.
"""
from __future__ import annotations

import fcntl
import logging
import re
import shutil
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha1
from pathlib import Path

import numpy as np

from responder.knowledge import fulltext, store
from responder.knowledge.folder import Entry, Knowledge, load_knowledge

log = logging.getLogger("deskhand.index")
EMBED_BATCH = 256  # entries embedded, then written in one transaction


@dataclass
class SyncReport:
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    rebuilt: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    version: str = ""


def index_path(data_dir: Path, folder: Path, root: Path | None = None) -> Path:
    """The folder's index under ``root`` ([knowledge] index_dir), by default ``<data_dir>/index``."""
    folder = folder.resolve()
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", folder.name).strip("-") or "knowledge"
    return (root or data_dir / "index") / f"{slug}-{sha1(str(folder).encode()).hexdigest()[:10]}"


@contextmanager
def _exclusive(lock_file: Path):
    """Hold an exclusive flock on ``lock_file``, waiting (and saying so) while another process has it."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process to finish updating the knowledge index %s", lock_file.stem)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class KnowledgeIndex:
    def __init__(self, folder: Path, data_dir: Path, embedder, *, root: Path | None = None):
        self.folder = Path(folder).resolve()
        self.path = index_path(Path(data_dir), self.folder, root)
        self.embedder = embedder
        self.lock = threading.RLock()
        self.entries: list[Entry] = []   # row i of ``matrix`` is ``entries[i]``
        self.matrix = np.zeros((0, embedder.dim), dtype=np.float32)
        self.by_key: dict[str, int] = {}
        self.version = ""
        self.warnings: list[str] = []
        self.damaged = False   # the file failed a search: the next sync rebuilds it
        # What full-text searches use, swapped as one by a sync: the connection, the row of each
        # entry id, and the entries' count and average number of terms (BM25's N and avgdl).
        # Searches run on the retriever's threads, one at a time on the connection.
        self._searching: tuple[sqlite3.Connection | None, dict[int, int], int, float] = (None, {}, 0, 0.0)
        self._search_lock = threading.Lock()

    # --- sync ---------------------------------------------------------------------------------

    def sync(self, knowledge: Knowledge | None = None) -> SyncReport:
        """Bring the file in line with the folder; embed only what changed."""
        knowledge = knowledge or load_knowledge(self.folder)
        with self.lock, _exclusive(self.path.with_name(self.path.name + ".lock")):
            report = SyncReport(warnings=list(knowledge.warnings), version=knowledge.version)
            db = None
            try:
                db, existing, report.rebuilt = self._open(fresh=self.damaged)
                self._apply(db, knowledge, existing, report)
            except (sqlite3.DatabaseError, ValueError, OSError) as exc:
                if db is not None:
                    db.close()
                log.warning("knowledge index at %s unreadable (%s); rebuilding from the folder", self.path, exc)
                report = SyncReport(warnings=list(knowledge.warnings), version=knowledge.version, rebuilt=True)
                db, existing, _ = self._open(fresh=True)
                self._apply(db, knowledge, existing, report)
            self.damaged = False
            self.version, self.warnings = knowledge.version, list(knowledge.warnings)
            for entry in knowledge.entries:
                report.counts[entry.kind] = report.counts.get(entry.kind, 0) + 1
            return report

    def _open(self, fresh: bool = False) -> tuple[sqlite3.Connection, dict[str, str], bool]:
        """The file's connection, the content hashes it holds by key, and whether it is new. An
        index from an older version (LanceDB's folder) or built another way starts afresh."""
        if self.path.is_dir() and (fresh or store.is_foreign(self.path)):
            log.info("knowledge index %s is from another version or unreadable; rebuilding", self.path)
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        meta = {"embedder": self.embedder.name, "dim": str(self.embedder.dim), "folder": str(self.folder)}
        db = store.connect(self.path)
        try:
            found = store.stored_hashes(db, meta)
            if found is None:
                log.info("knowledge index %s was built differently; rebuilding", self.path)
                db.close()
                shutil.rmtree(self.path)
                self.path.mkdir(parents=True)
                db = store.connect(self.path)
                found = store.stored_hashes(db, meta)
        except BaseException:
            db.close()
            raise
        return db, *found

    def _apply(self, db: sqlite3.Connection, knowledge: Knowledge, existing: dict[str, str],
               report: SyncReport) -> None:
        current = {e.key: e for e in knowledge.entries}
        stale = [k for k, h in existing.items() if k not in current or current[k].content_hash != h]
        fresh = [e for k, e in current.items() if existing.get(k) != e.content_hash]
        if stale:
            store.delete(db, stale)
        for start in range(0, len(fresh), EMBED_BATCH):
            batch = fresh[start:start + EMBED_BATCH]
            store.add(db, batch, self.embedder.embed([e.text for e in batch]))
        if stale or fresh:
            store.checkpoint(db)
        report.added, report.removed = len(fresh), len([k for k in stale if k not in current])
        report.unchanged = len(current) - len(fresh)
        entries, keys, ids, matrix, average_length = store.load(db, self.embedder.dim)
        with self._search_lock:
            previous = self._searching[0]
            self.entries, self.matrix = entries, matrix
            self.by_key = {key: row for row, key in enumerate(keys)}
            self._searching = (db, {id_: row for row, id_ in enumerate(ids)}, len(entries), average_length)
        if previous is not None and previous is not db:
            previous.close()

    def close(self) -> None:
        """Let go of the file (the entries stay in memory; full text finds nothing until a sync)."""
        with self._search_lock:
            db, self._searching = self._searching[0], (None, {}, 0, 0.0)
        if db is not None:
            db.close()

    # --- search -------------------------------------------------------------------------------

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        """Cosine similarity of every row to ``vector`` (a flat scan: vectors are normalised)."""
        return self.matrix @ vector.astype(np.float32)

    @staticmethod
    def top(scores: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """(row, score) of the ``limit`` best scores, best first."""
        if not len(scores):
            return []
        limit = min(limit, len(scores))
        top = np.argpartition(-scores, limit - 1)[:limit]
        return [(int(i), float(scores[i])) for i in top[np.argsort(-scores[top])]]

    def text_search(self, query: str, limit: int) -> list[tuple[int, float]]:
        """(row, BM25 score), best first, of the entries sharing a term with ``query``
        (``responder.knowledge.fulltext`` says what a term is and how it weighs). An unreadable
        index finds nothing, and is rebuilt at the next sync, rather than failing the message."""
        asked = fulltext.question_terms(query)
        with self._search_lock:
            db, rows, count, average_length = self._searching
            if not asked or db is None or not rows:
                return []
            try:
                found = store.search(db, asked, count, average_length, limit)
            except sqlite3.DatabaseError as exc:
                log.warning("the knowledge index's full text can't be read (%s); searching by meaning only", exc)
                # A damaged file is rebuilt; a busy or full disk is not a reason to re-embed everything.
                self.damaged |= getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
                return []
        # Rows another daemon added since this one last synced are not in memory yet.
        return [(rows[id_], score) for id_, score in found if id_ in rows]
