"""The README's examples, run as written: every fenced block right after a ``<!-- readme-test: ... -->`` line, in
a folder holding the demo data's ``train.jsonl``, against a real ``negminer serve --with-worker`` with its default
model (the bundled all-MiniLM-L6-v2). Only the port is changed, so the README cannot drift from what works."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service._procs import free_port, service_env, start_server, stop

pytestmark = pytest.mark.slow  # a real server, a short fine-tuning job of all-MiniLM-L6-v2

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"<!-- readme-test: (python|bash)[^>]*-->\n```(?:python|bash)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(README.read_text(encoding="utf-8"))


def test_the_readme_marks_its_examples() -> None:
    kinds = [k for k, _ in blocks()]
    assert kinds.count("python") >= 3 and kinds.count("bash") >= 2


def test_the_readme_examples_run_as_written(tmp_path: Path) -> None:
    from negminer import build_demo

    data = build_demo(120)
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as fh:
        for q, pos in zip(data.queries, data.positives):
            fh.write(json.dumps({"query": q, "positives": [data.corpus_texts[p] for p in pos]}) + "\n")
    port = free_port()
    server = start_server(tmp_path, None, port, "--with-worker")  # its default model: all-MiniLM-L6-v2
    environ = service_env(tmp_path, None, port)
    try:
        for i, (kind, code) in enumerate(blocks()):
            code = code.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("localhost:8000", f"127.0.0.1:{port}")
            cmd = [sys.executable, "-c", code] if kind == "python" else ["bash", "-euo", "pipefail", "-c", code]
            run = subprocess.run(cmd, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=400)
            assert run.returncode == 0, f"README block {i} ({kind}) failed:\n{code}\n{run.stdout}\n{run.stderr}"
            assert "negminer.dev/problems" not in run.stdout, run.stdout  # curl prints problem+json answers too
            if "fine_tuning.jobs.create" in code:
                assert run.stdout.startswith("succeeded ft:all-MiniLM-L6-v2:docs:"), run.stdout
    finally:
        stop(server)


def test_the_readme_names_every_service_setting() -> None:
    from negminer.service import ServiceSettings

    text = README.read_text(encoding="utf-8")
    missing = [n for n in ServiceSettings.model_fields if f"| `NEGMINER_{n.upper()}` |" not in text]
    assert missing == []
