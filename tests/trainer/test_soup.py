"""Model soups: the uniform average of several models' weights (seeds' models, or a run's last checkpoints)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from negminer import ConfigError, ModelError, build_demo
from negminer.trainer import TrainConfig, model_soup, train


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in load_file(str(path / "model.safetensors")).items()}


def test_a_soup_is_the_average_of_the_weights(tiny_model: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    out = model_soup([tiny_model, tiny_teacher], tmp_path / "soup")
    a, b, soup = _weights(tiny_model), _weights(tiny_teacher), _weights(out)
    assert set(soup) == set(a)
    for k in a:
        np.testing.assert_allclose(soup[k], (a[k].astype(np.float64) + b[k]) / 2, rtol=1e-6, atol=1e-7)
    assert (out / "soup.json").is_file() and (out / "modules.json").is_file()
    with pytest.raises(ConfigError, match="at least two"):
        model_soup([tiny_model], tmp_path / "one")


def test_the_soup_command(tiny_model: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from negminer.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["soup", str(tiny_model), str(tiny_teacher), "-o", str(tmp_path / "soup")])
    assert res.exit_code == 0 and "soup of 2 models" in res.output, res.output
    assert _weights(tmp_path / "soup").keys() == _weights(tiny_model).keys()
    res = runner.invoke(app, ["soup", str(tiny_model), str(tmp_path / "nothing"), "-o", str(tmp_path / "s2")])
    assert res.exit_code == 2 and "MODELS" in res.output, res.output


def test_models_of_other_shapes_are_refused(tiny_model: Path, tmp_path: Path) -> None:
    from tests.conftest import make_tiny_model

    wide = make_tiny_model(tmp_path / "wide", seed=0, hidden=48)
    with pytest.raises(ModelError, match="shape"):
        model_soup([tiny_model, wide], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


@pytest.mark.slow
def test_soup_last_averages_the_runs_last_checkpoints(tiny_model: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"),
        model=str(tiny_model),
        batch_size=4,
        max_steps=4,
        save_steps=2,
        soup_last=2,
        save_total_limit=1,  # raised to soup_last: the soup needs its checkpoints
        negatives="none",
        learning_rate=1e-2,
        cache_dir=str(tmp_path / "cache"),
        device="cpu",
        show_progress=False,
    )
    res = train(build_demo(40), cfg)
    assert res.model["saved"]["kind"] == "soup" and res.model["saved"]["soup_of"] == ["checkpoint-2", "checkpoint-4"]
    ckpt = tmp_path / "run" / "checkpoints"
    two, four, final = _weights(ckpt / "checkpoint-2"), _weights(ckpt / "checkpoint-4"), _weights(Path(res.model_path))
    changed = [k for k in two if not np.allclose(two[k], four[k])]
    assert changed  # the checkpoints differ, so the soup is neither of them
    for k in two:
        np.testing.assert_allclose(final[k], (two[k].astype(np.float64) + four[k]) / 2, rtol=1e-5, atol=1e-6)
