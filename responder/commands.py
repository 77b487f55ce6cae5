"""Command handlers behind ``run.py`` (except the daemon): each takes settings and parsed args,
prints for a person (or JSON lines for a program) and returns the exit status."""
from __future__ import annotations

import json
import time
from pathlib import Path


def _retriever(settings, args):
    from responder.embeddings import make_embedder
    from responder.index import KnowledgeIndex
    from responder.retrieve import Retriever

    folder = Path(args.knowledge).resolve() if getattr(args, "knowledge", None) else settings.knowledge_dir
    return Retriever(KnowledgeIndex(folder, settings.data_dir, make_embedder(settings)))


def cmd_ingest(settings, args) -> int:
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


def cmd_search(settings, args) -> int:
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
