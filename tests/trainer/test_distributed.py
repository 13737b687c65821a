"""Data-parallel training on CPU: 2 processes over gloo, started by torchrun (the documented command) and by a job's
worker (``devices``). In-batch candidates are gathered across processes, rank 0 mines and every rank trains on its
negatives, and one model, one metrics file and one set of checkpoints come out."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from negminer import ConfigError, build_demo
from negminer.trainer import check_devices
from tests.conftest import make_tiny_model, write_jsonl

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    make_tiny_model(root / "tiny", seed=0, dropout=0.0)  # no dropout: both layouts compute the same function
    data = build_demo(60)
    rows = [{"query": q, "positive": data.corpus_texts[p]} for q, pos in zip(data.queries, data.positives) for p in pos]
    write_jsonl(root / "pairs.jsonl", rows)
    return root


def _train(
    root: Path, out: str, processes: int, *args: str, accelerate: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEGMINER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "negminer.cli"]
    if accelerate:  # accelerate's launcher (torchrun underneath) on a machine without GPUs
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", f"--num_processes={processes}"]
        launcher += [
            "--num_machines=1",
            "--mixed_precision=no",
            "--dynamo_backend=no",
            f"--main_process_port={_port()}",
        ]
        launcher += ["-m", "negminer.cli"]
    elif processes > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={processes}",
            f"--master-port={_port()}",
            "-m",
            "negminer.cli",
        ]
    cmd = [*launcher, "train", "pairs.jsonl", "-o", out, "--model", "tiny", "--cache-dir", "cache", "--no-filter"]
    return subprocess.run([*cmd, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _losses(root: Path, out: str) -> list[dict]:
    return json.loads((root / out / "metrics.json").read_text())["losses"]


def test_two_processes_take_the_first_step_one_process_takes_on_the_doubled_batch(setup: Path) -> None:
    same = ["--max-steps", "1", "--num-negatives", "1", "--logging-steps", "1", "--warmup-ratio", "0"]
    same += ["--max-pairs-per-query", "1"]  # a query once a batch: the per-query mean is the same either way
    one = _train(setup, "one", 1, "--batch-size", "8", *same)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _train(setup, "two", 2, "--batch-size", "4", *same)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _losses(setup, "one")[0], _losses(setup, "two")[0]
    assert a["step"] == b["step"] == 1
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)


def test_two_processes_with_a_refresh_end_with_one_model(setup: Path) -> None:
    res = _train(
        setup, "refresh", 2, "--batch-size", "4", "--max-steps", "4", "--negatives", "refresh", "--refresh-every", "2"
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = setup / "refresh"
    metrics = json.loads((out / "metrics.json").read_text())
    assert [(h["step"], h["event"]) for h in metrics["history"]] == [(0, "start"), (2, "refresh"), (4, "end")]
    assert [r["step"] for r in metrics["refreshes"]] == [0, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert (out / "model" / "model.safetensors").is_file()
    assert res.stdout.count("model: ") == 1  # rank 0 reports


def test_accelerate_launch_trains_on_two_processes(setup: Path) -> None:
    res = _train(
        setup, "accelerate", 2, "--batch-size", "4", "--max-steps", "2", "--negatives", "none", accelerate=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    speed = json.loads((setup / "accelerate" / "metrics.json").read_text())["speed"]
    assert speed["processes"] == 2 and (setup / "accelerate" / "model" / "model.safetensors").is_file()


def test_data_missing_on_a_rank_fails_every_rank_naming_it(setup: Path) -> None:
    script = setup / "agree.py"
    script.write_text(
        "import os\n"
        "from negminer import build_demo\n"
        "from negminer.trainer import agree_on_data\n"
        "rank = int(os.environ['RANK'])\n"
        "try:\n"
        "    agree_on_data(build_demo(20) if rank == 0 else None, None if rank == 0 else 'pairs.jsonl: no such file')\n"
        "except Exception as exc:\n"
        "    open(f'rank{rank}.txt', 'w').write(str(exc))\n"
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_port()}", str(script)]
    res = subprocess.run(cmd, cwd=setup, capture_output=True, text=True, timeout=120)
    for rank in (0, 1):  # each rank raised, with the same message
        said = setup / f"rank{rank}.txt"
        assert said.is_file(), res.stdout + res.stderr[-2000:]
        assert said.read_text() == "rank 1 of 2: pairs.jsonl: no such file"


def test_more_devices_than_the_machine_has_are_refused() -> None:
    check_devices(1)
    with pytest.raises(ConfigError, match=r"devices: 100000 processes asked for; this machine has"):
        check_devices(100000)
