"""Search latency over HTTP (uvicorn on loopback) against in-process FAISS on a 100k x 384 index, batch 1 and 32;
a refresh: time to re-encode and swap, and search latency while it runs; and 16 concurrent clients searching by
text (all-MiniLM-L6-v2), with texts the embedding cache has seen and with a new text each time, with the
service's dynamic batching of concurrent requests (NEGMINER_ENCODE_BATCH_TEXTS) and without it, in the same run.

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
from _common import machine, markdown_table, wait_ready  # noqa: E402

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


def _concurrent(base: str, texts: list[list[str]]) -> tuple[float, float, float, int]:
    """Each client sends its texts one request at a time: (requests/s, p50 ms, p99 ms, errors)."""
    import httpx

    lat: list[float] = []
    errors = 0
    lock = threading.Lock()

    def client(mine: list[str]) -> None:
        nonlocal errors
        with httpx.Client(base_url=base, timeout=120) as c:
            for t in mine:
                t0 = time.perf_counter()
                r = c.post("/v1/indexes/code/search", json={"queries": [t], "top_k": 10})
                with lock:
                    lat.append(time.perf_counter() - t0)
                    errors += r.status_code != 200

    threads = [threading.Thread(target=client, args=(m,)) for m in texts]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return (
        round(len(lat) / wall, 1),
        round(float(np.percentile(a, 50)), 1),
        round(float(np.percentile(a, 99)), 1),
        errors,
    )


def _start(data_dir: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "negminer.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(proc, port, 60)
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--refresh-docs", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--per-client", type=int, default=25, help="requests per client in the concurrent rows")
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
    proc = _start(data_dir, port, env)
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, timeout=120)
    rows: list[list[object]] = []
    try:
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

        # concurrent clients searching by text: seen texts (cached) and new ones, batched and unbatched
        n, k = args.clients, args.per_client
        seen = [demo.queries[i % len(demo.queries)] for i in range(50)]
        _concurrent(base, [seen] * 2)  # the cache holds them now
        concurrent: list[list[object]] = []
        for batching in ("256", "0"):
            if batching == "0":
                proc.terminate()
                proc.wait(timeout=30)
                proc = _start(data_dir, port, {**env, "NEGMINER_ENCODE_BATCH_TEXTS": "0"})
                _concurrent(base, [seen] * 2)
            new = [
                [f"{demo.queries[(c * k + j) % len(demo.queries)]} #{batching}-{c}-{j}" for j in range(k)]
                for c in range(n)
            ]
            cached = [[seen[(c + j) % len(seen)] for j in range(k)] for c in range(n)]
            for label, texts in (("new text each request", new), ("texts seen before (cached)", cached)):
                concurrent.append([label, "on (256 texts)" if batching != "0" else "off", *_concurrent(base, texts)])
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
    print()
    ratio = concurrent[0][2] / concurrent[2][2]  # type: ignore[operator]
    print(
        markdown_table(
            ["queries", "dynamic batching", "requests/s", "p50 ms", "p99 ms", "errors"],
            concurrent,
            title=f"{n} clients searching by text ({k} requests each, top_k 10, all-MiniLM-L6-v2, "
            f"{len(docs):,} documents); batching on / off with new texts: {ratio:.2f}x the requests/s",
        )
    )


if __name__ == "__main__":
    main()
