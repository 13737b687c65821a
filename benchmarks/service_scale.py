"""The service's index registry at a million documents: an index created from a corpus file, mined from, then
refreshed with another model, in one process whose peak RSS is reported against the size of the corpus's texts and
vectors (what "holding the corpus twice" would cost).

The model is a static bag-of-words model with 384-d embeddings (random token vectors, mean-pooled), so that
encoding a million texts takes minutes on 2 cores instead of hours; the index, the files and the memory are those of
a 384-d transformer's. The corpus is synthetic (numbered documents of words drawn from a fixed vocabulary).

    python benchmarks/service_scale.py [--docs 1000000] [--work runs/service_scale]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table  # noqa: E402

SENTENCE = (
    "index vector search query document corpus model train negative positive filter margin cache encode refresh "
    "version shard cluster memory budget recall graph list probe token batch device worker service stream file"
)
WORDS = SENTENCE.split()


def static_model(path: Path, seed: int) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding
    from tokenizers import Tokenizer

    from negminer.index import default_model_path

    if not path.exists():
        tok = Tokenizer.from_file(str(Path(default_model_path()) / "tokenizer.json"))
        torch.manual_seed(seed)
        SentenceTransformer(modules=[StaticEmbedding(tok, embedding_dim=384), Normalize()], device="cpu").save(
            str(path)
        )
    return path


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--work", default="runs/service_scale")
    args = ap.parse_args()

    from negminer import load_corpus
    from negminer.client.schemas import MineQuery
    from negminer.index import Encoder
    from negminer.service.registry import IndexRegistry

    work = Path(args.work)
    shutil.rmtree(work / "indexes", ignore_errors=True)
    shutil.rmtree(work / "cache", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    models = [static_model(work / f"model{s}", s) for s in (0, 1)]
    corpus = work / "corpus.jsonl"
    rng = np.random.default_rng(0)
    if not corpus.exists():
        with open(corpus, "w", encoding="utf-8") as fh:
            for i in range(args.docs):
                words = " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), 12))
                fh.write(json.dumps({"_id": f"doc{i}", "text": f"document {i}: {words}"}) + "\n")
    text_bytes = corpus.stat().st_size
    vector_bytes = args.docs * 384 * 4
    rows = []

    def encoder(model: str) -> Encoder:
        return Encoder(model, device="cpu", cache_dir=work / "cache", show_progress=False, batch_size=256)

    registry = IndexRegistry(work / "indexes", encoder)
    start = rss_gib()
    t0 = time.perf_counter()
    ids, texts = load_corpus(corpus)
    registry.create("big", str(models[0]), ids, texts, wait=True)
    del ids, texts
    info = registry.get("big").info()
    assert info.status == "ready", info.error
    rows.append(["create from corpus.jsonl", f"{time.perf_counter() - t0:.0f}", f"{rss_gib():.2f}", info.kind])

    from negminer import MiningConfig
    from negminer.service.mining import mine_snapshot

    step = max(1, args.docs // 50)
    queries = [MineQuery(query=f"document {i} index", positive_ids=[f"doc{i}"]) for i in range(0, args.docs, step)]
    options = MiningConfig(num_negatives=5, positive_neighbourhood=1.5)
    t0 = time.perf_counter()
    res = mine_snapshot(registry.snapshot("big"), registry, queries, options)
    rows.append(
        [f"/mine, {len(queries)} queries (no index built)", f"{time.perf_counter() - t0:.1f}", f"{rss_gib():.2f}", "-"]
    )
    assert (res.negatives >= 0).all()

    t0 = time.perf_counter()
    registry.refresh("big", str(models[1]), wait=True)
    info = registry.get("big").info()
    assert info.status == "ready" and info.version == 2, info
    rows.append(["refresh with another model", f"{time.perf_counter() - t0:.0f}", f"{rss_gib():.2f}", info.kind])
    print(
        f"\n{machine()}; {args.docs:,} documents: texts {text_bytes / 2**30:.2f} GiB (corpus.jsonl), vectors "
        f"{vector_bytes / 2**30:.2f} GiB; RSS before creating {start:.2f} GiB; index recall@10 {info.recall}\n"
    )
    print(markdown_table(["step", "seconds", "peak RSS GiB so far", "index"], rows))


if __name__ == "__main__":
    main()
