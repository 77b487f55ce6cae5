"""Step 4 of the flow: drafting backends behind one interface, chosen by name in ``[llm] provider``,
and the tone every draft is held to.

Adding a backend means adding a module and a line in ``BACKENDS``; the pipeline never changes.
Backends never touch the database: the pipeline stores what they return (simonw/llm's rule).
"""
from __future__ import annotations

import importlib

from responder.core.errors import ConfigError
from responder.core.settings import Settings
from responder.draft.base import Drafter, DraftRequest, DraftResult

# Imported when chosen: the openai client alone is 27 MB of memory and 0.4 s of start-up that a
# shop on the offline drafter never uses (bench/memory.py).
BACKENDS: dict[str, str] = {"offline": "responder.draft.offline:OfflineDrafter",
                            "openai": "responder.draft.openai_backend:OpenAIDrafter"}


def make_drafter(settings: Settings) -> Drafter:
    name = settings.llm.provider
    if name not in BACKENDS:
        raise ConfigError(f"[llm] provider {name!r} is not available yet; use 'offline'.")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(settings)


__all__ = ["BACKENDS", "DraftRequest", "DraftResult", "Drafter", "make_drafter"]
