"""Command handlers behind ``run.py`` (except the daemon): each takes settings and parsed args,
prints for a person (or JSON lines for a program) and returns the exit status."""
from __future__ import annotations

import json
import time
from pathlib import Path

from responder.core.settings import Settings
from responder.knowledge.embeddings import make_embedder
from responder.knowledge.index import KnowledgeIndex
from responder.knowledge.retrieve import Retriever
from responder.ops.context import build_context, index_root
from responder.ops.evaluate import check_expectations, load_cases, run_cases


def _retriever(settings: Settings, args):

    folder = Path(args.knowledge).resolve() if getattr(args, "knowledge", None) else settings.knowledge_dir
    return Retriever(KnowledgeIndex(folder, settings.data_dir, make_embedder(settings), root=index_root(settings)))


def cmd_ingest(settings: Settings, args) -> int:
    retriever = _retriever(settings, args)
    started = time.perf_counter()
    report = retriever.refresh(force=True)
    took = time.perf_counter() - started
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(report.counts.items())) or "no entries"
    print(f"{retriever.index.folder}: {counts}")
    print(f"embedded {report.added}, removed {report.removed}, unchanged {report.unchanged}"
          f"{' (index rebuilt)' if report.rebuilt else ''} in {took:.2f} s; knowledge version {report.version}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    if not report.counts:
        print("warning: with no knowledge every message goes to the owner")
    return 0


def cmd_search(settings: Settings, args) -> int:
    retriever = _retriever(settings, args)
    retriever.refresh(force=True)
    kinds = tuple(args.kind) if args.kind else ("faq", "policy", "product")
    hits = retriever.search(args.question, k=args.k, mode=args.mode, kinds=kinds)
    for rank, hit in enumerate(hits, 1):
        if args.json:
            print(json.dumps({"source": hit.source, "kind": hit.kind, "text": hit.text, "score": hit.score,
                              "similarity": hit.similarity}, ensure_ascii=False))
        else:
            snippet = " ".join(hit.text.split())[:110]
            print(f"{rank}. {hit.source}  [{hit.kind}, score {hit.score:.4f}, similarity {hit.similarity:.2f}]\n"
                  f"   {snippet}")
    if not hits and not args.json:
        print("no matches")
    return 0


def _eval_context(settings: Settings):

    # run_cases gives every case its own database; this one is never used, so keep it in memory.
    return build_context(settings, database_url="sqlite:///:memory:", migrate=False)


def cmd_ask(settings: Settings, args) -> int:

    channel = args.channel
    sender = args.sender or {"email": "customer@example.org", "chat": "chat:cli-visitor"}.get(channel, "+15550100000")
    case = {"id": "ask", "channel": channel, "from": sender, "subject": args.subject or "", "turns": [args.text]}
    [result] = run_cases(_eval_context(settings), [case])
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    confidence = "unknown" if result["confidence"] is None else f"{result['confidence']:.2f}"
    print(f"route:      {result['route']}\nconfidence: {confidence}")
    print(f"reasons:    {'; '.join(result['reasons']) or '-'}\nsources:    {', '.join(result['sources']) or '-'}")
    print(f"reply:\n{result['reply'] or '(none)'}")
    return 0


def cmd_eval(settings: Settings, args) -> int:

    path = Path(args.cases) if args.cases else settings.knowledge_dir / "conversations.jsonl"
    if not path.exists():
        print(f"no cases at {path}")
        return 2
    cases = load_cases(path)
    results = run_cases(_eval_context(settings), cases)
    by_case: dict[str, list[dict]] = {}
    for result in results:
        by_case.setdefault(str(result["id"]), []).append(result)
    failed = 0
    for case in cases:
        problems = check_expectations(case, by_case.get(str(case.get("id")), []))
        failed += bool(problems)
        if not args.json:
            turns = by_case.get(str(case.get("id")), [])
            last = turns[-1] if turns else {"route": None, "reply": ""}
            verdict = "FAIL" if problems else ("pass" if case.get("expect") else "-")
            print(f"{verdict:4} {str(case.get('id'))[:22]:22} {str(last['route']):9} "
                  f"{' '.join((last['reply'] or '').split())[:70]}")
            for problem in problems:
                print(f"{'':27} {problem}")
    if args.json:
        for result in results:
            print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"{len(cases) - failed} of {len(cases)} cases pass")
    return 1 if failed else 0


# --- the approval queue: python run.py queue list|show|approve|reject --------------------------
