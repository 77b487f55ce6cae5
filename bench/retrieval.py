"""Retrieval benchmark: labelled customer questions against the knowledge index.

Runs every question of ``bench/questions.jsonl`` through ``responder.knowledge.retrieve`` in the three
modes (``hybrid``, ``fts``, ``vector``) and reports recall@1, recall@3 and the median query
latency per store and overall. A question counts as recalled at k when any of its expected
sources is among the first k hits. The index is built in a temporary data directory, so
``data/`` is never touched; embeddings are local and offline.

    python bench/retrieval.py                  # table for every store
    python bench/retrieval.py --store thread   # a held-out store (questions from its eval cases)
    python bench/retrieval.py --store sample   # one store
    python bench/retrieval.py --misses         # also list the hybrid misses (recall@3)
    python bench/retrieval.py --json           # the same numbers as JSON

The public sample store lives beside the clone (``../shared/eval/harbor/knowledge``); when it is
missing its questions are skipped with a message.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

QUESTIONS = ROOT / "bench" / "questions.jsonl"
STORES = {
    "sample": ROOT / "knowledge",
    "harbor": ROOT.parent / "shared" / "eval" / "harbor" / "knowledge",
    # Held out: never used to tune retrieval. Their questions come from the stores' eval cases
    # (``held_out_questions``), labelled by which entries hold every fact the case requires.
    "thread": ROOT.parent / "shared" / "eval" / "thread" / "knowledge",
    "hearth": ROOT.parent / "shared" / "eval" / "hearth" / "knowledge",
}
HELD_OUT = ("thread", "hearth")
MODES = ("hybrid", "fts", "vector")
KS = (1, 3)


def load_questions(path: Path = QUESTIONS) -> list[dict]:
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            item = json.loads(line)
            item["line"] = number
            questions.append(item)
    return questions


def held_out_questions(store: str, retriever) -> list[dict]:
    """Questions from ``../shared/eval/<store>/cases.jsonl``: each single-question case the shop can
    answer, expecting the knowledge entries whose text matches every fact (``include`` regex) its
    reply must carry. A case no single entry answers (several questions at once) is left out."""
    import re

    from channels.email.quotes import extract_new_text

    cases = STORES[store].parent / "cases.jsonl"
    if not cases.is_file():
        return []
    entries = retriever.index.entries
    out = []
    for number, line in enumerate(cases.read_text(encoding="utf-8").splitlines(), 1):
        case = json.loads(line) if line.strip() else {}
        expect, turns = case.get("expect", {}), case.get("turns", [])
        if not expect.get("answerable") or len(turns) != 1 or not isinstance(turns[0], str) or not expect.get("include"):
            continue
        sources = [e.source for e in entries if e.kind != "example" and all(
            re.search(x, e.text + " " + " ".join(map(str, e.facts.values())), re.I | re.M) for x in expect["include"])]
        if sources:
            text = extract_new_text(turns[0])  # as the pipeline does: the new words, not the quoted email
            question = f"{case.get('subject') or ''}\n{text}" if len(text) < 40 else text
            out.append({"store": store, "question": question.strip(), "expected": sorted(set(sources)),
                        "line": number})
    return out


def run_store(retriever, questions: list[dict]) -> dict:
    """Per mode: hits at 1 and 3, latencies (ms), and the misses at 3."""
    retriever.search("warm-up question", k=3, mode="hybrid")
    results = {}
    for mode in MODES:
        hits = {k: 0 for k in KS}
        latencies, misses = [], []
        for item in questions:
            started = time.perf_counter()
            got = [hit.source for hit in retriever.search(item["question"], k=max(KS), mode=mode)]
            latencies.append((time.perf_counter() - started) * 1000)
            expected = set(item["expected"])
            for k in KS:
                if expected & set(got[:k]):
                    hits[k] += 1
            if not expected & set(got[:3]):
                misses.append({"store": item["store"], "line": item["line"], "question": item["question"],
                               "expected": item["expected"], "got": got[:3]})
        results[mode] = {"hits": hits, "latencies": latencies, "misses": misses}
    return results


def summarize(n: int, raw: dict) -> dict:
    return {
        "questions": n,
        "modes": {mode: {**{f"recall@{k}": round(r["hits"][k] / n, 4) if n else 0.0 for k in KS},
                         "median_ms": round(statistics.median(r["latencies"]), 2) if r["latencies"] else 0.0}
                  for mode, r in raw.items()},
    }


def merge(raws: list[dict]) -> dict:
    merged = {}
    for mode in MODES:
        merged[mode] = {"hits": {k: sum(r[mode]["hits"][k] for r in raws) for k in KS},
                        "latencies": [x for r in raws for x in r[mode]["latencies"]],
                        "misses": [m for r in raws for m in r[mode]["misses"]]}
    return merged


def print_table(report: dict) -> None:
    rows = [(name, summary) for name, summary in report["stores"].items()]
    if report.get("overall"):
        rows.append(("overall", report["overall"]))
    header = f"{'store':<8} {'n':>4}  {'mode':<7} {'recall@1':>8} {'recall@3':>8} {'median ms':>10}"
    print(header)
    print("-" * len(header))
    for name, summary in rows:
        for mode in MODES:
            m = summary["modes"][mode]
            print(f"{name:<8} {summary['questions']:>4}  {mode:<7} {m['recall@1']:>8.3f} {m['recall@3']:>8.3f} "
                  f"{m['median_ms']:>10.1f}")
        print()


def print_misses(misses: list[dict], mode: str) -> None:
    print(f"misses at 3 ({mode}): {len(misses)}")
    for miss in misses:
        print(f"- [{miss['store']} line {miss['line']}] {miss['question'][:160]}")
        print(f"    expected: {', '.join(miss['expected'])}")
        print(f"    got:      {', '.join(miss['got']) or '(nothing)'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=sorted(STORES), help="run one store only")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--misses", action="store_true", help="list the questions missed at 3")
    parser.add_argument("--misses-mode", choices=MODES, default="hybrid",
                        help="which mode's misses --misses lists (default hybrid)")
    parser.add_argument("--questions", type=Path, default=QUESTIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from responder.knowledge.retrieve import open_retriever

    questions = load_questions(args.questions)
    stores = [args.store] if args.store else list(STORES)
    report: dict = {"stores": {}, "skipped": {}}
    raws = []
    with tempfile.TemporaryDirectory(prefix="deskhand-bench-") as tmp:
        for store in stores:
            folder = STORES[store]
            selected = [q for q in questions if q["store"] == store]
            if not folder.is_dir():
                reason = f"knowledge folder {folder} not found"
                report["skipped"][store] = reason
                print(f"skipping store {store!r}: {reason}", file=sys.stderr)
                continue
            started = time.perf_counter()
            retriever = open_retriever(folder, Path(tmp) / store)
            report.setdefault("index_s", {})[store] = round(time.perf_counter() - started, 2)
            if store in HELD_OUT:
                selected = held_out_questions(store, retriever)
            if not selected:
                report["skipped"][store] = "no questions"
                continue
            raw = run_store(retriever, selected)
            raws.append(raw)
            report["stores"][store] = summarize(len(selected), raw)
    if raws:
        merged = merge(raws)
        report["overall"] = summarize(sum(s["questions"] for s in report["stores"].values()), merged)
        misses = merged[args.misses_mode]["misses"]
    else:
        report["overall"] = None
        misses = []
    if args.json:
        if args.misses:
            report["misses"] = {"mode": args.misses_mode, "items": misses}
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        if not raws:
            print("no store to benchmark")
        else:
            print_table(report)
            if args.misses:
                print_misses(misses, args.misses_mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
