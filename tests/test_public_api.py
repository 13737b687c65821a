"""Pins the public API: what ``__all__`` exports, so a change to it is a deliberate one."""

import negminer
import negminer.index
import negminer.mining
import negminer.service
import negminer.trainer
import negminer.trainer.losses


def test_top_level_api() -> None:
    assert sorted(negminer.__all__) == sorted([
        "ConfigError", "DataError", "Encoder", "IndexFileError", "MiningConfig", "MiningResult", "ModelError",
        "NegminerError", "RetrievalData", "__version__", "build_demo", "from_hf_dataset", "load_beir", "load_data",
        "load_pairs", "mine",
    ])


def test_subpackage_apis() -> None:
    assert sorted(negminer.index.__all__) == sorted([
        "CorpusIndex", "EmbeddingCache", "EncodeStats", "Encoder", "IndexNotFound", "IndexRegistry", "IndexStore",
        "VectorIndex", "build_index",
        "default_model_path", "faiss_available", "faiss_gpu_count", "fingerprint_model",
    ])
    assert "mine" in negminer.mining.__all__ and "adaptive_thresholds" in negminer.mining.__all__
    assert sorted(negminer.trainer.__all__) == sorted([
        "LOSSES", "NEGATIVE_MODES", "DCLLoss", "DecoupledSoftmaxLoss", "FalseNegativeFilter", "InfoNCELoss",
        "HttpNegativeSource", "LocalNegativeSource", "NegativeSource", "NegativesUpdate", "TrainConfig",
        "TrainResult", "evaluate", "last_checkpoint", "retrieval_metrics",
        "train",
    ])
    assert set(negminer.trainer.losses.LOSSES) == {"infonce", "decoupled", "dcl"}
    assert sorted(negminer.service.__all__) == ["JobStore", "ServiceSettings", "Worker", "create_app"]
    for mod in (negminer, negminer.index, negminer.mining, negminer.trainer, negminer.service):
        for name in mod.__all__:
            assert hasattr(mod, name), name


def test_library_never_imports_the_service() -> None:
    """Only the service itself and the command line (which starts it) import ``negminer.service``."""
    import ast
    from pathlib import Path

    root = Path(negminer.__file__).parent
    for path in root.rglob("*.py"):
        if "service" in path.relative_to(root).parts or path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("negminer.service"), path
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("negminer.service") for a in node.names), path


def test_error_hierarchy() -> None:
    for exc in (negminer.DataError, negminer.ConfigError, negminer.ModelError, negminer.IndexFileError):
        assert issubclass(exc, negminer.NegminerError)
    assert issubclass(negminer.DataError, ValueError)
    e = negminer.DataError("empty text", file="a.jsonl", line=3, field="text")
    assert str(e) == "a.jsonl:3: field 'text': empty text"
