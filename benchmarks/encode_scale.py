"""Corpus encoding on every device of a machine: one process, sentence-transformers' multi-process pool, and a
local Ray (Ray Data actor pool writing into the embedding cache), on the same real texts and the same cores.

Each row encodes the same texts from an empty cache; "same vectors" compares with the one-process encode (Ray
batches texts exactly as the in-process encode does; the pool splits them differently, so it is compared within
float tolerance). The local Ray cluster's start is timed apart from the encode (a cluster is started once).

    python benchmarks/encode_scale.py [--max-docs 1500] [--processes 2] [--out runs/encode.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table  # noqa: E402

from negminer import build_demo  # noqa: E402
from negminer.index import Encoder, default_model_path, ray_encode  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-docs", type=int, default=1500)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default="runs/encode.json")
    args = ap.parse_args()

    data = build_demo(args.max_docs)
    _, texts, _ = data.dedup_corpus()
    model = default_model_path()
    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp:

        def encoder(name: str, **kw: object) -> Encoder:
            return Encoder(model, device="cpu", batch_size=args.batch_size, cache_dir=Path(tmp) / name, **kw)  # type: ignore[arg-type]

        one = encoder("one", show_progress=False)
        _ = one.dim  # the model loaded before the clock starts (the pool's and the actors' loads are timed)
        t0 = time.perf_counter()
        base = one.encode(texts)
        t_one = time.perf_counter() - t0
        rows.append(["one process", f"{len(texts) / t_one:.1f}", f"{t_one:.1f}", "1.00x", "reference"])
        figures["one_process_texts_per_s"] = len(texts) / t_one

        pooled = encoder("pool", show_progress=False, devices=str(args.processes))
        _ = pooled.dim
        t0 = time.perf_counter()
        vecs = pooled.encode(texts)
        t_pool = time.perf_counter() - t0
        pooled.close()
        diff = float(np.abs(vecs - base).max())
        rows.append(
            [
                f"multi-process pool ({args.processes} processes, pool start included)",
                f"{len(texts) / t_pool:.1f}",
                f"{t_pool:.1f}",
                f"{t_pool / t_one:.2f}x",
                "identical" if diff == 0 else f"max abs diff {diff:.1e}",
            ]
        )
        figures["pool_texts_per_s"] = len(texts) / t_pool

        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=args.processes, include_dashboard=False, log_to_driver=False)
        t_start = time.perf_counter() - t0
        fixed = encoder("ray-fixed", show_progress=False)
        t0 = time.perf_counter()
        ray_encode(fixed, texts[:64], address="auto")  # one actor, one batch: the fixed cost of a Ray encode
        t_fixed = time.perf_counter() - t0
        rows.append(
            ["local Ray, 64 texts (fixed cost: actor start, imports, model load)", "-", f"{t_fixed:.1f}", "-", "-"]
        )
        figures["ray_fixed_seconds"] = t_fixed
        remote = encoder("ray", show_progress=False)
        t0 = time.perf_counter()
        did = ray_encode(remote, texts, address="auto")
        vecs = remote.encode(texts)  # every vector from the cache the actors filled
        t_ray = time.perf_counter() - t0
        ray.shutdown()
        rows.append(
            [
                f"local Ray ({did['actors']} actors, actor start included; cluster start {t_start:.1f} s apart)",
                f"{len(texts) / t_ray:.1f}",
                f"{t_ray:.1f}",
                f"{t_ray / t_one:.2f}x",
                "identical" if np.array_equal(vecs, base) else f"max abs diff {np.abs(vecs - base).max():.1e}",
            ]
        )
        figures["ray_texts_per_s"] = len(texts) / t_ray
        figures["ray_overhead"] = t_ray / t_one
    print(f"\n{machine()}; all-MiniLM-L6-v2, {len(texts)} demo texts, batch {args.batch_size}\n")
    print(markdown_table(["encode", "texts/s", "seconds", "time vs one process", "same vectors"], rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
