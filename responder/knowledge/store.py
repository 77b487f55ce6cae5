"""The knowledge index's file: one SQLite database per knowledge folder, entries and their terms.

Used only by ``responder/knowledge/index.py``, which decides what to write and when (under its
file lock); this module knows the file's layout. ``index.sqlite`` in the index folder holds:

- ``meta``: how the index was built (layout version, embedding model, its dimension, the
  knowledge folder). A file built any other way is not read: the index starts it afresh.
- ``entries``: one row per knowledge entry (key, content hash, kind, source, title, text, facts
  as JSON, chunk, its number of terms) with its vector as little-endian float32 bytes. Ids are
  never reused (AUTOINCREMENT), so a process holding older rows never mistakes a new row for one.
- ``postings``: the full-text index, one row per term and entry with the term's count there and
  the entry's number of terms (``responder/knowledge/fulltext.py`` says what a term is and how
  BM25 weighs it), searched in one query.

The file is in WAL mode, so daemons sharing the folder go on searching while one of them writes.
Whatever SQLite can't read raises ``sqlite3.DatabaseError``; the index answers by rebuilding.
"""
from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from responder.knowledge import fulltext
from responder.knowledge.folder import Entry

FILE = "index.sqlite"
OWN_FILES = {FILE, f"{FILE}-wal", f"{FILE}-shm", f"{FILE}-journal"}
LAYOUT = "2"  # 1 was a LanceDB table (a folder of .lance files and meta.json)
SCHEMA = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ("CREATE TABLE entries (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,"
     " content_hash TEXT NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL,"
     " facts TEXT NOT NULL, chunk INTEGER NOT NULL, length INTEGER NOT NULL, vector BLOB NOT NULL)"),
    # The entry's length again: a search then never reads the entries' pages (a vector makes
    # them a row or two a page): 44 ms instead of 153 at 100,000 entries (bench/knowledge_speed.py's).
    ("CREATE TABLE postings (term TEXT NOT NULL, entry INTEGER NOT NULL, count INTEGER NOT NULL,"
     " length INTEGER NOT NULL, PRIMARY KEY (term, entry)) WITHOUT ROWID"),
    "CREATE INDEX postings_by_entry ON postings (entry)",
)
VECTOR = np.dtype("<f4")


def is_foreign(folder: Path) -> bool:
    """Whether the folder holds anything but this layout's file (an older index, say)."""
    return any(path.name not in OWN_FILES for path in folder.iterdir())


def connect(folder: Path) -> sqlite3.Connection:
    """A connection to the folder's file, created empty when missing. The index searches on a
    worker thread and serializes every use of a connection itself."""
    db = sqlite3.connect(folder / FILE, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")  # in WAL mode a power cut may lose the last write, not the file
    return db


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def stored_hashes(db: sqlite3.Connection, meta: dict[str, str]) -> tuple[dict[str, str], bool] | None:
    """(content hash by key, whether the file was empty and is new): the tables are created in an
    empty file. None when the file was built another way (layout, embedding model, folder)."""
    meta = {"layout": LAYOUT, **meta}
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        with _transaction(db):
            for statement in SCHEMA:
                db.execute(statement)
            db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
        return {}, True
    if "meta" not in tables or dict(db.execute("SELECT name, value FROM meta")) != meta:
        return None
    return dict(db.execute("SELECT key, content_hash FROM entries")), False


def delete(db: sqlite3.Connection, keys: list[str]) -> None:
    with _transaction(db):
        ids = [(id_,) for key in keys for (id_,) in db.execute("SELECT id FROM entries WHERE key = ?", (key,))]
        db.executemany("DELETE FROM postings WHERE entry = ?", ids)
        db.executemany("DELETE FROM entries WHERE id = ?", ids)


def add(db: sqlite3.Connection, entries: list[Entry], vectors: np.ndarray) -> None:
    """Entries with their vectors (row i of ``vectors`` is ``entries[i]``), in one transaction."""
    with _transaction(db):
        for entry, vector in zip(entries, vectors, strict=True):
            counts = Counter(fulltext.terms(entry.text))
            row = db.execute(
                "INSERT INTO entries (key, content_hash, kind, source, title, text, facts, chunk, length, vector)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.key, entry.content_hash, entry.kind, entry.source, entry.title, entry.text,
                 json.dumps(entry.facts, ensure_ascii=False), entry.chunk, counts.total(),
                 vector.astype(VECTOR).tobytes()))
            db.executemany("INSERT INTO postings VALUES (?, ?, ?, ?)",
                           [(term, row.lastrowid, count, counts.total()) for term, count in counts.items()])


def checkpoint(db: sqlite3.Connection) -> None:
    """Copy what a sync wrote from the WAL into the file itself, without waiting for readers."""
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def load(db: sqlite3.Connection, dim: int) -> tuple[list[Entry], list[str], list[int], np.ndarray, float]:
    """Every entry in the order it was added: (entries, their keys, their ids, their vectors as
    one float32 matrix, their average number of terms). The caller holds the file lock, so no
    one writes meanwhile. Raises ValueError for a vector of another size."""
    [(count,)] = db.execute("SELECT count(*) FROM entries")
    matrix = np.zeros((count, dim), dtype=np.float32)  # filled row by row: never two copies of the vectors
    entries, keys, ids, total = [], [], [], 0
    for row, (id_, key, source, kind, title, text, facts, chunk, length, vector) in enumerate(db.execute(
            "SELECT id, key, source, kind, title, text, facts, chunk, length, vector FROM entries ORDER BY id")):
        if len(vector) != dim * VECTOR.itemsize:
            raise ValueError(f"entry {key!r}: a vector of {len(vector)} bytes, not {dim} float32")
        matrix[row] = np.frombuffer(vector, dtype=VECTOR)
        entries.append(Entry(source=source, kind=kind, title=title, text=text, facts=json.loads(facts),
                             chunk=chunk))
        keys.append(key)
        ids.append(id_)
        total += length
    return entries, keys, ids, matrix, total / count if count else 0.0


def search(db: sqlite3.Connection, asked: Counter[str], entries: int, average_length: float,
           limit: int) -> list[tuple[int, float]]:
    """(entry id, BM25 score), best first, of the entries holding any asked term; ``entries``
    and ``average_length`` describe the index as the caller holds it."""
    marks = ", ".join("?" * len(asked))
    holding = dict(db.execute(f"SELECT term, count(*) FROM postings WHERE term IN ({marks}) GROUP BY term",
                              list(asked)))
    weights = fulltext.term_weights(asked, holding, entries)
    if not weights:
        return []
    a, b = fulltext.length_norm(average_length)
    values = ", ".join(["(?, ?)"] * len(weights))
    return db.execute(
        f"WITH weights (term, weight) AS (VALUES {values})"
        " SELECT p.entry, sum(w.weight * p.count / (p.count + ? + ? * p.length)) AS score"
        " FROM weights w JOIN postings p ON p.term = w.term"
        " GROUP BY p.entry ORDER BY score DESC, p.entry LIMIT ?",
        [*(x for pair in weights.items() for x in pair), a, b, limit]).fetchall()
