"""The owner's commands: ``queue``, ``digest``, ``stats`` and ``problems``.

Each takes settings and parsed args, prints for a person (or JSON lines for a program) and
returns the exit status. None of them loads the embedding model.
"""
from __future__ import annotations

import asyncio
import base64
import json
import sys
from datetime import timedelta

from responder.core.clock import as_utc, utcnow
from responder.core.db import Database
from responder.core.models import Customer, Message, Outbox, OutboxStatus
from responder.core.settings import Settings
from responder.ops import sending
from responder.ops.context import Context
from responder.owner import approvals
from responder.owner.digest import CHART_CID, build, enqueue
from responder.owner.metrics import compute, unanswered
from responder.owner.problems import dismiss, open_problems, retry
from responder.owner.report import format_table


def _database(settings: Settings):
    db = Database(settings.database_url)
    db.migrate()
    return db


def _local(settings: Settings, moment) -> str:
    """"2025-03-04 09:05" in the shop's timezone, as the digest and ``stats`` show times."""
    return f"{as_utc(moment).astimezone(settings.tz):%Y-%m-%d %H:%M}"


def _draft_summary(session, draft) -> dict:
    message = session.get(Message, draft.message_id)
    customer = session.get(Customer, message.customer_id) if message and message.customer_id else None
    return {"id": draft.id, "route": draft.route, "status": draft.status, "created_at": draft.created_at.isoformat(),
            "channel": message.channel if message else "", "customer": customer.name if customer else "",
            "from": message.sender if message else "", "subject": message.subject if message else "",
            "message": (message.new_text or message.text) if message else "", "draft": draft.text,
            "sent_text": draft.sent_text, "reasons": draft.reasons, "sources": draft.sources,
            "confidence": draft.confidence}


def cmd_queue(settings: Settings, args) -> int:
    db = _database(settings)
    try:
        with db.transaction() as session:
            if args.action == "list":
                pending = approvals.pending(session)
                rows, d_at = [_draft_summary(session, d) for d in pending], {d.id: d.created_at for d in pending}
                for row in rows:
                    if args.json:
                        print(json.dumps(row, ensure_ascii=False))
                    else:
                        who = row["customer"] or row["from"]
                        print(f"#{row['id']:<5} {row['route']:8} {_local(settings, d_at[row['id']])}  {who[:28]:28} "
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


def cmd_digest(settings: Settings, args) -> int:
    """``python run.py digest --print`` (render, send nothing) or ``--send`` (send it now)."""
    db = Database(settings.database_url)
    db.migrate()
    try:
        if getattr(args, "send", False):
            return _send_now(Context(settings=settings, db=db, drafter=None, retriever=None))
        with db.transaction() as session:
            mail = build(session, settings)
        print(f"Subject: {mail.subject}\n\n{mail.text}")
        preview = settings.data_dir / "digest-preview.html"
        preview.parent.mkdir(parents=True, exist_ok=True)
        html = mail.html
        if mail.png:  # a browser doesn't know cid: links; the preview carries the picture inline
            html = html.replace(f"cid:{CHART_CID}", "data:image/png;base64," + base64.b64encode(mail.png).decode())
        preview.write_text(html, encoding="utf-8")
        to = settings.owner_address or "nobody yet: set [digest] to in settings.toml"
        print(f"(HTML version: {preview}; --send mails it to {to})")
        return 0
    finally:
        db.dispose()


def _send_now(ctx: Context) -> int:
    settings = ctx.settings
    if not settings.owner_address:
        print('No digest sent: set [digest] to = "you@example.com" in settings.toml.')
        return 1
    with ctx.db.transaction() as session:
        row = enqueue(session, settings, force=True)
    if not settings.email.smtp_enabled:
        print("The digest is queued, but sending is off: set [email] smtp_host; the daemon sends it then.")
        return 1
    asyncio.run(sending.send_outbox(ctx, "email"))
    with ctx.db.transaction() as session:
        row = session.get(Outbox, row.id)
    if row.status == OutboxStatus.SENT:
        print(f"Sent the digest to {settings.owner_address}.")
        return 0
    why = row.last_error or "the mail server could not be reached"
    print(f"The digest was not sent ({row.status}): {why}" +
          (" It will be tried again by the daemon." if row.status in (OutboxStatus.RETRY, OutboxStatus.QUEUED) else ""))
    return 1


def cmd_stats(settings: Settings, args) -> int:
    """``python run.py stats [--days N] [--json]``: the last N days, ending now."""
    days = getattr(args, "days", 7)
    if days is None or days < 1:
        print("--days must be at least 1.", file=sys.stderr)
        return 2
    db = Database(settings.database_url)
    try:
        db.migrate()
        end = utcnow()
        with db.transaction() as session:
            metrics = compute(session, start=end - timedelta(days=days), end=end, settings=settings)
            questions = [] if args.json else unanswered(session, start=metrics.start, end=end, limit=3)
    finally:
        db.dispose()
    print(json.dumps(metrics.to_dict(), ensure_ascii=False) if args.json else format_table(metrics, settings, questions))
    return 0


def cmd_problems(settings: Settings, args) -> int:
    """``run.py problems [list|retry KIND ID|dismiss KIND ID]``."""
    db = _database(settings)
    try:
        with db.transaction() as session:
            if args.action in (None, "list"):
                found, total = open_problems(session, limit=1000)
                for p in found:
                    row = {"kind": p.kind, "id": p.id, "who": p.who, "what": p.what, "status": p.status,
                           "channel": p.channel, "at": p.at.isoformat(), "error": p.error}
                    if getattr(args, "json", False):
                        print(json.dumps(row, ensure_ascii=False))
                    else:
                        print(f"{p.kind:7} #{p.id:<6} {p.status:11} {_local(settings, p.at)}  {p.channel:8} "
                              f"{p.what[:24]:24} {p.who[:30]}\n        {p.error}")
                if not total and not getattr(args, "json", False):
                    print("no problems: every send went out and every message was processed")
                return 0
            action = {"retry": retry, "dismiss": dismiss}[args.action]
            try:
                action(session, args.kind, args.id, actor="owner (cli)")
            except (LookupError, ValueError) as exc:
                print(f"error: {exc}")
                return 1
        print(f"{args.kind} #{args.id}: {'queued again; the daemon picks it up' if args.action == 'retry' else 'dismissed'}")
        return 0
    finally:
        db.dispose()
