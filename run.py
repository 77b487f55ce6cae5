#!/usr/bin/env python3
"""Deskhand's command line: ``python run.py`` starts the daemon.

    python run.py [--config settings.toml]            run the daemon (mail, jobs, web pages)
    python run.py [--config …] check                   validate settings and the database, then exit
    python run.py ingest [--knowledge DIR]              (re)build the knowledge index
    python run.py search "question" [--k 5] [--knowledge DIR] [--json]
    python run.py ask "text" [--channel email|sms|whatsapp] [--from ADDR] [--subject S] [--json]
    python run.py eval [CASES.jsonl] [--json]
    python run.py queue list|show ID|approve ID [--text T] [--force]|reject ID [--reason R]
    python run.py digest --print | --send
    python run.py stats [--days N] [--json]
    python run.py customer link --email ADDR --phone NUMBER | show (--email ADDR | --phone NUMBER) [--json]
    python run.py set-password [--password-stdin]
    python run.py forget CUSTOMER [--yes]               erase a customer (email, phone or id) and all their data
    python run.py problems [list [--json] | retry send|message ID | dismiss send|message ID]
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download a model at run time
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from responder.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
