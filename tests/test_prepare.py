"""responder/ops/prepare.py and Retriever.prepare: a batch's questions are embedded in one model call
ahead of routing, and routing then finds exactly what it would have found on its own."""
from __future__ import annotations

import sys
from pathlib import Path

from helpers import make_context, write_settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from backlog import mixed_mail  # noqa: E402

from responder.core.models import Draft, Message  # noqa: E402
from responder.intake.store import store_inbound_email  # noqa: E402
from responder.ops import prepare  # noqa: E402
from responder.ops.jobs import process_pending  # noqa: E402

NO_LIMITS = "[routing]\nmax_auto_replies_per_hour = 0\nloop_threshold = 1000000\n"


class CountingEmbedder:
    """The real embedder, counting its calls and texts."""

    def __init__(self, inner):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.calls: list[int] = []

    def embed(self, texts):
        self.calls.append(len(texts))
        return self.inner.embed(texts)


def _context(tmp_path, name: str, count: int):
    folder = tmp_path / name
    folder.mkdir()
    ctx = make_context(write_settings(folder, database_url=f"sqlite:///{folder / 'd.db'}", extra=NO_LIMITS))
    ctx.retriever.index.embedder = counting = CountingEmbedder(ctx.retriever.index.embedder)
    with ctx.db.transaction() as session:
        for n in range(count):
            store_inbound_email(session=session, raw=mixed_mail(n), mailbox="m", uidvalidity=1, uid=n + 1)
    return ctx, counting


def _outcomes(ctx) -> list[tuple]:
    with ctx.db.read() as session:
        rows = session.exec(Draft.__table__.select().join(Message.__table__, Draft.message_id == Message.id)
                            .order_by(Message.uid)).all()
    return [(r.route, r.text, tuple(r.sources or ())) for r in rows]


def test_a_batch_embeds_once_and_routes_as_one_by_one(tmp_path, monkeypatch):
    batched, counting = _context(tmp_path, "batched", 40)
    assert process_pending(batched, 40) == 40
    # 36 customer questions (and their topic-only forms) in two prepared calls; the automated
    # mail is never searched, and nothing was embedded one question at a time.
    assert len(counting.calls) == 2 and sum(counting.calls) >= 36

    monkeypatch.setattr(prepare, "prepare_batch", lambda ctx, batch: None)
    single, counting_single = _context(tmp_path, "single", 40)
    assert process_pending(single, 40) == 40
    assert len(counting_single.calls) >= 36  # one call (or more) per question
    assert _outcomes(batched) == _outcomes(single)


def test_a_changed_index_is_not_served_stale_searches(tmp_path):
    ctx, _ = _context(tmp_path, "stale", 0)
    question = "How much is shipping to Canada?"
    ctx.retriever.prepare([question])
    before = ctx.retriever._prepared.text_hits(question, ctx.retriever.version)
    assert before is not None
    assert ctx.retriever._prepared.text_hits(question, "another index version") is None
