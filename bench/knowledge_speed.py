#!/usr/bin/env python3
"""Knowledge speed and size: ingest of the sample shop (cold and unchanged) and query latency
at 10k and 100k entries, with the real local MiniLM model and the SQLite index.

    python bench/knowledge_speed.py [--sizes 10000,100000] [--queries 60] [--json]

Synthetic entries for the large sizes: FAQ-like sections drawn from a shop vocabulary. The
10k set is embedded with MiniLM for real; the 100k set reuses those vectors with small noise
(embedding 100k texts takes minutes on two cores and says nothing about query speed). Every
query embeds its question with MiniLM, as live traffic does. Medians and p90 over the queries.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from responder.knowledge.embeddings import LocalEmbedder  # noqa: E402
from responder.knowledge.folder import Entry, Knowledge  # noqa: E402
from responder.knowledge.index import KnowledgeIndex  # noqa: E402
from responder.knowledge.retrieve import Retriever  # noqa: E402

WORDS = ("shipping delivery order candle jar tin wick wax soy coconut scent lavender cedar amber fig pine "
         "return refund exchange gift card wrap wholesale price discount tracking parcel box broken cracked "
         "burn time hours size weight color blue green black grey white travel trimmer pet safe cat dog "
         "holiday preorder restock stock discontinued international canada uk customs duty payment paypal").split()
QUESTIONS = ["How much is shipping to Canada?", "can i return a candle i burned once", "do you have anything blue",
             "how long does the cedar one burn", "is the amber noir in stock", "my jar arrived cracked",
             "do you sell gift cards", "what wax do you use", "is it safe around my cat", "wholesale prices?"]


class NoisyCopyEmbedder:
    """Stands in for MiniLM while *building* the 100k index: real vectors, reused with noise."""
    name, dim = LocalEmbedder.name, LocalEmbedder.dim

    def __init__(self, real: LocalEmbedder, pool: np.ndarray):
        self.real, self.pool, self.rng = real, pool, np.random.default_rng(7)

    def embed(self, texts):
        if len(texts) == 1:  # a query: the real model
            return self.real.embed(texts)
        picks = self.pool[self.rng.integers(0, len(self.pool), len(texts))]
        noisy = picks + self.rng.normal(0, 0.02, picks.shape).astype(np.float32)
        return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def synthetic(n: int, seed: int = 1) -> Knowledge:
    rng = random.Random(seed)
    entries = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS) for _ in range(5)).capitalize() + "?"
        body = ". ".join(" ".join(rng.choice(WORDS) for _ in range(9)).capitalize() for _ in range(3)) + "."
        entries.append(Entry(source=f"faq{i // 1000}.md#{title} {i}", kind="faq", title=title, text=f"{title}\n{body}"))
    return Knowledge(entries=entries, warnings=[])


def latencies(retriever: Retriever, queries: int, mode: str) -> list[float]:
    times = []
    for i in range(queries):
        start = time.perf_counter()
        retriever.search(QUESTIONS[i % len(QUESTIONS)], k=5, mode=mode)
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"p50_ms": round(statistics.median(ordered), 1), "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict = {"machine": f"{os.cpu_count()} cores", "ingest": {}, "query": {}}
    real = LocalEmbedder()
    real.embed(["warm up"])
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        shop = data / "shop"
        shutil.copytree(ROOT / "knowledge", shop)
        start = time.perf_counter()
        report = KnowledgeIndex(shop, data / "a", real).sync()
        results["ingest"]["sample_cold_s"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        KnowledgeIndex(shop, data / "a", real).sync()
        results["ingest"]["sample_unchanged_s"] = round(time.perf_counter() - start, 3)
        results["ingest"]["sample_entries"] = report.added
        pool = None
        for size in [int(s) for s in args.sizes.split(",") if s]:
            knowledge = synthetic(size)
            embedder = real if size <= 10_000 or pool is None else NoisyCopyEmbedder(real, pool)
            index = KnowledgeIndex(data / f"k{size}", data / f"d{size}", embedder)
            start = time.perf_counter()
            index.sync(knowledge)
            build = time.perf_counter() - start
            if embedder is real:
                pool = index.matrix.copy()
            retriever = Retriever(index)
            row = {"build_s": round(build, 1), "embedded_for_real": embedder is real}
            for mode in ("hybrid", "vector", "fts"):
                row[mode] = summary(latencies(retriever, args.queries, mode))
            results["query"][str(size)] = row
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    ingest = results["ingest"]
    print(f"ingest of the sample shop ({ingest['sample_entries']} entries): cold {ingest['sample_cold_s']} s "
          f"(model already loaded), unchanged {ingest['sample_unchanged_s']} s")
    print(f"{'entries':>8} {'build':>8} {'hybrid p50/p90':>16} {'vector p50/p90':>16} {'fts p50/p90':>14}")
    for size, row in results["query"].items():
        cells = [f"{row[m]['p50_ms']}/{row[m]['p90_ms']} ms" for m in ("hybrid", "vector", "fts")]
        print(f"{size:>8} {row['build_s']:>7}s {cells[0]:>16} {cells[1]:>16} {cells[2]:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
