"""The training loop end to end on a tiny model: refreshes, evaluation, outputs, resume, async sources, bad input."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from negminer import ConfigError, DataError, Encoder, ModelError, build_demo
from negminer.trainer import (
    CheckpointEvent,
    EvaluationEvent,
    LocalNegativeSource,
    LogEvent,
    RefreshEvent,
    TrainConfig,
    TrainListener,
    train,
)
from tests.conftest import train_config


@pytest.fixture(scope="module")
def small():
    return build_demo(120)


def _cfg(tmp_path: Path, model: Path, **kw) -> TrainConfig:
    return train_config(tmp_path, model, **{"max_steps": 5, "num_negatives": 2, "logging_steps": 1, **kw})


class Recorder(TrainListener):
    """Hears everything; asks the run to stop once it has seen ``stop_at`` steps' logs."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.heard: list[tuple[str, int]] = []
        self.stop_at = stop_at

    def on_log(self, event: LogEvent) -> None:
        assert event.loss == event.loss and event.learning_rate >= 0
        self.heard.append(("log", event.step))

    def on_evaluation(self, event: EvaluationEvent) -> None:
        assert set(event.metrics) >= {"ndcg@10", "recall@100", "mrr@10"}
        self.heard.append((event.event, event.step))

    def on_refresh(self, event: RefreshEvent) -> None:
        self.heard.append(("negatives", event.step))

    def on_checkpoint(self, event: CheckpointEvent) -> None:
        assert Path(event.path).name == f"checkpoint-{event.step}"
        self.heard.append(("checkpoint", event.step))

    def should_stop(self) -> bool:
        return self.stop_at is not None and sum(k == "log" for k, _ in self.heard) >= self.stop_at


@pytest.mark.slow  # trains
def test_refresh_mode_end_to_end(small, tiny_model: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    heard = Recorder()
    cfg = _cfg(tmp_path, tiny_model, negatives="refresh", loss="decoupled", report_to=["tensorboard"])
    res = train(small, cfg, listener=heard)
    assert heard.heard[:2] == [("start", 0), ("negatives", 0)] and heard.heard[-1] == ("end", 5)
    assert [s for k, s in heard.heard if k == "log"] == [1, 2, 3, 4, 5]
    assert [s for k, s in heard.heard if k == "checkpoint"] == [2, 4, 5]
    assert [s for k, s in heard.heard if k == "negatives"] == [0, 2, 4]
    events = [(h["event"], h["step"]) for h in res.history]
    assert events == [("start", 0), ("refresh", 2), ("refresh", 4), ("end", 5)]
    assert [r["version"] for r in res.refreshes] == [1, 2, 3] and [r["step"] for r in res.refreshes] == [0, 2, 4]
    for h in res.history:
        assert 0 <= h["ndcg@10"] <= 1 and 0 <= h["recall@100"] <= 1 and h["queries"] > 0
    out = Path(res.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"] == res.history and [x["step"] for x in metrics["losses"]] == [1, 2, 3, 4, 5]
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    # report_to: the trainer's loss and negminer's evaluations and refreshes, in TensorBoard's files
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(out / "tensorboard")).Reload()
    tags = set(board.Tags()["scalars"])
    assert {"train/loss", "eval/ndcg@10", "eval/recall@100", "train/refresh_version"} <= tags, tags
    assert [e.step for e in board.Scalars("eval/ndcg@10")] == [0, 2, 4, 5]
    assert [e.value for e in board.Scalars("train/refresh_version")] == [1.0, 2.0, 3.0]
    tuned = SentenceTransformer(res.model_path, device="cpu")
    base = SentenceTransformer(str(tiny_model), device="cpu")
    assert any((a != b).any() for a, b in zip(tuned.state_dict().values(), base.state_dict().values()))


@pytest.mark.slow  # trains
def test_in_batch_only_stop_and_resume(small, tiny_model: Path, tmp_path: Path) -> None:
    stopped = train(small, _cfg(tmp_path, tiny_model, negatives="none", max_steps=4), listener=Recorder(stop_at=2))
    assert stopped.stopped and stopped.steps == 3 and stopped.model_path == ""  # logs arrive after the step ends
    cfg = _cfg(tmp_path, tiny_model, negatives="none", max_steps=4, resume=True)
    res = train(small, cfg)
    assert res.refreshes == [] and res.after["step"] == 4
    assert [h["step"] for h in res.history] == [0, 4]  # the start evaluation is not repeated on resume
    again = train(small, _cfg(tmp_path, tiny_model, negatives="none", max_steps=6, resume=True))
    assert again.after["step"] == 6


class SlowSource(LocalNegativeSource):
    """An asynchronous source: results appear two polls after a refresh (like an HTTP index building)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.polls_left = 0

    def refresh(self, checkpoint: str) -> None:
        super().refresh(checkpoint)
        self.polls_left = 2

    def poll(self):
        if self.polls_left:
            self.polls_left -= 1
            return None
        return super().poll()


@pytest.mark.slow  # trains
def test_training_does_not_wait_for_an_async_refresh(small, tiny_model: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, tiny_model, negatives="refresh", refresh_every=2, max_steps=6)
    train_part, val = small.split(0.3)
    src = SlowSource(
        train_part,
        cfg.mining_config(),
        encoder=partial(Encoder, cache_dir=cfg.cache_dir, device="cpu"),
        show_progress=False,
    )
    res = train(train_part, cfg, validation=val, source=src)
    # refreshed at steps 2 and 4, but each result arrived two steps later, while training went on
    assert [r["step"] for r in res.refreshes] == [0, 4, 6]
    assert [h["step"] for h in res.history if h["event"] == "refresh"] == [2, 4]


def test_bad_input_fails_before_training(small, tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loss: must be one of infonce, decoupled, dcl"):
        TrainConfig(loss="triplet")
    with pytest.raises(ConfigError, match="negatives"):
        TrainConfig(negatives="sometimes")
    with pytest.raises(ConfigError, match="mining: .*range_min"):
        TrainConfig(num_negatives=1, mining={"range_min": 5, "range_max": 5})
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=1)
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "x.txt").write_text("x")
    with pytest.raises(ModelError, match="not a sentence-transformers"):
        train(small, _cfg(tmp_path, tmp_path / "notamodel"))
    with pytest.raises(DataError, match="no validation queries: holding out"):
        train(small.subset([0]), _cfg(tmp_path, tiny_model))
    with pytest.raises(ConfigError, match="resume: no complete checkpoint"):
        train(small, _cfg(tmp_path / "fresh", tiny_model, resume=True))
    assert not (tmp_path / "run" / "model").exists()


def test_last_checkpoint_skips_one_cut_short(tmp_path) -> None:
    """A process killed while saving leaves a checkpoint without its trainer_state.json (written last)."""
    from negminer.trainer import last_checkpoint

    assert last_checkpoint(tmp_path) is None
    for step, state in ((5, '{"global_step": 5}'), (10, '{"global_step": 10}'), (15, None), (20, '{"glob')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_refresh_encodes_on_the_gpus_training_leaves_free(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from negminer.trainer._train import spare_devices

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert spare_devices("cuda:1") == ["cuda:0", "cuda:2", "cuda:3"]
    assert spare_devices("auto") == ["cuda:1", "cuda:2", "cuda:3"]
    assert spare_devices("cpu") == []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert spare_devices("cuda") == []


def test_max_pairs_per_query_caps_rows_and_keeps_the_rest_known() -> None:
    from negminer import RetrievalData
    from negminer.trainer._train import NegativeTable

    corpus = [f"doc {i}" for i in range(10)]
    data = RetrievalData([f"d{i}" for i in range(10)], corpus, ["a", "b"], ["qa", "qb"], [[5, 1, 3, 7], [2]])
    capped = NegativeTable(data, num_negatives=1, seed=0, max_pairs=2)
    assert capped.rows == [(0, 1), (0, 5), (1, 2)]  # the first two positives as listed, then in corpus order
    assert capped.known_positives == {0: {1, 3, 5, 7}, 1: {2}}  # every positive stays known
    assert NegativeTable(data, num_negatives=1, seed=0).rows == [(0, 1), (0, 3), (0, 5), (0, 7), (1, 2)]
    with pytest.raises(ConfigError, match="max_pairs_per_query"):
        TrainConfig(max_pairs_per_query=0)


@pytest.mark.slow  # trains
def test_a_loss_that_turns_non_finite_stops_the_run_and_saves_no_model(small, tiny_model: Path, tmp_path: Path) -> None:
    """A temperature of 1e-45 is finite and positive, but cos / 1e-45 overflows float32: the loss is NaN from the
    first step. The run stops there with the step named; no model folder is written."""
    from negminer import NonFiniteError

    cfg = _cfg(tmp_path, tiny_model, negatives="none", max_steps=4, temperature=1e-45, save_steps=1)
    with pytest.raises(NonFiniteError) as caught:
        train(small, cfg, listener=Recorder())
    assert caught.value.code == "non_finite_loss" and caught.value.step == 1
    assert "step 1" in str(caught.value)
    assert not (tmp_path / "run" / "model").exists()


def test_finite_weights_reads_the_saved_tensors(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from negminer.trainer import finite_weights

    assert finite_weights(tiny_model)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    f = next(broken.rglob("*.safetensors"))
    tensors = load_file(str(f))
    first = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[first] = tensors[first].clone().fill_(float("nan"))
    save_file(tensors, str(f))
    assert not finite_weights(broken) and torch.isnan(load_file(str(f))[first]).all()
