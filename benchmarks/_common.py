"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def machine() -> str:
    import torch

    return (
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} CPU cores, "
        f"{platform.machine()}, CUDA {'yes' if torch.cuda.is_available() else 'no'}"
    )


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
