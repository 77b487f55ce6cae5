"""Reads the shop's knowledge folder into entries: FAQ/policy sections and catalog rows.

Runs at start-up and whenever the folder changes; the drafter retrieves from these entries.
The folder format is a contract (see README): ``*.md`` with one entry per ``##`` section,
``catalog.csv`` with one product per row, ``examples.jsonl`` with tone examples. A malformed file
or row is reported with its file and line and the rest still loads; nothing here raises on input.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("deskhand.knowledge")


@dataclass(frozen=True)
class Entry:
    source: str  # faq.md#<heading> or catalog.csv#<sku>
    kind: str    # faq | policy | product | example
    title: str
    text: str
    facts: dict[str, str] = field(default_factory=dict)  # product columns


@dataclass
class Knowledge:
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def of_kind(self, *kinds: str) -> list[Entry]:
        return [e for e in self.entries if e.kind in kinds]


def load_knowledge(folder: Path) -> Knowledge:
    knowledge = Knowledge()
    if not folder.is_dir():
        knowledge.warnings.append(f"{folder}: the knowledge folder does not exist")
        return knowledge
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() == ".md":
            _read_markdown(path, knowledge)
        elif path.name.lower() == "catalog.csv":
            _read_catalog(path, knowledge)
        elif path.name.lower() == "examples.jsonl":
            _read_examples(path, knowledge)
        elif path.name.lower() != "conversations.jsonl":
            knowledge.warnings.append(f"{path.name}: not a knowledge file, ignored")
    for warning in knowledge.warnings:
        log.warning("knowledge: %s", warning)
    return knowledge


def _text(path: Path, knowledge: Knowledge) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        knowledge.warnings.append(f"{path.name}: not UTF-8, read as Windows-1252")
        return data.decode("cp1252", errors="replace")


def _read_markdown(path: Path, knowledge: Knowledge) -> None:
    text = _text(path, knowledge)
    kind = "policy" if "polic" in path.stem.lower() else "faq"
    title_match = re.search(r"^#\s+(.+)$", text, re.M)
    doc_title = title_match.group(1).strip() if title_match else path.stem
    parts = re.split(r"^##\s+(.+)$", text, flags=re.M)
    if len(parts) == 1:  # no sections: the whole document is one entry
        body = re.sub(r"^#\s+.+$", "", text, flags=re.M).strip()
        if body:
            knowledge.entries.append(Entry(f"{path.name}#{doc_title}", kind, doc_title, body))
        return
    for heading, body in zip(parts[1::2], parts[2::2]):
        body = body.strip()
        if body:
            knowledge.entries.append(Entry(f"{path.name}#{heading.strip()}", kind, heading.strip(), body))


def _read_catalog(path: Path, knowledge: Knowledge) -> None:
    reader = csv.DictReader(io.StringIO(_text(path, knowledge)))
    missing = {"sku", "name", "price", "status"} - {(f or "").strip().lower() for f in reader.fieldnames or []}
    if missing:
        knowledge.warnings.append(f"{path.name}: missing required columns {', '.join(sorted(missing))}")
        return
    for row in reader:
        facts = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k and v}
        if not facts.get("sku") or not facts.get("name"):
            knowledge.warnings.append(f"{path.name} line {reader.line_num}: no sku or name, skipped")
            continue
        text = "; ".join(f"{k}: {v}" for k, v in facts.items())
        knowledge.entries.append(Entry(f"{path.name}#{facts['sku']}", "product", facts["name"], text, facts))


def _read_examples(path: Path, knowledge: Knowledge) -> None:
    for number, line in enumerate(_text(path, knowledge).splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            customer, reply = str(item["customer"]), str(item["reply"])
        except (ValueError, KeyError, TypeError) as exc:
            knowledge.warnings.append(f"{path.name} line {number}: not an example ({exc})")
            continue
        knowledge.entries.append(Entry(f"{path.name}#{number}", "example", customer, reply))
