"""Catalog feed: copies the shop's catalog CSV from a URL or path into the knowledge folder.

Runs as a scheduled job when ``[knowledge] catalog_source`` is set. A feed that is unreachable
or does not read as a catalog (no products, required columns missing) never replaces the
current ``catalog.csv``: the old one stays and the reason is logged. The refresh job then sees
the new file and re-indexes only the products that changed.
"""
from __future__ import annotations

import logging
import os
import tempfile
import urllib.request
from pathlib import Path

from responder.core.settings import Settings
from responder.knowledge.folder import load_knowledge

log = logging.getLogger("deskhand.catalog")
MAX_BYTES = 50 * 1024 * 1024


def fetch(source: str, base_dir: Path) -> bytes:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as response:  # noqa: S310 (owner-configured URL)
            data = response.read(MAX_BYTES + 1)
    else:
        path = Path(source) if Path(source).is_absolute() else base_dir / source
        data = path.read_bytes()[:MAX_BYTES + 1]
    if len(data) > MAX_BYTES:
        raise ValueError(f"the catalog feed is larger than {MAX_BYTES // 2**20} MB")
    return data


def check(data: bytes) -> int:
    """Number of products the feed holds; raises ValueError when it is not a usable catalog."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "catalog.csv").write_bytes(data)
        knowledge = load_knowledge(Path(folder))
    products = len(knowledge.of_kind("product"))
    if not products:
        problems = "; ".join(knowledge.warnings[:3]) or "no rows"
        raise ValueError(f"the catalog feed has no usable products ({problems})")
    return products


def sync_catalog(settings: Settings) -> bool:
    """Replace ``catalog.csv`` when the feed changed and reads well; True when it was replaced."""
    source = settings.knowledge.catalog_source
    if not source:
        return False
    target = settings.knowledge_dir / "catalog.csv"
    data = fetch(source, settings.base_dir)
    if target.exists() and target.read_bytes() == data:
        return False
    products = check(data)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".catalog-", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, target)  # atomic: the refresh job never sees half a file
    log.info("catalog updated from its feed: %d products", products)
    return True


def sync_catalog_job(settings: Settings) -> bool:
    """The scheduled job: a bad feed is a warning in the log, not a crash; the old catalog stays."""
    try:
        return sync_catalog(settings)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        log.warning("catalog feed %s not used: %s", settings.knowledge.catalog_source, exc)
        return False
