"""A throwaway PostgreSQL cluster for tests: initdb in a temporary folder, a free port, trust auth; ``stop`` and
``start`` let a test take the database away and bring it back (a real outage, not a mock)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest


def _postgres_bin() -> Path | None:
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    return Path(initdb).parent if initdb else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


class PostgresCluster:
    """``with PostgresCluster() as pg: pg.url``; skips the test when the server is not installed."""

    def __enter__(self) -> PostgresCluster:
        pytest.importorskip("psycopg")
        bindir = _postgres_bin()
        if bindir is None:
            pytest.skip("PostgreSQL server not installed (initdb not found)")
        if os.geteuid() == 0 and (
            shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode != 0
        ):
            pytest.skip("running as root without a postgres user")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="negminer-pg-"))  # directly in /tmp: the postgres user reaches it
        self.data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        subprocess.run(
            _as_postgres(
                [str(bindir / "initdb"), "-D", str(self.data), "-U", "negminer", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.start()
        return self

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://negminer@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -h 127.0.0.1"
        log = str(self.root / "pg.log")
        subprocess.run(
            _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", "-o", opts, "start"]),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        """Stop the server at once (``immediate``: connections are cut, as in a crash)."""
        subprocess.run(
            _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
