"""The command line: ``python run.py [command]`` parsed here, each command run by its handler.

The daemon (the default) and ``check`` are here; the other handlers live beside this module
(``knowledge_cmds``, ``owner_cmds``, ``customer_cmds``) and are imported only when chosen.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys

from responder.core.db import DatabaseUnavailable
from responder.core.errors import ConfigError
from responder.core.logs import setup_logging
from responder.core.settings import Settings, load_settings

log = logging.getLogger("deskhand")


def cmd_daemon(settings: Settings) -> int:
    # start-up: only the daemon loads the models and the web app; `run.py queue` starts without them
    from responder.ops.context import build_context
    from responder.ops.daemon import Daemon
    from responder.web import create_app

    ctx = build_context(settings)
    daemon = Daemon(ctx)
    daemon.app = create_app(ctx, on_outbox=daemon.kick_send, on_inbound=daemon.kick_process)
    try:
        asyncio.run(daemon.run())
    finally:
        ctx.db.dispose()
    return 0


def cmd_check(settings: Settings) -> int:
    # start-up: only the daemon loads the models and the web app; `run.py queue` starts without them
    from responder.ops.checks import run_checks
    from responder.ops.context import build_context

    ctx = build_context(settings)
    ctx.db.dispose()
    print(f"ok   settings and database: migrated, at {settings.database_url.split('@')[-1]}")
    results = run_checks(settings)
    for result in results:
        print(result.line())
    failed = [r.name for r in results if r.ok is False]
    print(f"{len(failed)} problem(s): {', '.join(failed)}" if failed else "all set")
    return 1 if failed else 0


KNOWLEDGE, OWNER, PEOPLE = "responder.cli.knowledge_cmds", "responder.cli.owner_cmds", "responder.cli.customer_cmds"


def _lazy(module: str, name: str):
    """A command's handler, imported only when that command runs (``queue list`` never imports
    the embedding model or the web server: start-up time)."""
    def run(settings: Settings, args) -> int:
        return getattr(importlib.import_module(module), name)(settings, args)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description="Deskhand support responder")
    parser.add_argument("--config", help="settings file (default: ./settings.toml)")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("daemon", help="run the daemon (the default)")
    sub.add_parser("check", help="validate settings and migrate the database")
    ingest = sub.add_parser("ingest", help="(re)build the knowledge index and print counts and warnings")
    ingest.add_argument("--knowledge", help="knowledge folder (default: [knowledge] dir)")
    search = sub.add_parser("search", help="ranked knowledge hits for a question")
    search.add_argument("question")
    search.add_argument("--k", type=int, default=5)
    search.add_argument("--knowledge", help="knowledge folder (default: [knowledge] dir)")
    search.add_argument("--mode", choices=["hybrid", "fts", "vector"], default="hybrid")
    search.add_argument("--kind", action="append", choices=["faq", "policy", "product", "example"],
                        help="only these kinds (repeatable; default: faq, policy and product)")
    search.add_argument("--json", action="store_true", help="one JSON object per line")
    ask = sub.add_parser("ask", help="draft one message without sending it")
    ask.add_argument("text")
    ask.add_argument("--channel", choices=["email", "sms", "whatsapp", "chat"], default="email")
    ask.add_argument("--from", dest="sender")
    ask.add_argument("--subject")
    ask.add_argument("--json", action="store_true")
    evaluate = sub.add_parser("eval", help="run conversation cases through the pipeline, nothing sent")
    evaluate.add_argument("cases", nargs="?", help="cases file (default: <knowledge>/conversations.jsonl)")
    evaluate.add_argument("--json", action="store_true", help="one JSON object per customer turn")
    queue = sub.add_parser("queue", help="the drafts waiting for you: list, show, approve, reject")
    queue_sub = queue.add_subparsers(dest="action", required=True)
    queue_list = queue_sub.add_parser("list", help="pending drafts, oldest first")
    queue_list.add_argument("--json", action="store_true", help="one JSON object per line")
    queue_show = queue_sub.add_parser("show", help="one draft with the customer's message, reasons and history")
    queue_show.add_argument("id", type=int)
    queue_show.add_argument("--json", action="store_true")
    queue_approve = queue_sub.add_parser("approve", help="send the draft (or --text instead)")
    queue_approve.add_argument("id", type=int)
    queue_approve.add_argument("--text", help="send this text instead of the draft (the draft is kept)")
    queue_approve.add_argument("--force", action="store_true", help="send even if the customer wrote again since")
    queue_reject = queue_sub.add_parser("reject", help="drop the draft; nothing is sent")
    queue_reject.add_argument("id", type=int)
    queue_reject.add_argument("--reason")
    digest = sub.add_parser("digest", help="the daily digest: print it, or send it now")
    digest_mode = digest.add_mutually_exclusive_group(required=True)
    digest_mode.add_argument("--print", action="store_true", help="render the digest to stdout")
    digest_mode.add_argument("--send", action="store_true", help="send the digest to [digest] to now")
    stats = sub.add_parser("stats", help="how the bot is doing, from the stored rows")
    stats.add_argument("--days", type=int, default=7)
    stats.add_argument("--json", action="store_true")
    customer = sub.add_parser("customer", help="one customer across email and texts: show, link")
    customer_sub = customer.add_subparsers(dest="action", required=True)
    customer_link = customer_sub.add_parser("link", help="the customer with this email is the one with this phone")
    customer_show = customer_sub.add_parser("show", help="a customer's identities and threads")
    for action in (customer_link, customer_show):
        action.add_argument("--email")
        action.add_argument("--phone")
        action.add_argument("--json", action="store_true")
    password = sub.add_parser("set-password", help="set the password of the web pages")
    password.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    problems = sub.add_parser("problems", help="failed sends and messages that could not be processed")
    problems_sub = problems.add_subparsers(dest="action")
    problems_list = problems_sub.add_parser("list", help="what still waits for you (the default)")
    problems_list.add_argument("--json", action="store_true", help="one JSON object per line")
    for action, text in (("retry", "try it again (a send marked unknown: only if you know it did not go out)"),
                         ("dismiss", "you have dealt with it: stop showing it")):
        one = problems_sub.add_parser(action, help=text)
        one.add_argument("kind", choices=["send", "message"])
        one.add_argument("id", type=int)
    forget = sub.add_parser("forget", help="erase a customer's messages, drafts and identities for good")
    forget.add_argument("customer", help="their email address, phone number (+15550100000) or customer id")
    forget.add_argument("--yes", action="store_true", help="don't ask before erasing")
    args = parser.parse_args(argv)

    try:
        settings = load_settings(args.config)
        # Commands print their own results; the log is for the daemon (and for warnings).
        setup_logging(settings.log.level if args.command in (None, "daemon") else "WARNING", settings)
        handlers = {"check": lambda s, a: cmd_check(s), "ingest": _lazy(KNOWLEDGE, "cmd_ingest"),
                    "search": _lazy(KNOWLEDGE, "cmd_search"), "ask": _lazy(KNOWLEDGE, "cmd_ask"),
                    "eval": _lazy(KNOWLEDGE, "cmd_eval"),
                    "queue": _lazy(OWNER, "cmd_queue"), "digest": _lazy(OWNER, "cmd_digest"),
                    "stats": _lazy(OWNER, "cmd_stats"), "problems": _lazy(OWNER, "cmd_problems"),
                    "customer": _lazy(PEOPLE, "cmd_customer"), "set-password": _lazy(PEOPLE, "cmd_set_password"),
                    "forget": _lazy(PEOPLE, "cmd_forget")}
        return handlers.get(args.command, lambda s, a: cmd_daemon(s))(settings, args)
    except (ConfigError, DatabaseUnavailable) as exc:
        print(f"Deskhand cannot start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
