#!/usr/bin/env python3
"""Deskhand's command line: ``python run.py`` starts the daemon.

    python run.py [--config settings.toml]            run the daemon (mail, jobs, web pages)
    python run.py [--config …] check                   validate settings and the database, then exit
    python run.py ingest [--knowledge DIR]              (re)build the knowledge index
    python run.py search "question" [--k 5] [--knowledge DIR] [--json]
    python run.py ask "text" [--channel email|sms|whatsapp] [--from ADDR] [--subject S] [--json]
    python run.py eval [CASES.jsonl] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download a model at run time
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from responder.errors import ConfigError  # noqa: E402
from responder.logs import setup_logging  # noqa: E402

log = logging.getLogger("deskhand")


def cmd_daemon(settings) -> int:
    from responder.context import build_context
    from responder.daemon import Daemon
    from responder.web import create_app

    ctx = build_context(settings)
    try:
        asyncio.run(Daemon(ctx, app=create_app(ctx)).run())
    finally:
        ctx.db.dispose()
    return 0


def cmd_check(settings) -> int:
    from responder.context import build_context

    ctx = build_context(settings)
    print(f"settings ok; database ready at {settings.database_url.split('@')[-1]}; "
          f"email {'on' if settings.email.imap_enabled else 'off'}")
    ctx.db.dispose()
    return 0


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
    ask.add_argument("--channel", choices=["email", "sms", "whatsapp"], default="email")
    ask.add_argument("--from", dest="sender")
    ask.add_argument("--subject")
    ask.add_argument("--json", action="store_true")
    evaluate = sub.add_parser("eval", help="run conversation cases through the pipeline, nothing sent")
    evaluate.add_argument("cases", nargs="?", help="cases file (default: <knowledge>/conversations.jsonl)")
    evaluate.add_argument("--json", action="store_true", help="one JSON object per customer turn")
    args = parser.parse_args(argv)

    from responder.settings import load_settings
    try:
        settings = load_settings(args.config)
        # Commands print their own results; the log is for the daemon (and for warnings).
        setup_logging(settings.log.level if args.command in (None, "daemon") else "WARNING")
        from responder import commands

        handlers = {"check": lambda s, a: cmd_check(s), "ingest": commands.cmd_ingest,
                    "search": commands.cmd_search, "ask": commands.cmd_ask, "eval": commands.cmd_eval}
        return handlers.get(args.command, lambda s, a: cmd_daemon(s))(settings, args)
    except ConfigError as exc:
        print(f"Deskhand cannot start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
