"""Command handlers behind ``run.py`` (except the daemon): each takes settings and parsed args,
prints for a person (or JSON lines for a program) and returns the exit status."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _retriever(settings, args):
    from responder.context import index_root
    from responder.embeddings import make_embedder
    from responder.index import KnowledgeIndex
    from responder.retrieve import Retriever

    folder = Path(args.knowledge).resolve() if getattr(args, "knowledge", None) else settings.knowledge_dir
    return Retriever(KnowledgeIndex(folder, settings.data_dir, make_embedder(settings), root=index_root(settings)))


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


def _eval_context(settings):
    from responder.context import build_context

    # run_cases gives every case its own database; this one is never used, so keep it in memory.
    return build_context(settings, database_url="sqlite:///:memory:", migrate=False)


def cmd_ask(settings, args) -> int:
    from responder.evaluate import run_cases

    channel = args.channel
    sender = args.sender or ("customer@example.org" if channel == "email" else "+15550100000")
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


def cmd_eval(settings, args) -> int:
    from responder.evaluate import check_expectations, load_cases, run_cases

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

def _database(settings):
    from responder.db import Database

    db = Database(settings.database_url)
    db.migrate()
    return db


def _draft_summary(session, draft) -> dict:
    from responder.models import Customer, Message

    message = session.get(Message, draft.message_id)
    customer = session.get(Customer, message.customer_id) if message and message.customer_id else None
    return {"id": draft.id, "route": draft.route, "status": draft.status, "created_at": draft.created_at.isoformat(),
            "channel": message.channel if message else "", "customer": customer.name if customer else "",
            "from": message.sender if message else "", "subject": message.subject if message else "",
            "message": (message.new_text or message.text) if message else "", "draft": draft.text,
            "sent_text": draft.sent_text, "reasons": draft.reasons, "sources": draft.sources,
            "confidence": draft.confidence}


def cmd_queue(settings, args) -> int:
    from responder import approvals

    db = _database(settings)
    try:
        with db.transaction() as session:
            if args.action == "list":
                rows = [_draft_summary(session, d) for d in approvals.pending(session)]
                for row in rows:
                    if args.json:
                        print(json.dumps(row, ensure_ascii=False))
                    else:
                        who = row["customer"] or row["from"]
                        print(f"#{row['id']:<5} {row['route']:8} {row['created_at'][:16]}  {who[:28]:28} "
                              f"{' '.join(row['message'].split())[:60]}\n       why: {'; '.join(row['reasons']) or '-'}")
                if not rows and not args.json:
                    print("nothing waiting for you")
                return 0
            draft = approvals.get(session, args.id)
            if args.action == "show":
                row = _draft_summary(session, draft)
                row["events"] = [{"action": e.action, "actor": e.actor, "detail": e.detail, "at": e.at.isoformat()}
                                 for e in approvals.events(session, draft.id)]
                row["newer_messages"] = len(approvals.newer_messages(session, draft))
                if args.json:
                    print(json.dumps(row, ensure_ascii=False))
                    return 0
                print(f"draft #{row['id']} ({row['route']}, {row['status']}) from {row['customer'] or row['from']}"
                      f"\nsubject: {row['subject']}\n\ncustomer wrote:\n{row['message']}\n\ndraft:\n{row['draft'] or '(none)'}"
                      f"\n\nwhy held: {'; '.join(row['reasons']) or '-'}\nsources:  {', '.join(row['sources']) or '-'}")
                if row["sent_text"] is not None and row["sent_text"] != row["draft"]:
                    print(f"\nsent instead:\n{row['sent_text']}")
                if row["newer_messages"]:
                    print(f"\nwarning: the customer wrote {row['newer_messages']} more message(s) since")
                for event in row["events"]:
                    print(f"{event['at'][:16]}  {event['action']} by {event['actor']}  {event['detail']}")
                return 0
            if args.action == "approve":
                approvals.approve(session, settings, draft.id, actor="owner (cli)", text=args.text, force=args.force)
                print(f"approved draft #{draft.id}{' (edited)' if draft.edited else ''}: the daemon sends it next")
            else:
                approvals.reject(session, draft.id, actor="owner (cli)", reason=args.reason or "")
                print(f"rejected draft #{draft.id}: nothing will be sent")
        return 0
    except approvals.ThreadMovedOn as exc:
        print(f"not sent: {exc} (use --force to send anyway)")
        return 1
    except approvals.ApprovalError as exc:
        print(str(exc))
        return 1
    finally:
        db.dispose()


def cmd_forget(settings, args) -> int:
    """``run.py forget CUSTOMER [--yes]`` (``responder.privacy`` does the erasing). Reads ``args.customer`` and ``args.yes``; asks before erasing unless ``--yes``."""
    from sqlalchemy.exc import IntegrityError
    from sqlmodel import select

    from responder.db import Database
    from responder.models import Customer, Identity
    from responder.privacy import PrivacyError, _audit, find, forget_customer

    db = Database(settings.database_url)
    try:
        db.migrate()
        with db.transaction() as session:
            customer = find(session, args.customer)
            if customer is None:
                print(f"No customer has the address, number or id {args.customer!r}; nothing was erased.",
                      file=sys.stderr)
                return 1
            customer_id = customer.id
            shown = ", ".join(i.value for i in session.exec(select(Identity).where(
                Identity.customer_id == customer_id))) or "no address or number"
            planned = forget_customer(session, customer, dry_run=True)
        print(f"Customer #{customer_id} ({shown}): {planned.summary()}.")
        if not args.yes:
            try:
                answer = input("Erase all of this for good? Type yes to go on: ")
            except EOFError:
                answer = ""
            if answer.strip().lower() != "yes":
                print("Nothing was erased.")
                return 1
        with db.transaction() as session:
            customer = session.get(Customer, customer_id)
            if customer is None:
                print(f"Customer #{customer_id} is already gone.")
                return 0
            erased = forget_customer(session, customer, settings=settings)
    except PrivacyError as exc:
        print(f"{exc} Nothing was erased.", file=sys.stderr)
        return 1
    except IntegrityError:  # a message of theirs was stored meanwhile and points at a row we erased
        print("They wrote while being forgotten, so nothing was erased; run the command again.", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    preview = settings.data_dir / "digest-preview.html"  # `digest --print` may have quoted them
    if preview.exists():
        preview.unlink()
    _audit(settings, {"action": "forget", "customer": customer_id, "erased": dict(erased.counts)})
    print(f"Erased customer #{customer_id}: {erased.summary()}.")
    for note in erased.notes + ["their mail is still in the mailbox and their texts in Twilio's log: "
                                "Deskhand never deletes those; remove them there if you must"]:
        print(f"Note: {note}.")
    return 0
