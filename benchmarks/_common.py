"""Helpers shared by the benchmark scripts.

Every table a benchmark prints through :func:`markdown_table` is also kept, and when the script ends they are
written to ``benchmarks/results/<script>.json`` (``<script>.<label>.json`` with ``NEGMINER_BENCH_LABEL=label``,
for a second set-up of the same script) with the command, the date and the machine. ``python
benchmarks/render.py`` puts them into ``docs/benchmarks.md``: the figures live in those files and nowhere else.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
_tables: list[dict[str, Any]] = []

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def wait_ready(proc: subprocess.Popen[Any], port: int, seconds: float = 120.0, log: Path | None = None) -> None:
    """Return once the ``negminer serve`` of ``proc`` on ``port`` answers ``/readyz`` with 200; kill it and raise
    after ``seconds``."""
    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the service did not start" + (f"; see {log}" if log else ""))


def machine() -> str:
    import torch

    return (
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} CPU cores, "
        f"{platform.machine()}, CUDA {'yes' if torch.cuda.is_available() else 'no'}"
    )


def _cell(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def render_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[object]], title: str | None = None) -> str:
    """The table as markdown; also kept for ``benchmarks/results/`` (see the module's docstring)."""
    cells = [[_cell(v) for v in r] for r in rows]
    if not _tables and Path(sys.argv[0]).resolve().parent == RESULTS.parent:  # a benchmark script's run
        atexit.register(save_results)
    _tables.append({"title": title, "header": [str(h) for h in header], "rows": cells})
    return render_table(header, cells)


def save_results(name: str | None = None) -> Path | None:
    """Write the tables printed so far to ``benchmarks/results/<name>.json`` (default: the script's name)."""
    if not _tables:
        return None
    script = Path(sys.argv[0]).stem
    label = os.environ.get("NEGMINER_BENCH_LABEL")
    name = name or (f"{script}.{label}" if label else script)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {
        "command": " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *map(shlex.quote, sys.argv[1:])]),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "tables": _tables,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"results: {path} (python benchmarks/render.py puts them in docs/benchmarks.md)", file=sys.stderr)
    return path


def st_recipe(
    pairs: Any,
    *,
    corpus: list[str] | None,
    model_path: str,
    out: Path,
    max_seq_length: int | None,
    num_negatives: int,
    max_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> tuple[Path, int]:
    """sentence-transformers' recipe as its users run it: ``mine_hard_negatives(relative_margin=0.05)`` on the
    (anchor, positive) ``pairs`` dataset, then MultipleNegativesRankingLoss (scale 20) in its own trainer. Saves
    the model to ``out / "model"``; returns (that folder, the rows the mining kept). Zero rows: the model is saved
    untrained, which is what the recipe gives its user."""
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from sentence_transformers.util import mine_hard_negatives

    model = SentenceTransformer(model_path, device="cpu")
    if max_seq_length:
        model.max_seq_length = max_seq_length
    ds = mine_hard_negatives(
        pairs,
        model,
        corpus=corpus,
        relative_margin=0.05,
        num_negatives=num_negatives,
        output_format="n-tuple",
        use_faiss=True,
        verbose=False,
        batch_size=64,
    )
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(out / "st"),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        warmup_steps=0.1,
        seed=seed,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    if len(ds):
        loss = MultipleNegativesRankingLoss(model, scale=20.0)
        SentenceTransformerTrainer(model=model, args=targs, train_dataset=ds, loss=loss).train()
    model.save(str(out / "model"))
    return out / "model", len(ds)
