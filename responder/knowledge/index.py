"""The knowledge index: entries from the folder, embedded once per content hash, in LanceDB.

Runs at start-up, on the refresh job (when a file changed) and on ``run.py ingest``. One LanceDB
table per knowledge folder (``<data_dir>/index/<folder>-<hash>/``) holds every entry with its
vector and a native full-text index. A sync embeds only entries whose content hash changed
(simonw/llm's rule) and deletes entries that left the folder, so a removed product stops being
found at once. The vectors are also kept in memory: at helpdesk scale a flat numpy scan is the
fastest vector search there is (see bench/RESULTS.md). A missing, corrupt or foreign index
(another embedding model) is rebuilt from the folder; the folder is the truth.

Several daemons on one machine share the index folder: a sync holds an exclusive ``flock`` on
``<index>.lock`` beside it, so only one process writes at a time and the next one finds the
entries already embedded (two writers would add the same rows twice, or one would delete the
folder under the other during a rebuild). The lock goes with the process, a killed one included.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha1
from pathlib import Path

import numpy as np

os.environ.setdefault("LANCEDB_LOG", "error")
import lancedb  # noqa: E402
import pyarrow as pa  # noqa: E402
from lancedb.index import FTS  # noqa: E402

from responder.knowledge.folder import Entry, Knowledge, load_knowledge  # noqa: E402

log = logging.getLogger("deskhand.index")
TABLE = "entries"
SCHEMA_VERSION = 1
EMBED_BATCH = 256


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
        self.table = None

    # --- sync ---------------------------------------------------------------------------------

    def sync(self, knowledge: Knowledge | None = None) -> SyncReport:
        """Bring the table in line with the folder; embed only what changed."""
        knowledge = knowledge or load_knowledge(self.folder)
        with self.lock, _exclusive(self.path.with_name(self.path.name + ".lock")):
            report = SyncReport(warnings=list(knowledge.warnings), version=knowledge.version)
            try:
                table, existing, report.rebuilt = self._open()
                self._apply(table, knowledge, existing, report)
            except (ValueError, RuntimeError, OSError, pa.ArrowException) as exc:
                log.warning("knowledge index at %s unreadable (%s); rebuilding from the folder", self.path, exc)
                shutil.rmtree(self.path, ignore_errors=True)
                report = SyncReport(warnings=list(knowledge.warnings), version=knowledge.version, rebuilt=True)
                table, existing, _ = self._open()
                self._apply(table, knowledge, existing, report)
            self.table = table
            self.version, self.warnings = knowledge.version, list(knowledge.warnings)
            for entry in knowledge.entries:
                report.counts[entry.kind] = report.counts.get(entry.kind, 0) + 1
            return report

    def _open(self):
        meta_path = self.path / "meta.json"
        meta = {"schema": SCHEMA_VERSION, "embedder": self.embedder.name, "dim": self.embedder.dim,
                "folder": str(self.folder)}
        rebuilt = False
        if meta_path.exists() and json.loads(meta_path.read_text()) != meta:
            log.info("knowledge index %s was built differently; rebuilding", self.path)
            shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        db = lancedb.connect(str(self.path))
        if TABLE in db.list_tables().tables:
            table = db.open_table(TABLE)
            keys = table.to_arrow().select(["key", "content_hash"]).to_pydict()
            existing = dict(zip(keys["key"], keys["content_hash"]))
        else:
            table = db.create_table(TABLE, schema=self._schema())
            existing, rebuilt = {}, True
        meta_path.write_text(json.dumps(meta))
        return table, existing, rebuilt

    def _schema(self) -> pa.Schema:
        return pa.schema([("key", pa.string()), ("source", pa.string()), ("kind", pa.string()),
                          ("title", pa.string()), ("text", pa.string()), ("facts", pa.string()),
                          ("chunk", pa.int32()), ("content_hash", pa.string()),
                          ("vector", pa.list_(pa.float32(), self.embedder.dim))])

    def _apply(self, table, knowledge: Knowledge, existing: dict[str, str], report: SyncReport) -> None:
        current = {e.key: e for e in knowledge.entries}
        stale = [k for k, h in existing.items() if k not in current or current[k].content_hash != h]
        fresh = [e for k, e in current.items() if existing.get(k) != e.content_hash]
        for start in range(0, len(stale), 500):
            keys = ", ".join("'" + k.replace("'", "''") + "'" for k in stale[start:start + 500])
            table.delete(f"key IN ({keys})")
        for start in range(0, len(fresh), EMBED_BATCH):
            batch = fresh[start:start + EMBED_BATCH]
            vectors = self.embedder.embed([e.text for e in batch])
            table.add(pa.table({
                "key": [e.key for e in batch], "source": [e.source for e in batch],
                "kind": [e.kind for e in batch], "title": [e.title for e in batch],
                "text": [e.text for e in batch], "facts": [json.dumps(e.facts) for e in batch],
                "chunk": pa.array([e.chunk for e in batch], pa.int32()),
                "content_hash": [e.content_hash for e in batch],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()),
                                                            self.embedder.dim)}, schema=self._schema()))
        report.added, report.removed = len(fresh), len([k for k in stale if k not in current])
        report.unchanged = len(current) - len(fresh)
        if stale or fresh or not table.list_indices():
            if table.count_rows():
                table.create_index("text", config=FTS(with_position=False, language="English", stem=True,
                                                      remove_stop_words=True, ascii_folding=True), replace=True)
        self._load_memory(table)

    def _load_memory(self, table) -> None:
        data = table.to_arrow()
        columns = data.select(["key", "source", "kind", "title", "text", "facts", "chunk"]).to_pydict()
        self.entries = [Entry(source=s, kind=k, title=t, text=x, facts=json.loads(f), chunk=c)
                        for s, k, t, x, f, c in zip(columns["source"], columns["kind"], columns["title"],
                                                    columns["text"], columns["facts"], columns["chunk"])]
        self.by_key = {key: i for i, key in enumerate(columns["key"])}
        vectors = data.column("vector").combine_chunks()
        flat = vectors.flatten().to_numpy(zero_copy_only=False) if len(vectors) else np.zeros(0, np.float32)
        self.matrix = np.ascontiguousarray(flat.reshape(-1, self.embedder.dim), dtype=np.float32)

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
        """(row, BM25 score), best first, from LanceDB's native full-text index."""
        words = " ".join(re.findall(r"\w+", query))[:1000]
        if not words or self.table is None or not self.entries:
            return []
        found = self.table.search(words, query_type="fts").select(["key"]).limit(limit).to_list()
        return [(self.by_key[r["key"]], float(r["_score"])) for r in found if r["key"] in self.by_key]
