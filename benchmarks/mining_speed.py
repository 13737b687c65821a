"""Mining speed against sentence-transformers' ``mine_hard_negatives``, same model, data and settings, one run.

Rows: cold mining (nothing cached), a re-run with an unchanged model (sentence-transformers re-encodes; with its
``cache_folder`` it reads a whole-corpus file keyed on the model *name*), and negminer's warm re-run (embedding
cache keyed on the model's weights). negminer's time is split into encode / index / search / filter, and the
filter time's share spent by the positive-neighbourhood rule (the recommended filter: document-to-document cosines
to every known positive) is shown on the natural demo data and on its many-positives (``harsh``) variant, where
the rule does the most work.

    python benchmarks/mining_speed.py [--max-docs 1000] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table  # noqa: E402

from negminer import Encoder, build_demo, mine  # noqa: E402
from negminer.index import default_model_path  # noqa: E402
from negminer.mining import RECOMMENDED_FILTER  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-docs", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--relative-margin", type=float, default=0.05)
    ap.add_argument("--num-negatives", type=int, default=3)
    args = ap.parse_args()

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    model_path = default_model_path()
    data = build_demo(args.max_docs)
    pairs = data.to_pairs_dataset()
    settings = {"relative_margin": args.relative_margin, "num_negatives": args.num_negatives}
    tmp = Path(tempfile.mkdtemp(prefix="negminer-bench-"))
    rows: list[list[object]] = []
    try:
        st_model = SentenceTransformer(model_path, device="cpu")

        def st_run(label: str, cache: Path | None) -> float:
            t0 = time.perf_counter()
            mine_hard_negatives(
                pairs,
                st_model,
                use_faiss=True,
                batch_size=args.batch_size,
                verbose=False,
                cache_folder=str(cache) if cache else None,
                **settings,
            )
            dt = time.perf_counter() - t0
            rows.append([label, round(dt, 2), "", "", "", "", ""])
            return dt

        st_cold = st_run("sentence-transformers, cold (writes cache_folder)", tmp / "st-cache")
        st_rerun = st_run("sentence-transformers, re-run", None)
        st_cached = st_run("sentence-transformers, re-run with cache_folder", tmp / "st-cache")

        def ours(label: str, options: dict | None = None, on: object = data) -> tuple[float, dict]:
            enc = Encoder(
                model_path, device="cpu", batch_size=args.batch_size, cache_dir=tmp / "nm-cache", show_progress=False
            )
            t0 = time.perf_counter()
            res = mine(on, enc, show_progress=False, **(options or settings))
            dt = time.perf_counter() - t0
            t = res.report.timings
            rows.append([label, round(dt, 2), t["encode"], t["index"], t["search"], t["filter"], t["neighbourhood"]])
            return dt, t

        cold, t_cold = ours("negminer, cold")
        warm, _ = ours("negminer, warm re-run (unchanged model)")
        recommended = {**RECOMMENDED_FILTER, "num_negatives": args.num_negatives}
        _, t_nb = ours(f"negminer, warm, recommended filter {RECOMMENDED_FILTER}", recommended)
        harsh = build_demo(args.max_docs, harsh=True)
        _, t_harsh = ours(
            f"negminer, harsh demo ({harsh.num_pairs} pairs), cold, recommended filter", recommended, harsh
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"# Mining speed ({machine()})\n")
    print(
        f"{len(data)} queries, {len(data.corpus_texts)} documents (demo data), {settings}, "
        f"batch size {args.batch_size}, exact FAISS search on CPU\n"
    )
    print(
        markdown_table(
            ["run", "total s", "encode s", "index s", "search s", "filter s", "of which neighbourhood s"], rows
        )
    )
    search_filter = t_cold["search"] + t_cold["filter"]
    print()
    print(
        markdown_table(
            ["check", "value", "target"],
            [
                [
                    "cold: negminer / sentence-transformers time",
                    f"{cold / st_cold:.2f}x",
                    "about 1x (encoding dominates)",
                ],
                ["warm re-run speed-up vs sentence-transformers re-run", f"{st_rerun / warm:.0f}x", ">= 20x"],
                ["warm re-run speed-up vs sentence-transformers cache_folder", f"{st_cached / warm:.1f}x", "(info)"],
                ["cold: (search + filter) / encode", f"{search_filter / t_cold['encode']:.2%}", "<= 10%"],
                [
                    "neighbourhood rule / cold encode, natural",
                    f"{t_nb['neighbourhood'] / t_cold['encode']:.2%}",
                    "<= 5%",
                ],
                [
                    "neighbourhood rule / cold encode, many positives",
                    f"{t_harsh['neighbourhood'] / t_harsh['encode']:.2%}",
                    "<= 5%",
                ],
            ],
        )
    )


if __name__ == "__main__":
    main()
