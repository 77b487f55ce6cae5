"""Drafting backends behind one interface, chosen by name in ``[llm] provider``.

Adding a backend means adding a module and a line in ``BACKENDS``; the pipeline never changes.
Backends never touch the database: the pipeline stores what they return (simonw/llm's rule).
"""
from __future__ import annotations

from responder.drafting.base import DraftRequest, DraftResult, Drafter
from responder.drafting.offline import OfflineDrafter
from responder.drafting.openai_backend import OpenAIDrafter
from responder.errors import ConfigError

BACKENDS: dict[str, type] = {"offline": OfflineDrafter, "openai": OpenAIDrafter}


def make_drafter(settings) -> Drafter:
    name = settings.llm.provider
    if name not in BACKENDS:
        raise ConfigError(f"[llm] provider {name!r} is not available yet; use 'offline'.")
    return BACKENDS[name](settings)


__all__ = ["BACKENDS", "DraftRequest", "DraftResult", "Drafter", "make_drafter"]
