"""The command line, through typer's runner (same process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from negminer.cli import app
from negminer.mining import RECOMMENDED_FILTER, TRAINING_FILTER
from tests.conftest import write_jsonl

runner = CliRunner()


def _pairs(tmp_path: Path) -> Path:
    rows = [
        {"query": f"how to sort item {i}", "positive": f"def sort_{i}(items):\n    return sorted(items)"}
        for i in range(12)
    ]
    rows.append({"query": "how to sort item 0", "positive": "def order(items):\n    return sorted(items)"})
    return write_jsonl(tmp_path / "pairs.jsonl", rows)


def test_mine_writes_outputs(tmp_path: Path, lexical_model: Path) -> None:
    out = tmp_path / "out"
    base = ["mine", str(_pairs(tmp_path)), "-o", str(out), "--model", str(lexical_model)]
    base += ["--cache-dir", str(tmp_path / "cache")]
    res = runner.invoke(app, [*base, "--num-negatives", "2", "--output-format", "n-tuple", "--output-scores"])
    assert res.exit_code == 0, res.output
    assert "12 queries" in res.output and "positive_neighbourhood" in res.output
    report = json.loads((out / "report.json").read_text())
    assert {k: report["config"][k] for k in RECOMMENDED_FILTER} == RECOMMENDED_FILTER and report["queries"] == 12
    assert report["filter"] == {"name": "recommended", "rules": RECOMMENDED_FILTER, "chosen_by": "default"}
    rows = [json.loads(line) for line in (out / "negatives.jsonl").read_text().splitlines()]
    assert rows and set(rows[0]) == {"anchor", "positive", "negative_1", "negative_2", "scores"}
    assert (out / "negatives.parquet").exists() and (out / "scores.png").exists()
    again = runner.invoke(app, [*base, "--no-filter"])
    assert again.exit_code == 0 and "0 texts encoded" in again.output
    report = json.loads((out / "report.json").read_text())
    assert all(report["config"].get(k) is None for k in RECOMMENDED_FILTER)
    assert report["filter"] == {"name": "none", "rules": {}, "chosen_by": "caller"}
    old = runner.invoke(app, [*base, "--no-margin"])  # the old name of --no-filter, no longer listed
    assert old.exit_code == 0 and json.loads((out / "report.json").read_text())["config"] == report["config"]
    assert "--no-margin" not in runner.invoke(app, ["mine", "--help"]).output
    both = runner.invoke(
        app, [*base, "--positive-neighbourhood", "2", "--adaptive-margin", "1", "--neighbourhood-window", "8"]
    )
    assert both.exit_code == 0, both.output
    report = json.loads((out / "report.json").read_text())
    assert list(report["removed"]) == ["positive_neighbourhood", "adaptive_margin"]  # the order they apply in
    assert report["config"]["neighbourhood_window"] == 8


def test_bad_input_exits_2_with_location(tmp_path: Path, lexical_model: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query": "q", "positive": "a"}, {"query": "q2"}])
    res = runner.invoke(app, ["mine", str(bad), "-o", str(tmp_path / "o"), "--model", str(lexical_model)])
    assert res.exit_code == 2
    assert "bad.jsonl:2: field 'positive': missing" in res.output
    assert not (tmp_path / "o").exists()  # nothing half-written
    res = runner.invoke(app, ["mine", str(bad), "--num-negatives", "0", "--model", str(lexical_model)])
    assert res.exit_code == 2 and "num_negatives" in res.output


def test_index_build_info_search(tmp_path: Path, lexical_model: Path) -> None:
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl", [{"_id": f"d{i}", "text": f"document about topic {i}"} for i in range(20)]
    )
    store = tmp_path / "store"
    args = ["--model", str(lexical_model), "--cache-dir", str(tmp_path / "cache")]
    res = runner.invoke(app, ["index", "build", str(corpus), "-o", str(store), *args])
    assert res.exit_code == 0, res.output
    assert "published version 1" in res.output
    info = runner.invoke(app, ["index", "info", str(store)])
    assert json.loads(info.output)["current"] == 1
    res = runner.invoke(app, ["index", "search", str(store), "document about topic 7", "-k", "3", *args])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[1].split()[-1] == "d7"
    meta = json.loads(info.output)["meta"]
    assert meta["kind"] == "flat" and meta["recall"]["recall"] == 1.0 and "exact search" in meta["plan"]["reason"]
    res = runner.invoke(app, ["index", "build", str(corpus), "-o", str(store), "--index", "hnsw", *args])
    assert res.exit_code == 0, res.output
    meta = json.loads(runner.invoke(app, ["index", "info", str(store)]).output)["meta"]
    assert meta["version"] == 2 and meta["kind"] == "hnsw" and meta["recall"]["recall"] >= 0.95
    bad = runner.invoke(app, ["index", "build", str(corpus), "-o", str(store), "--memory-budget", "lots", *args])
    assert bad.exit_code == 2 and "memory_budget" in bad.output


def test_version() -> None:
    from negminer import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"negminer {__version__}"


def test_help_on_every_command() -> None:
    for cmd in (
        ["--help"],
        ["mine", "--help"],
        ["demo", "--help"],
        ["index", "build", "--help"],
        ["index", "search", "--help"],
        ["index", "info", "--help"],
    ):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 0 and "Usage" in res.output


@pytest.mark.slow  # trains
def test_train_command(tmp_path: Path, tiny_model: Path) -> None:
    from negminer import build_demo

    data = build_demo(120)
    rows = [
        {"query": q, "positives": [data.corpus_texts[d] for d in pos]} for q, pos in zip(data.queries, data.positives)
    ]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "train",
            "--data",  # the older way to give DATA still works
            str(pairs),
            "-o",
            str(out),
            "--model",
            str(tiny_model),
            "--loss",
            "dcl",
            "--negatives",
            "mined",
            "--max-steps",
            "3",
            "--batch-size",
            "4",
            "--num-negatives",
            "1",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "zero-shot" in res.output and "step 3" in res.output
    assert (out / "model" / "modules.json").exists() and (out / "metrics.png").exists()
    bad = runner.invoke(app, ["train", str(pairs), "--model", str(tiny_model), "--batch-size", "1"])
    assert bad.exit_code == 2 and "batch_size: must be at least 2" in bad.output


@pytest.mark.slow  # trains
def test_train_on_the_tours_own_export_holds_out_validation_queries(tmp_path: Path, tiny_model: Path) -> None:
    """A newcomer's first ``negminer train data`` on ``negminer demo --export-data``'s folder trains: the trainer's
    hold-out is salted, so the export's train split (drawn by the unsalted hash) still has queries to hold out."""
    from negminer import load_data
    from negminer._data import VALIDATION_SALT

    data = tmp_path / "data"
    assert runner.invoke(app, ["demo", "--export-data", str(data), "--max-docs", "200"]).exit_code == 0
    pairs = load_data(data / "train.jsonl")
    train_part, held = pairs.split(0.2, salt=VALIDATION_SALT)
    assert len(held) >= 0.1 * len(pairs) and len(train_part) >= 0.7 * len(pairs)
    assert len(pairs.split(0.2)[1]) == 0  # the unsalted split: what made the export, and the old trap
    out = tmp_path / "run"
    args = ["--model", str(tiny_model), "--max-steps", "2", "--batch-size", "4", "--cache-dir", str(tmp_path / "c")]
    res = runner.invoke(app, ["train", str(data), "-o", str(out), *args])
    assert res.exit_code == 0, res.output
    assert (out / "model" / "modules.json").exists()
    tiny = write_jsonl(tmp_path / "two.jsonl", [{"query": "read a file", "positive": "def read(): ..."}] * 2)
    res = runner.invoke(app, ["train", str(tiny), "-o", str(tmp_path / "r2"), *args])
    assert res.exit_code == 2 and "no validation queries" in res.output and "--validation" in res.output


def test_the_installed_command_sets_up_logging(monkeypatch) -> None:
    """``negminer`` runs ``negminer.cli:main`` (logging first, from NEGMINER_LOG_LEVEL), not the bare typer app."""
    import logging
    from importlib.metadata import entry_points

    from negminer import cli

    (script,) = entry_points(group="console_scripts", name="negminer")
    assert script.value == "negminer.cli:main"
    seen = {}
    monkeypatch.setenv("NEGMINER_LOG_LEVEL", "INFO")
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: seen.update(kw))
    monkeypatch.setattr(cli, "app", lambda: seen.setdefault("ran", True))
    cli.main()
    assert seen["level"] == "INFO" and seen["ran"] is True


@pytest.mark.slow  # trains a few dozen steps
def test_demo_mines_trains_and_reports(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "demo"
    res = runner.invoke(
        app,
        [
            "demo",
            "-o",
            str(out),
            "--max-docs",
            "200",
            "--model",
            str(tiny_model),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--refresh-every",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "positive_neighbourhood" in res.output and "zero-shot" in res.output and "nDCG@10" in res.output
    history = json.loads((out / "train" / "metrics.json").read_text())["history"]
    assert history[0]["event"] == "start" and history[-1]["event"] == "end"
    mining = json.loads((out / "train" / "metrics.json").read_text())["config"]["mining"]
    assert mining == {"filter": "training", **TRAINING_FILTER}
    assert (out / "negatives.jsonl").exists() and (out / "examples.json").exists()
    # only the final model stays: no trainer checkpoints (optimizer state) or refresh models; the size is said
    assert not (out / "train" / "checkpoints").exists() and not (out / "train" / "refresh").exists()
    assert f"{out} holds" in res.output and "{'train_runtime'" not in res.output


def test_output_must_name_a_folder(tmp_path: Path, lexical_model: Path) -> None:
    """``-o negatives.jsonl`` used to make a folder of that name; it is refused, saying what to do."""
    res = runner.invoke(app, ["mine", str(_pairs(tmp_path)), "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "--output names a folder" in res.output and not (tmp_path / "x.jsonl").exists()


@pytest.mark.slow  # a real process, signalled while it trains
def test_train_stopped_by_sigterm_saves_a_checkpoint_and_resumes(tmp_path: Path, lexical_model: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from negminer import build_demo

    data = build_demo(120)
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"query": q, "positives": [data.corpus_texts[p] for p in pos]}
            for q, pos in zip(data.queries, data.positives)
        ],
    )
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "negminer.cli", "train", str(pairs), "-o", str(out)]
    cmd += ["--model", str(lexical_model), "--max-steps", "100000", "--batch-size", "4", "--num-negatives", "1"]
    cmd += ["--save-steps", "100000", "--cache-dir", str(tmp_path / "cache"), "--logging-steps", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NEGMINER_DEVICE": "cpu"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoints").exists() and not (out / "metrics.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # some steps
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "stopping after this step with a checkpoint" in output and "--resume" in output
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert ckpts and (ckpts[-1] / "trainer_state.json").exists(), output


def test_an_unknown_model_is_refused_before_any_data_is_read(tmp_path: Path, monkeypatch) -> None:
    """With downloads off, a model that is neither a folder nor cached is refused at once, naming the flag and the
    bundled model, before the data is read (the data file here does not even exist)."""
    from typer.testing import CliRunner

    from negminer.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()
    missing = str(tmp_path / "no-such-data.jsonl")
    res = runner.invoke(app, ["mine", missing, "--model", "nope-model", "-o", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "--model" in res.output and "all-MiniLM-L6-v2" in res.output and "no-such-data" not in res.output
    res = runner.invoke(app, ["mine", missing, "--model", str(tmp_path), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and "not a model folder" in res.output


@pytest.mark.parametrize(
    "command",
    [[], ["mine"], ["train"], ["demo"], ["serve"], ["worker"], ["soup"], ["index", "build"], ["index", "search"]],
)
def test_help_is_readable_at_80_columns(command: list[str]) -> None:
    """Every flag name is whole and every line fits 80 columns (rich's tables cut names such as
    --positive-neighbourhood)."""
    res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert res.exit_code == 0, res.output
    assert "…" not in res.output
    assert max(len(line) for line in res.output.splitlines()) <= 80
    if command in (["mine"], ["train"]):
        assert "--positive-neighbourhood" in res.output
        assert ".parquet" in res.output and ".csv" in res.output  # what DATA may be


def test_errors_give_the_right_column_and_no_pydantic_prefix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "a", "positive": "b"}\n{"query": "é", "positive": "d" "x"}\n', encoding="utf-8")
    res = runner.invoke(app, ["mine", str(bad)])
    assert res.exit_code == 2 and "bad.jsonl:2: broken JSON: Expecting ',' delimiter at column 32" in res.output
    for flags in (["--range-min", "5", "--range-max", "3"], ["--max-steps", "0"]):
        command = "train" if "--max-steps" in flags else "mine"
        res = runner.invoke(app, [command, str(bad), *flags])
        assert res.exit_code == 2 and "error: " in res.output and "Value error" not in res.output, res.output
