"""The README's tour, run as written from an empty folder: every fenced block right after a
``<!-- readme-test: ... -->`` line, in order, against a real ``negminer serve --with-worker`` with its default model
(the bundled all-MiniLM-L6-v2); then the marked examples of ``docs/`` in the same folder. Only the port is changed,
so the README cannot drift from what works. The README stays a front door: short, and a link to every page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.service._procs import free_port, service_env, start_server, stop

pytestmark = pytest.mark.slow  # a real server, a short fine-tuning job of all-MiniLM-L6-v2

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"<!-- readme-test: (python|bash)[^>]*-->\n```(?:python|bash)\n(.*?)```", re.S)


def blocks(path: Path = README) -> list[tuple[str, str]]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def test_the_readme_is_a_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    kinds = [k for k, _ in blocks()]
    assert kinds.count("python") >= 2 and kinds.count("bash") >= 3
    assert len(text.splitlines()) <= 250
    assert "negminer demo --export-data" in blocks()[0][1]  # the tour makes its own data
    for page in DOCS:  # every page is reachable from the README, and every link from it lands
        assert f"](docs/{page.name}" in text, page.name
    for target in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / target).exists(), target


def test_the_readme_tour_runs_as_written_from_an_empty_folder(tmp_path: Path) -> None:
    tour = tmp_path / "tour"
    tour.mkdir()
    port = free_port()
    server = start_server(tmp_path, None, port, "--with-worker")  # its default model: all-MiniLM-L6-v2
    environ = service_env(tmp_path, None, port)
    # as after `. .venv/bin/activate`: `negminer` and `python` are this environment's
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    examples = blocks() + [b for page in DOCS for b in blocks(page)]
    try:
        for i, (kind, code) in enumerate(examples):
            code = code.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("localhost:8000", f"127.0.0.1:{port}")
            cmd = [sys.executable, "-c", code] if kind == "python" else ["bash", "-euo", "pipefail", "-c", code]
            t0 = time.perf_counter()
            run = subprocess.run(cmd, cwd=tour, env=environ, capture_output=True, text=True, timeout=400)
            print(f"block {i} ({kind}): {time.perf_counter() - t0:.1f}s")
            assert run.returncode == 0, f"README block {i} ({kind}) failed:\n{code}\n{run.stdout}\n{run.stderr}"
            assert "negminer.dev/problems" not in run.stdout, run.stdout  # curl prints problem+json answers too
            if "fine_tuning.jobs.create" in code:
                assert run.stdout.startswith("succeeded ft:all-MiniLM-L6-v2:docs:"), run.stdout
    finally:
        stop(server)
    log = (tmp_path / f"serve-{port}.log").read_text(errors="replace")  # what the tour's terminal showed
    noise = [
        line
        for line in log.splitlines()
        if any(word in line for word in (" alembic", " faiss", "ModuleNotFoundError", "deprecated", "Traceback"))
    ]
    assert noise == [], "\n".join(noise[:20])


def test_the_docs_name_every_service_setting() -> None:
    from negminer.service import ServiceSettings

    text = (ROOT / "docs" / "rest.md").read_text(encoding="utf-8")
    missing = [n for n in ServiceSettings.model_fields if f"| `NEGMINER_{n.upper()}` |" not in text]
    assert missing == []
