"""Real processes on 127.0.0.1 for the service tests: the API server and the fine-tuning worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(tmp_path: Path, model: Path | None, port: int, **extra: str) -> dict[str, str]:
    """Environment of a test service: its model (None: the service's default, all-MiniLM-L6-v2), cache, data dir
    and port, short job leases."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("NEGMINER_")}
    return {
        **inherited,
        **({"NEGMINER_MODEL": str(model)} if model is not None else {}),
        "NEGMINER_CACHE_DIR": str(tmp_path / "cache"),
        "NEGMINER_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        "NEGMINER_DATA_DIR": str(tmp_path / "data"),
        "NEGMINER_PORT": str(port),
        "NEGMINER_JOB_LEASE_SECONDS": "3",
        "NEGMINER_WORKER_POLL_SECONDS": "0.2",
        "NEGMINER_CANCEL_GRACE_SECONDS": "10",
        **extra,
    }


def start_server(tmp_path: Path, model: Path | None, port: int, *args: str, **env: str) -> subprocess.Popen:
    """``negminer serve`` (plus ``args``), returned once ``/readyz`` answers 200."""
    with open(tmp_path / f"serve-{port}.log", "ab") as log:  # the child keeps its own copy of the file
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "negminer.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
                *args,
            ],
            env=service_env(tmp_path, model, port, **env),
            stdout=log,
            stderr=log,
        )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("server did not become ready")


def start_worker(tmp_path: Path, model: Path, port: int, **env: str) -> subprocess.Popen:
    """``negminer worker`` on the same data dir; its log goes to ``tmp_path/worker-<pid>.log``."""
    with open(tmp_path / f"worker-{time.monotonic_ns()}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "negminer.cli", "worker"],
            env=service_env(tmp_path, model, port, **env),
            stdout=log,
            stderr=log,
        )


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
