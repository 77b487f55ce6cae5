"""Decide: the name a reply greets, checked like everything else that reaches a customer.

The greeting ("Hi Helen,") is the one line of a reply no drafter wrote: it comes from the From
header's display name, which anyone can set. ``channels.email.compose.greeting_name`` keeps only
what looks like a person's first name; this step then passes the greeting line through the claim
guard with no knowledge at all, because a name carries no link, phone number, price, promise or
shouting. A name the guard objects to is left out ("Hi,"), with the reason kept on the draft.
Used by the pipeline (automatic replies and holding notes) and by approvals (the owner's replies).
"""
from __future__ import annotations

from channels.email.compose import greeting_name
from responder.decide.guard import check_claims


def checked_greeting_name(display_name: str) -> tuple[str, list[str]]:
    """The first name to greet and [] — or "" and the reasons the guard gave against greeting it."""
    name = greeting_name(display_name or "")
    if not name:
        return "", []
    problems = check_claims(f"Hi {name},", hits=[], catalog=[])
    if problems:
        return "", [f"greeted without a name: the guard objects to 'Hi {name},' ({'; '.join(problems)})"]
    return name, []
