"""Where the third-party test corpora are: ``../shared/corpora`` beside the clone, or
``$DESKHAND_CORPORA``. Users' clones don't have them, so tests that need them skip."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


def _find() -> Path | None:
    for candidate in (Path(__file__).resolve().parents[2] / "shared" / "corpora",
                      Path(os.environ.get("DESKHAND_CORPORA", "/nonexistent"))):
        if (candidate / "INDEX.md").is_file():
            return candidate
    return None


CORPORA = _find()
needs_corpora = pytest.mark.skipif(
    CORPORA is None, reason="third-party corpora not found (../shared/corpora or $DESKHAND_CORPORA); "
                            "they are not distributed with the repository")
