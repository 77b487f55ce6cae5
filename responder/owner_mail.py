"""Mail to the owner: notifications of held drafts, reminders (placeholder, being written)."""
from __future__ import annotations


def notify_held(session, settings, draft) -> None:
    return None
