"""The owner's approval replies by email (placeholder, being written)."""
from __future__ import annotations


def handle(work, session, settings):
    return None


def confirm(session, settings, work, draft, outcome) -> None:
    return None
