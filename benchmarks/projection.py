"""MS MARCO on paper: 8.8M passages, 500k training queries, on 1, 8 and 32 GPUs, projected from the per-stage rates
this repository's benchmarks measured (``benchmarks/scale.py`` at 1M documents, ``benchmarks/encode_scale.py``).

What is measured and what is assumed:
* encode rate per device: measured on CPU; a GPU's rate is an assumption (``--gpu-texts-per-s``), since no GPU was
  measured here; encoding scales linearly with devices (the pool / Ray actors share nothing) times the measured
  Ray overhead when more than one machine is used (32 GPUs = 4 machines of 8);
* index build: the measured IVF build + tune at 1M, scaled linearly in n (k-means on 50 vectors per list with
  2 sqrt(n) lists, adds linear in n);
* mining: the measured search + filter time at 1M documents x 100k queries, scaled by queries and by sqrt(n) (an
  IVF query scans nprobe lists of n / nlist = sqrt(n) / 2 vectors; nprobe as tuned at 1M), divided over the CPU
  cores of the machines (``--cores-per-gpu``), as Ray tasks;
* memory: the IVF index (full vectors + ids) and IVF-PQ at the same budget rule as ``plan_index``.

    python benchmarks/projection.py [--scale runs/scale/n1000000] [--encode runs/encode.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table  # noqa: E402

from negminer.index import plan_index  # noqa: E402

PASSAGES, QUERIES, DIM = 8_841_823, 502_939, 384


def fmt_s(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="runs/scale/n1000000", help="folder of scale.py's 1M-document runs")
    ap.add_argument("--encode", default="runs/encode.json", help="encode_scale.py's figures")
    ap.add_argument("--gpu-texts-per-s", type=float, default=5000.0, help="ASSUMED all-MiniLM-L6-v2 fp16 rate")
    ap.add_argument("--cores-per-gpu", type=int, default=8, help="ASSUMED CPU cores a machine has per GPU")
    ap.add_argument("--measured-cores", type=int, default=2)
    args = ap.parse_args()

    ivf = json.loads((Path(args.scale) / "ivf.json").read_text())
    enc = json.loads(Path(args.encode).read_text())
    n1, q1 = 1_000_000, 100_000
    growth = PASSAGES / n1
    build = ivf["build_s"] * growth
    mine_2cores = ivf["search_filter_s"] * (QUERIES / q1) * math.sqrt(growth)
    ivf_plan = plan_index(PASSAGES, DIM, kind="ivf", memory_budget="1TB")
    pq_plan = plan_index(PASSAGES, DIM, memory_budget="4GB")
    rows = []
    cpu_rate = enc["one_process_texts_per_s"]
    rows.append(
        [
            f"CPU only, {args.measured_cores} cores (measured rates)",
            fmt_s(PASSAGES / cpu_rate),
            fmt_s(build),
            fmt_s(mine_2cores),
            fmt_s(PASSAGES / cpu_rate + build + mine_2cores),
        ]
    )
    for gpus in (1, 8, 32):
        machines = max(1, gpus // 8)
        overhead = enc.get("ray_overhead", 1.0) if machines > 1 else 1.0
        encode = PASSAGES / (args.gpu_texts_per_s * gpus) * overhead
        cores = gpus * args.cores_per_gpu
        mine = mine_2cores * args.measured_cores / cores * overhead
        rows.append(
            [
                f"{gpus} GPU{'s' if gpus > 1 else ''} ({machines} machine{'s' if machines > 1 else ''}, {cores} cores)",
                fmt_s(encode),
                fmt_s(build),
                fmt_s(mine),
                fmt_s(encode + build + mine),
            ]
        )
    print(
        f"\nMS MARCO passages ({PASSAGES:,} x {QUERIES:,} queries), 384-d; GPU encode rate ASSUMED "
        f"{args.gpu_texts_per_s:,.0f} texts/s a GPU; {args.cores_per_gpu} CPU cores a GPU; "
        f"CPU rates measured: encode {cpu_rate:.1f} texts/s, IVF build {ivf['build_s']:.0f} s and "
        f"search + filter {ivf['search_filter_s']:.0f} s at 1M x 100k\n"
    )
    print(markdown_table(["machine", "encode", "build IVF (+ tune)", "mine", "refresh (all three)"], rows))
    gib = 1 << 30
    print(
        f"\nMemory: IVF index {ivf_plan.memory_bytes / gib:.1f} GiB (nlist {ivf_plan.nlist}) per machine that "
        f"searches; IVF-PQ for a 4 GB budget: {pq_plan.pq_m} code bytes a vector, {pq_plan.memory_bytes / gib:.2f} "
        f"GiB (+ the {PASSAGES * DIM * 4 / gib:.1f} GiB vector file on disk, memory-mapped for exact re-scoring); "
        f"measured peak RSS at 1M with IVF: {ivf['peak_rss_gib']:.2f} GiB."
    )


if __name__ == "__main__":
    main()
