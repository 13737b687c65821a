"""Scaling curve of mining from cached vectors: synthetic clustered 384-d vectors, 100k / 300k / 1M documents,
queries = 10% of the documents (each near one document, its positive), the recommended filter (positive
neighbourhood 1.5, which searches 100+ candidates a query).

For each size and index (flat, IVF, HNSW; each in a fresh process, so its peak RSS is its own) it reports index
build + tuning time, search + filter time, peak RSS, the recall@k the build measured on a sample of the queries
against exact search (k = the search depth), and the share of mined negatives identical to exact mining (flat
index) on a sample of queries. The document vectors are a memory-mapped .npy, as the embedding cache and
``Encoder.encode_to`` leave them; the queries are in memory.

    python benchmarks/scale.py [--sizes 100000,300000,1000000] [--kinds flat,ivf,hnsw] [--sample 1000]
                               [--recall-target 0.98] [--memory-budget 4GB]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table  # noqa: E402

DIM = 384
LATENT = 64  # clustered in a low-dimensional latent space, as real embeddings are, then projected to 384-d
FLAT_MAX = 300_000  # exact search of 100k queries over 1M documents takes hours on 2 cores: not run


def generate(folder: Path, n_docs: int, n_queries: int, seed: int = 0) -> None:
    """docs.npy (memory-mapped, written in blocks), queries.npy, positives.npy: clusters of documents in a latent
    space, projected to 384-d with a little isotropic noise; each query is a noisy copy of its positive."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "positives.npy").exists():
        return
    rng = np.random.default_rng(seed)
    n_clusters = max(100, n_docs // 150)  # topics of ~150 documents, overlapping; IVF lists cut across them
    centers = rng.normal(size=(n_clusters, LATENT)).astype(np.float32)
    proj = rng.normal(size=(LATENT, DIM)).astype(np.float32) / np.sqrt(LATENT)
    docs = np.lib.format.open_memmap(folder / "docs.tmp.npy", mode="w+", dtype=np.float32, shape=(n_docs, DIM))
    for s in range(0, n_docs, 1 << 16):
        e = min(n_docs, s + (1 << 16))
        c = rng.integers(0, n_clusters, size=e - s)
        lat = centers[c] + 0.8 * rng.normal(size=(e - s, LATENT)).astype(np.float32)
        v = lat @ proj + 0.2 * rng.normal(size=(e - s, DIM)).astype(np.float32)
        docs[s:e] = v / np.linalg.norm(v, axis=1, keepdims=True)
    docs.flush()
    pos = rng.choice(n_docs, size=n_queries, replace=False)
    q = np.asarray(docs[np.sort(pos)], dtype=np.float32)
    pos = np.sort(pos)
    q = q + 0.03 * rng.normal(size=q.shape).astype(np.float32)  # cosine to its positive about 0.86
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    del docs
    (folder / "docs.tmp.npy").rename(folder / "docs.npy")
    np.save(folder / "queries.npy", q)
    np.save(folder / "positives.npy", pos)


def _default_target() -> float:
    from negminer.index import IndexConfig

    return IndexConfig().recall_target


def run_one(folder: Path, kind: str, sample: int, out: Path, memory_budget: str | None, target: float | None) -> None:
    """One mining run in this process; writes its figures to ``out`` (JSON)."""
    from negminer.index import IndexConfig
    from negminer.mining import RECOMMENDED_FILTER, mine_vectors

    docs = np.load(folder / "docs.npy", mmap_mode="r")
    queries = np.load(folder / "queries.npy")
    positives = [[int(p)] for p in np.load(folder / "positives.npy")]
    if kind == "exact-sample":  # the reference: exact mining of the sampled queries only
        rows = np.load(folder / "sample.npy")
        queries, positives = queries[rows], [positives[i] for i in rows]
        kind = "flat"
    t0 = time.perf_counter()
    res = mine_vectors(
        queries,
        docs,
        positives,
        index=IndexConfig(
            index=kind,
            memory_budget=memory_budget,
            recall_sample=sample,
            **({} if target is None else {"recall_target": target}),
        ),
        show_progress=False,
        **RECOMMENDED_FILTER,
    )
    total = time.perf_counter() - t0
    t = res.report.to_dict()["timings"]
    idx = res.report.to_dict()["index"]
    np.save(out.with_suffix(".npy"), res.negatives)
    out.write_text(
        json.dumps(
            {
                "kind": idx["kind"],
                "build_s": t["index"],
                "search_filter_s": total - t["index"],
                "total_s": total,
                "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                "recall": (idx.get("recall") or {}).get("recall"),
                "recall_k": (idx.get("recall") or {}).get("k"),
                "setting": {k: idx[k] for k in ("nprobe", "ef_search", "nlist") if k in idx},
                "short": res.report.to_dict().get("short_queries"),
            }
        )
    )


def identical_share(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of exact mining's negatives that the approximate run also mined for the same query."""
    hit = total = 0
    for a, e in zip(approx, exact):
        e = e[e >= 0]
        hit += int(np.isin(e, a).sum())
        total += len(e)
    return hit / total if total else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--kinds", default="flat,ivf,hnsw")
    ap.add_argument("--sample", type=int, default=1000, help="queries of the recall and identical-negatives samples")
    ap.add_argument("--memory-budget", default=None)
    ap.add_argument("--recall-target", type=float, default=None, help="default: IndexConfig's (0.98)")
    ap.add_argument("--work", default="runs/scale")
    ap.add_argument("--child", nargs=4, metavar=("FOLDER", "KIND", "SAMPLE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        folder, kind, sample, out = args.child
        run_one(Path(folder), kind, int(sample), Path(out), args.memory_budget, args.recall_target)
        return

    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        folder = Path(args.work) / f"n{n}"
        t0 = time.perf_counter()
        generate(folder, n, n // 10)
        print(f"{n:,} documents: vectors ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        nq = n // 10
        rng = np.random.default_rng(1)
        sample = np.sort(rng.choice(nq, size=min(nq, args.sample), replace=False))
        np.save(folder / "sample.npy", sample)
        results = {}
        for kind in ["exact-sample", *args.kinds.split(",")]:
            if kind == "flat" and n > FLAT_MAX:
                continue
            out = folder / f"{kind}.json"
            cmd = [sys.executable, __file__, "--child", str(folder), kind, str(args.sample), str(out)]
            if args.memory_budget:
                cmd += ["--memory-budget", args.memory_budget]
            if args.recall_target is not None:
                cmd += ["--recall-target", str(args.recall_target)]
            subprocess.run(cmd, check=True)
            results[kind] = json.loads(out.read_text())
            results[kind]["negatives"] = np.load(out.with_suffix(".npy"))
            print(f"  {kind}: {results[kind]['total_s']:.0f} s", file=sys.stderr)
        exact = results.pop("exact-sample")["negatives"]
        flat_s = results["flat"]["total_s"] if "flat" in results else None
        for r in results.values():
            rows.append(
                [
                    f"{n:,} x {nq:,}",
                    r["kind"],
                    json.dumps(r["setting"]).replace('"', "") if r["setting"] else "-",
                    f"{r['build_s']:.1f}",
                    f"{r['search_filter_s']:.1f}",
                    f"{r['total_s']:.1f}",
                    f"{r['total_s'] / flat_s:.2f}x" if flat_s else "-",
                    f"{r['peak_rss_gib']:.2f}",
                    f"{r['recall']:.3f} @{r['recall_k']}" if r["recall"] is not None else "-",
                    f"{identical_share(r['negatives'][sample], exact):.3f}",
                ]
            )
    print(
        f"\n{machine()}; mining with the recommended filter (positive neighbourhood 1.5); recall target "
        f"{args.recall_target or _default_target()} at the search depth; {args.sample} queries sampled\n"
    )
    print(
        markdown_table(
            [
                "docs x queries",
                "index",
                "tuned",
                "build + tune s",
                "search + filter s",
                "total s",
                "vs flat",
                "peak RSS GiB",
                "recall (build, sample)",
                "negatives = exact",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
