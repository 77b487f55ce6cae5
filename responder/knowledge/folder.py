"""Reads the shop's knowledge folder into entries: FAQ and policy sections, products, tone examples.

Where it sits: first in the knowledge flow. ``load_knowledge`` runs at start-up, on the refresh
job when a file in the folder changed, on ``run.py ingest`` and when the catalog feed is checked;
``responder/knowledge/index.py`` embeds what it returns (once per ``Entry.content_hash``), retrieval ranks
it, and a draft records ``Knowledge.version`` as what it was drafted from. It is pure: it reads
files and returns data, with no database and no index, and it never raises on bad input: every
problem is a warning naming the file (and the line, where there is one) and the rest still loads.

The folder contract:

- ``*.md``: FAQ and policy documents, kind ``policy`` when the file name contains one of
  ``POLICY_WORDS`` (policies.md, returns.md, shipping-policy.md, terms.md ...), ``faq``
  otherwise. The ``#`` title names the document; each ``##`` section is one entry (heading =
  title, the text under it = answer; ``###`` subsections stay inside it). Text between a ``#``
  title and the first ``##`` is an entry titled by that ``#``. A document with no ``##`` is one
  entry titled by its ``#`` title or file name. Sections longer than ``CHUNK_CHARS`` are split
  into overlapping chunks on paragraph or sentence boundaries; every chunk's text starts with its
  heading (``text = heading + "\\n" + chunk``), and so does every unsplit section's.
- ``*.csv``: ``catalog.csv`` in our columns, or any Shopify product export (see
  ``responder/knowledge/catalog.py``); other CSV files are ignored with a warning.
- ``examples.jsonl``: ``{"customer": ..., "reply": ...}`` tone examples, one per line (text =
  customer + "\\n" + reply).
- ``conversations.jsonl`` (the owner's regression cases) and ``orders.csv`` (customers' orders, read
  only by ``responder.orders`` for the order's own customer) are skipped silently; anything else, a
  folder, a hidden file, a file over ``MAX_BYTES``, is ignored with a warning.

Files may be UTF-8 (with or without a BOM) with any line endings. Other encodings are detected
with charset-normalizer (preferring, on a near-tie, the Windows code page of the language it
found) and converted, with a warning naming the encoding; UTF-8 with a few stray bytes stays
UTF-8; a file nothing decodes is skipped with a warning naming its first bad line. Memory and
time are linear in the file size (a 10 MB document: about 0.3 s), and files over ``MAX_BYTES``
are not read at all.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import charset_normalizer

from responder.knowledge import catalog, products

log = logging.getLogger("deskhand.knowledge")
KINDS = ("faq", "policy", "product", "example")
POLICY_WORDS = ("polic", "return", "refund", "terms", "conditions", "warrant", "guarantee", "privacy", "exchange",
                "legal", "cancellation")
CHUNK_CHARS = 1200          # a section longer than this is split ...
OVERLAP_CHARS = 200         # ... into chunks that repeat about this much of the previous one
MAX_BYTES = 50 * 1024 * 1024
CODE_PAGES = {  # what Excel or Notepad on Windows writes for text in these languages
    "cp1250": {"Czech", "Slovak", "Polish", "Hungarian", "Croatian", "Slovene", "Romanian", "Albanian"},
    "cp1251": {"Russian", "Ukrainian", "Bulgarian", "Serbian", "Macedonian", "Belarusian", "Kazakh"},
    "cp1253": {"Greek"}, "cp1254": {"Turkish"}, "cp1255": {"Hebrew"}, "cp1256": {"Arabic", "Farsi"},
    "cp1257": {"Lithuanian", "Latvian", "Estonian"}, "cp1258": {"Vietnamese"},
}
WESTERN = {"English", "French", "German", "Spanish", "Portuguese", "Italian", "Dutch", "Danish", "Norwegian",
           "Swedish", "Finnish", "Icelandic", "Catalan", "Indonesian", "Malay"}
MAX_WARNINGS_PER_FILE = 30
# A code fence, or a # / ## heading (### stays inside its section).
MARKUP = re.compile(r"^ {0,3}(?:(?P<fence>`{3,}|~{3,}).*"
                    r"|(?P<hashes>#{1,2})(?:[ \t]+(?P<title>.*?))?(?:[ \t]+#+)?[ \t]*)$", re.M)


@dataclass(frozen=True)
class Entry:
    source: str          # faq.md#<section heading>, catalog.csv#<sku>, examples.jsonl#<line>
    kind: str            # faq | policy | product | example
    title: str           # section heading / product name / the example's customer text
    text: str            # the searchable text: heading + "\n" + body, a product's facts as one line
    facts: dict[str, str] = field(default_factory=dict)  # products: normalized columns; else {}
    chunk: int = 0       # index of the chunk within a long section (0 for unsplit)

    @property
    def key(self) -> str:
        """Unique within a folder."""
        return f"{self.source}@{self.chunk}"

    @cached_property
    def content_hash(self) -> str:
        payload = [self.kind, self.source, self.chunk, self.title, self.text, sorted(self.facts.items())]
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()

    def __hash__(self) -> int:  # facts is a dict, so the generated hash would fail
        return hash((self.key, self.content_hash))


@dataclass
class Knowledge:
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def of_kind(self, *kinds: str) -> list[Entry]:
        return [e for e in self.entries if e.kind in kinds]

    @property
    def version(self) -> str:
        """Short hash over every entry's content hash: identifies what a draft was drafted from."""
        hashes = "\n".join(sorted(e.content_hash for e in self.entries))
        return hashlib.sha256(hashes.encode()).hexdigest()[:12]


def load_knowledge(folder: Path) -> Knowledge:
    knowledge = Knowledge()
    folder = Path(folder)
    try:
        paths = sorted(folder.iterdir(), key=lambda p: p.name) if folder.is_dir() else None
    except OSError as exc:
        knowledge.warnings.append(f"{folder}: the knowledge folder cannot be read ({exc.strerror or exc})")
        paths = []
    if paths is None:
        what = "is not a folder" if folder.exists() else "does not exist"
        knowledge.warnings.append(f"{folder}: the knowledge folder {what}")
    skus: dict[str, str] = {}
    for path in paths or []:
        before = len(knowledge.warnings)
        try:
            knowledge.entries.extend(_read_file(path, knowledge.warnings, skus))
        except OSError as exc:
            knowledge.warnings.append(f"{path.name}: cannot be read ({exc.strerror or exc}); ignored")
        except Exception as exc:  # noqa: BLE001 - a reader bug must not take the whole folder down
            log.exception("knowledge: reading %s failed", path)
            knowledge.warnings.append(f"{path.name}: could not be read ({type(exc).__name__}: {exc}); ignored")
        if len(knowledge.warnings) - before > MAX_WARNINGS_PER_FILE:
            more = len(knowledge.warnings) - before - MAX_WARNINGS_PER_FILE
            del knowledge.warnings[before + MAX_WARNINGS_PER_FILE:]
            knowledge.warnings.append(f"{path.name}: {more} more problems not listed")
    if not knowledge.entries:
        knowledge.warnings.append(f"{folder}: no knowledge entries, so the bot will route every message to the owner")
    for warning in knowledge.warnings:
        log.warning("knowledge: %s", warning)
    return knowledge


def markdown_kind(stem: str) -> str:
    return "policy" if any(word in stem.lower() for word in POLICY_WORDS) else "faq"


def _read_file(path: Path, warnings: list[str], skus: dict[str, str]) -> list[Entry]:
    name, lower, suffix = path.name, path.name.lower(), path.suffix.lower()
    if lower in ("conversations.jsonl", "orders.csv", "shop.html") or \
            (lower.startswith(".catalog-") and lower.endswith(".tmp")):
        # regression cases, read elsewhere / customers' orders (responder.orders), never knowledge
        # anyone may retrieve / the sample shop's page with the chat widget (responder.web.chat_api) /
        # the catalog feed writing its next file
        return []
    if name.startswith("."):
        warnings.append(f"{name}: hidden file, ignored")
    elif path.is_dir():
        warnings.append(f"{name}: a folder, ignored (only files directly in the knowledge folder are read)")
    elif not path.is_file():
        warnings.append(f"{name}: not a regular file, ignored")
    elif suffix not in (".md", ".csv") and lower != "examples.jsonl":
        hint = " (FAQ and policies go in .md files)" if suffix in (".txt", ".markdown") else ""
        warnings.append(f"{name}: not a knowledge file, ignored{hint}")
    elif path.stat().st_size > MAX_BYTES:
        warnings.append(f"{name}: larger than {MAX_BYTES // 2**20} MB, ignored")
    else:
        text, note = _decode(path.read_bytes())
        if text is None:
            warnings.append(f"{name}: {note}; ignored")
            return []
        kind = catalog.sniff(text) if suffix == ".csv" else None
        if suffix == ".csv" and kind is None and lower != "catalog.csv":
            warnings.append(f"{name}: not a knowledge file (neither catalog columns nor a Shopify export), ignored")
            return []
        if note:
            warnings.append(f"{name}: {note}")
        if suffix == ".md":
            return _read_markdown(name, text, markdown_kind(path.stem), warnings)
        if suffix == ".csv":
            return [Entry(f"{name}#{facts['sku']}", "product", facts["name"], catalog.product_text(facts), facts)
                    for _, facts in products.read_products(name, text, warnings, skus)]
        return _read_examples(name, text, warnings)
    return []


def _decode(data: bytes) -> tuple[str | None, str]:
    """(text, note): UTF-8 as is (BOM dropped); otherwise the detected encoding, noted; None if none fits."""
    try:
        return _newlines(data.decode("utf-8-sig")), ""
    except UnicodeDecodeError as exc:
        bad = exc.start
    loose = data.decode("utf-8-sig", errors="replace")
    if b"\x00" not in data and len(re.findall("[^\x00-\x7f\ufffd]", loose)) > loose.count("\ufffd"):
        line = data.count(b"\n", 0, bad) + 1  # UTF-8 with a few stray bytes, say a pasted Windows-1252 "€"
        return _newlines(loose), f"not valid UTF-8 from line {line}; unreadable characters replaced"
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is not None:  # short texts give near-ties: take the Windows code page of the language found
        home = next((page for page, languages in CODE_PAGES.items() if best.language in languages), "")
        home = home or ("cp1252" if best.language in WESTERN or best.language == "Unknown" else "")
        best = next((m for m in matches if home in m.could_be_from_charset and m.chaos <= best.chaos + 0.15), best)
    if best is None or (b"\x00" in data and not best.encoding.startswith("utf")):
        bad = data.find(b"\x00") if b"\x00" in data else bad
        line = data.count(b"\n", 0, bad) + 1
        return None, f"cannot be decoded: not UTF-8 and no other encoding fits (first bad line {line})"
    encoding = "cp1252" if "cp1252" in best.could_be_from_charset else best.encoding
    try:
        return _newlines(data.decode(encoding)), f"not UTF-8; converted from {encoding}"
    except (UnicodeDecodeError, LookupError):
        text = data.decode(best.encoding, errors="replace")
        return _newlines(text), f"not UTF-8; converted from {best.encoding}, unreadable characters replaced"


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")


def _read_markdown(name: str, text: str, kind: str, warnings: list[str]) -> list[Entry]:
    begin = 0
    if text.startswith("---\n") and (end := text.find("\n---\n", 4, 20_000)) > 0:
        begin = end + 5  # YAML front matter
    blocks = [(0, "", begin, begin)]  # (heading level, heading, where the heading starts, where its body starts)
    fence = ""
    for match in MARKUP.finditer(text, begin):  # one regex pass; bodies are slices: fast on a 10 MB document
        if match.group("fence"):
            fence = "" if fence and match.group("fence").startswith(fence) else fence or match.group("fence")[:3]
        elif not fence:
            heading = (match.group("title") or "").strip()
            blocks.append((len(match.group("hashes")), heading, match.start(), match.end()))
    ends = [b[2] for b in blocks[1:]] + [len(text)]
    titles = [b for b in blocks if b[0] == 1 and b[1]]
    doc_title = titles[0][1] if titles else name.rsplit(".", 1)[0]
    if not any(b[0] == 2 for b in blocks):  # no sections: the whole document is one entry
        body = text[begin:titles[0][2]] + text[titles[0][3]:] if titles else text[begin:]
        if not body.strip():
            warnings.append(f"{name}: no text, nothing read")
        return _section_entries(name, kind, doc_title, body, set())
    entries: list[Entry] = []
    used: set[str] = set()
    line, counted = 1, 0
    for (level, heading, start, body_start), body_end in zip(blocks, ends, strict=True):
        body = text[body_start:body_end]
        if level == 2 and not (heading and body.strip()):
            line, counted = line + text.count("\n", counted, start), start
            what = f"section {heading!r} has no text" if heading else "a ## heading with no text"
            warnings.append(f"{name} line {line}: {what}; ignored")
        else:
            entries += _section_entries(name, kind, heading or doc_title, body, used)
    return entries


def _section_entries(name: str, kind: str, title: str, body: str, used: set[str]) -> list[Entry]:
    body = body.strip()
    if not body:
        return []
    source, n = f"{name}#{title}", 1
    while source in used:  # the same heading twice in one file: keep both, under distinct sources
        n += 1
        source = f"{name}#{title} ({n})"
    used.add(source)
    return [Entry(source, kind, title, f"{title}\n{chunk}", chunk=i) for i, chunk in enumerate(split_text(body))]


def split_text(body: str, size: int = CHUNK_CHARS, overlap: int = OVERLAP_CHARS) -> list[str]:
    """Chunks of at most ``size`` characters, cut at a paragraph, sentence or word break, each
    repeating about ``overlap`` characters of the one before (from a sentence start where possible).
    Linear in the length of ``body``: a 10 MB document costs one pass."""
    chunks, start = [], 0
    while len(body) - start > size:
        low, high = start + size // 2, start + size
        cut = body.rfind("\n\n", low, high) + 2
        if cut < 2:
            cut = max(body.rfind(mark, low, high) + len(mark) for mark in (". ", "! ", "? ", ".\n", "!\n", "?\n", "\n"))
        if cut <= low:
            cut = body.rfind(" ", low, high) + 1 or high
        chunks.append(body[start:cut].strip())
        back = cut - overlap
        starts = [p + len(mark) for mark in (". ", "! ", "? ", "\n") if (p := body.find(mark, back, cut - 2)) >= 0]
        start = min(starts) if starts else (body.find(" ", back, cut - 1) + 1 or back)
    chunks.append(body[start:].strip())
    return [c for c in chunks if c]


def _read_examples(name: str, text: str, warnings: list[str]) -> list[Entry]:
    entries = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            warnings.append(f"{name} line {number}: not valid JSON ({getattr(exc, 'msg', exc)}); skipped")
            continue
        customer, reply = (item.get("customer"), item.get("reply")) if isinstance(item, dict) else (None, None)
        if not (isinstance(customer, str) and customer.strip() and isinstance(reply, str) and reply.strip()):
            warnings.append(f'{name} line {number}: needs non-empty "customer" and "reply" strings; skipped')
            continue
        title = " ".join(customer.split())
        entries.append(Entry(f"{name}#{number}", "example", title, f"{title}\n{reply.strip()}"))
    return entries
