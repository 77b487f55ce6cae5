#!/usr/bin/env python3
"""Deskhand's command line: ``python run.py`` starts the daemon.

    python run.py [--config settings.toml]            run the daemon (mail, jobs, web pages)
    python run.py [--config …] check                   validate settings and the database, then exit
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


def build_context(settings):
    from responder.db import Database
    from responder.drafting import make_drafter
    from responder.jobs import Context

    db = Database(settings.database_url)
    db.migrate()
    return Context(settings=settings, db=db, drafter=make_drafter(settings))


def cmd_daemon(settings) -> int:
    from responder.daemon import Daemon
    from responder.web import create_app

    ctx = build_context(settings)
    try:
        asyncio.run(Daemon(ctx, app=create_app(ctx)).run())
    finally:
        ctx.db.dispose()
    return 0


def cmd_check(settings) -> int:
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
    args = parser.parse_args(argv)

    from responder.settings import load_settings
    try:
        settings = load_settings(args.config)
        setup_logging(settings.log.level)
        handler = {"check": cmd_check}.get(args.command, cmd_daemon)
        return handler(settings)
    except ConfigError as exc:
        print(f"Deskhand cannot start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
