"""The labelled retrieval questions (bench/questions.jsonl) are well formed and point at real entries.

The knowledge folders are read with a tiny reader of their own (``## `` headings of ``*.md`` and
the ``sku`` column of ``catalog.csv``), so a label is checked against the files, not against the
code under test. The harbor store lives beside the clone and is skipped when it is missing.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "bench" / "questions.jsonl"
STORES = {
    "sample": ROOT / "knowledge",
    "harbor": ROOT.parent / "shared" / "eval" / "harbor" / "knowledge",
}
MIN_TOTAL = 130
MIN_PER_STORE = 60


def read_questions() -> list[tuple[int, dict]]:
    items = []
    for number, line in enumerate(QUESTIONS.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            items.append((number, json.loads(line)))
    return items


def sections(folder: Path) -> set[str]:
    """``<file>.md#<heading>`` for every ``## `` heading in the folder's Markdown files."""
    found = set()
    for path in sorted(folder.glob("*.md")):
        for heading in re.findall(r"^##\s+(.+?)\s*$", path.read_text(encoding="utf-8-sig"), re.M):
            found.add(f"{path.name}#{heading}")
    return found


def products(folder: Path) -> set[str]:
    path = folder / "catalog.csv"
    if not path.is_file():
        return set()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return {f"catalog.csv#{row['sku'].strip()}" for row in csv.DictReader(handle) if (row.get("sku") or "").strip()}


def store_param(store: str):
    marks = []
    if not STORES[store].is_dir():
        marks.append(pytest.mark.skip(reason=f"{STORES[store]} not found (it lives beside the clone)"))
    return pytest.param(store, marks=marks, id=store)


ALL_STORES = [store_param(store) for store in STORES]


def test_every_line_parses_with_a_valid_store_question_and_expected_sources():
    lines = [line for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        item = json.loads(line)
        assert set(item) == {"store", "question", "expected"}, f"line {number}: keys {sorted(item)}"
        assert item["store"] in STORES, f"line {number}: unknown store {item['store']!r}"
        assert isinstance(item["question"], str) and item["question"].strip(), f"line {number}: empty question"
        expected = item["expected"]
        assert isinstance(expected, list) and expected, f"line {number}: expected must be a non-empty list"
        assert all(isinstance(s, str) and s for s in expected), f"line {number}: expected holds non-strings"
        assert len(set(expected)) == len(expected), f"line {number}: duplicate expected source"


def test_enough_questions_in_total_and_per_store():
    items = [item for _, item in read_questions()]
    assert len(items) >= MIN_TOTAL
    for store in STORES:
        assert sum(item["store"] == store for item in items) >= MIN_PER_STORE, store


def test_no_question_is_asked_twice_of_one_store():
    seen = set()
    for number, item in read_questions():
        key = (item["store"], " ".join(item["question"].lower().split()))
        assert key not in seen, f"line {number}: duplicate question {item['question']!r}"
        seen.add(key)


@pytest.mark.parametrize("store", ALL_STORES)
def test_every_expected_source_exists_in_its_store(store):
    folder = STORES[store]
    known = sections(folder) | products(folder)
    assert known, f"{folder}: no sections or products found"
    wrong = [(number, source) for number, item in read_questions() if item["store"] == store
             for source in item["expected"] if source not in known]
    assert not wrong, f"expected sources not in {folder}: {wrong}"


@pytest.mark.parametrize("store", ALL_STORES)
def test_every_faq_and_policy_section_is_the_answer_to_some_question(store):
    answered = {source for _, item in read_questions() if item["store"] == store for source in item["expected"]}
    unanswered = sorted(sections(STORES[store]) - answered)
    assert not unanswered, f"{store}: sections no question expects: {unanswered}"


@pytest.mark.parametrize("store", ALL_STORES)
def test_most_products_are_asked_about(store):
    answered = {source for _, item in read_questions() if item["store"] == store for source in item["expected"]}
    catalog = products(STORES[store])
    assert len(catalog & answered) >= 0.75 * len(catalog), f"{store}: products never asked about: " \
                                                           f"{sorted(catalog - answered)}"
