"""Search latency over HTTP (uvicorn on loopback) against in-process FAISS on a 100k x 384 index, batch 1 and 32;
and a refresh: time to re-encode and swap, and search latency while it runs.

The 100k index is made of random unit vectors (encoding 100k texts on 2 CPU cores would take an hour) and
published into the service's data dir before it starts; queries are sent as vectors, so both sides do the same
FAISS search and the difference is the HTTP + JSON overhead.

    python benchmarks/service_latency.py [--size 100000] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import machine, markdown_table  # noqa: E402

from negminer import build_demo  # noqa: E402
from negminer.index import CorpusIndex, IndexStore, VectorIndex, default_model_path  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(lat: list[float], batch: int) -> tuple[float, float, float]:
    a = np.array(lat) * 1000
    return (
        round(float(np.percentile(a, 50)), 2),
        round(float(np.percentile(a, 99)), 2),
        round(batch * len(lat) / (a.sum() / 1000), 1),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--refresh-docs", type=int, default=1000)
    args = ap.parse_args()
    import httpx

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((args.size, args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    tmp = Path(tempfile.mkdtemp(prefix="negminer-svc-"))
    data_dir = tmp / "data"
    ids = [f"d{i}" for i in range(args.size)]
    index = CorpusIndex(VectorIndex(args.dim).add(vecs), ids, "random", "random", texts=[""] * args.size)
    (data_dir / "indexes" / "big").mkdir(parents=True)
    IndexStore(data_dir / "indexes" / "big").publish(index)
    (data_dir / "indexes" / "big" / "index.json").write_text(
        json.dumps({"name": "big", "model": "random", "kind": "flat"})
    )
    port = _port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NEGMINER_CACHE_DIR": str(tmp / "cache"), "NEGMINER_DEVICE": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "negminer.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, timeout=120)
    rows: list[list[object]] = []
    try:
        for _ in range(300):
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        for batch in (1, 32):
            qs = [rng.standard_normal((batch, args.dim)).astype(np.float32) for _ in range(args.requests)]
            qs = [q / np.linalg.norm(q, axis=1, keepdims=True) for q in qs]
            local, remote = [], []
            for q in qs[:5]:  # warm-up
                index.search(q, 10)
                client.post("/v1/indexes/big/search", json={"vectors": q.tolist(), "top_k": 10})
            for q in qs:
                t0 = time.perf_counter()
                index.search(q, 10)
                local.append(time.perf_counter() - t0)
                body = {"vectors": q.tolist(), "top_k": 10}
                t0 = time.perf_counter()
                r = client.post("/v1/indexes/big/search", json=body)
                remote.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
            lp, rp = _stats(local, batch), _stats(remote, batch)
            rows.append([f"in-process FAISS, batch {batch}", *lp, ""])
            rows.append([f"HTTP, batch {batch}", *rp, f"{rp[0] / lp[0] - 1:+.0%} p50"])

        # refresh: a real model re-encodes a demo corpus while a reader keeps searching
        demo = build_demo(args.refresh_docs)
        docs = [{"id": d, "text": t} for d, t in zip(demo.corpus_ids, demo.corpus_texts)]
        ckpt = data_dir / "models" / "minilm"
        import torch
        from sentence_transformers import SentenceTransformer

        tuned = SentenceTransformer(default_model_path(), device="cpu")
        with torch.no_grad():  # a "newer checkpoint": other weights, so nothing comes from the cache
            for p in tuned.parameters():
                p.add_(torch.randn_like(p) * 1e-3)
        tuned.save(str(ckpt))
        client.post("/v1/indexes", json={"name": "code", "documents": docs})
        while client.get("/v1/indexes/code").json()["status"] != "ready":
            time.sleep(0.5)
        query = {"queries": [demo.queries[0]], "top_k": 10}
        idle = []
        for _ in range(50):
            t0 = time.perf_counter()
            client.post("/v1/indexes/code/search", json=query)
            idle.append(time.perf_counter() - t0)
        during: list[float] = []
        versions: set[int] = set()
        stop = threading.Event()

        def reader() -> None:
            with httpx.Client(base_url=base, timeout=120) as c:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    r = c.post("/v1/indexes/code/search", json=query)
                    during.append(time.perf_counter() - t0)
                    versions.add(r.json()["version"])

        th = threading.Thread(target=reader)
        th.start()
        t0 = time.perf_counter()
        client.post("/v1/indexes/code/refresh", json={"model": "models/minilm"})
        while client.get("/v1/indexes/code").json()["operation"]["status"] == "running":
            time.sleep(0.1)
        refresh_s = time.perf_counter() - t0
        stop.set()
        th.join()
        info = client.get("/v1/indexes/code").json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"# Service latency ({machine()})\n")
    print(
        f"{args.size:,} x {args.dim} flat index, top_k 10, {args.requests} sequential requests per row, uvicorn on "
        "127.0.0.1, queries sent as vectors\n"
    )
    print(markdown_table(["path", "p50 ms", "p99 ms", "queries/s", "HTTP overhead"], rows))
    ip, dp = _stats(idle, 1), _stats(during, 1)
    print()
    print(
        markdown_table(
            ["refresh", "value"],
            [
                [
                    f"re-encode {len(docs):,} documents (code, MiniLM) and swap",
                    f"{refresh_s:.1f} s (server: {info['operation']['seconds']} s)",
                ],
                ["search p50 / p99 idle (text query, batch 1)", f"{ip[0]} / {ip[1]} ms"],
                ["search p50 / p99 during the refresh", f"{dp[0]} / {dp[1]} ms ({len(during)} searches)"],
                ["versions answering during the refresh", ", ".join(str(v) for v in sorted(versions))],
            ],
        )
    )


if __name__ == "__main__":
    main()
