"""Pins the public API: what ``__all__`` exports, so a change to it is a deliberate one."""

import pytest

import negminer
import negminer.client
import negminer.index
import negminer.jobs
import negminer.mining
import negminer.service
import negminer.trainer
import negminer.trainer.losses


def test_top_level_api() -> None:
    assert sorted(negminer.__all__) == sorted(
        [
            "ConfigError",
            "DataError",
            "Encoder",
            "IndexFileError",
            "MiningConfig",
            "MiningResult",
            "ModelError",
            "NegminerError",
            "NonFiniteError",
            "RetrievalData",
            "__version__",
            "build_demo",
            "from_hf_dataset",
            "load_beir",
            "load_corpus",
            "load_data",
            "load_pairs",
            "mine",
        ]
    )


def test_subpackage_apis() -> None:
    assert sorted(negminer.index.__all__) == sorted(
        [
            "AUTO_FLAT_MAX",
            "DEFAULT_MODEL_NAMES",
            "CorpusIndex",
            "DiskTexts",
            "EmbeddingCache",
            "EncodeStats",
            "Encoder",
            "IndexConfig",
            "IndexPlan",
            "IndexStore",
            "VectorIndex",
            "build_index",
            "check_model",
            "default_memory_budget",
            "default_model_path",
            "exact_search",
            "faiss_available",
            "faiss_gpu_count",
            "fingerprint_model",
            "model_ref",
            "plan_index",
            "ray_encode",
            "recall_at_k",
        ]
    )
    assert sorted(negminer.mining.__all__) == sorted(
        [
            "FILTERS",
            "OUTPUT_FORMATS",
            "RECOMMENDED_FILTER",
            "RULES",
            "TRAINING_FILTER",
            "BiEncoderTeacher",
            "CrossEncoderTeacher",
            "MiningConfig",
            "MiningReport",
            "MiningResult",
            "Teacher",
            "absolute_margin_mask",
            "adaptive_thresholds",
            "max_score_mask",
            "min_score_mask",
            "mine",
            "mine_vectors",
            "neighbourhood_z",
            "positive_neighbourhood_mask",
            "positive_reference",
            "relative_margin_mask",
            "select_negatives",
            "sibling_thresholds",
            "threshold_mask",
        ]
    )
    assert negminer.mining.RULES[0] == "positive_neighbourhood" and set(negminer.mining.FILTERS) < set(
        negminer.mining.RULES
    )
    assert sorted(negminer.trainer.__all__) == sorted(
        [
            "LOSSES",
            "NEGATIVE_MODES",
            "DCLLoss",
            "DecoupledSoftmaxLoss",
            "FalseNegativeFilter",
            "InfoNCELoss",
            "LocalNegativeSource",
            "NegativeSource",
            "NegativeSourceFactory",
            "NegativesUpdate",
            "TrainConfig",
            "TrainHyperparameters",
            "TrainListener",
            "TrainResult",
            "CheckpointEvent",
            "EvaluationEvent",
            "LogEvent",
            "RefreshEvent",
            "ResumeEvent",
            "agree_on_data",
            "check_devices",
            "check_hardware",
            "check_model_options",
            "current_process",
            "evaluate",
            "finite_weights",
            "last_checkpoint",
            "launch",
            "model_soup",
            "on_cpu",
            "retrieval_metrics",
            "train",
        ]
    )
    assert set(negminer.trainer.losses.LOSSES) == {"infonce", "decoupled", "dcl"}
    assert sorted(negminer.service.__all__) == sorted(
        [
            "ChecksumMismatch",
            "IndexBusy",
            "IndexDeleting",
            "IndexExists",
            "IndexNotFound",
            "IndexNotReady",
            "IndexRegistry",
            "LeaseExpired",
            "ModelUploads",
            "ServiceSettings",
            "UnsafeArchive",
            "UploadNotFound",
            "UploadTooLarge",
            "create_app",
        ]
    )
    assert sorted(negminer.client.__all__) == [
        "ArchiveError",
        "HttpNegativeSource",
        "ServiceError",
        "schemas",
        "uploads",
    ]
    assert sorted(negminer.jobs.__all__) == sorted(
        [
            "TERMINAL",
            "CheckpointRow",
            "EventRow",
            "FileGone",
            "FileInUse",
            "FileRow",
            "JobAlreadyEnded",
            "JobRow",
            "ModelRow",
            "JobStore",
            "StoreUnavailable",
            "Worker",
            "cancel_job",
            "model_name",
            "submit_job",
        ]
    )
    mods = (
        negminer,
        negminer.index,
        negminer.mining,
        negminer.trainer,
        negminer.client,
        negminer.jobs,
        negminer.service,
    )
    for mod in mods:
        for name in mod.__all__:
            assert hasattr(mod, name), name


# Layers, lowest first: a module may import its own layer and the ones below it, never one above.
LAYERS = ["foundation", "index", "mining", "trainer", "client", "jobs", "service", "cli"]


# Inside a package, layers too: the service's domain modules (what the routes call) know nothing of HTTP; its web
# modules (routes, the app, the server, HTTP error mapping) sit on top of them.
SUBLAYERS = {
    "negminer.service": [
        [
            "exceptions",
            "paths",
            "batching",
            "uploads",
            "records",
            "operations",
            "registry",
            "model_names",
            "embeddings",
            "mining",
        ],
        ["errors", "guard", "deps", "api", "app", "server"],
    ],
}


def _sublayer(module: str) -> tuple[str, int] | None:
    """(package, rank) of a module inside a package with SUBLAYERS, or None."""
    for package, layers in SUBLAYERS.items():
        if module.startswith(package + "."):
            head = module[len(package) + 1 :].split(".")[0]
            for rank, names in enumerate(layers):
                if head in names:
                    return package, rank
    return None


def _layer(module: str) -> str:
    """``negminer._io`` -> foundation, ``negminer.mining._miner`` -> mining, ``negminer.cli`` -> cli."""
    parts = module.split(".")
    if len(parts) == 1:  # the package itself re-exports index and mining
        return "mining"
    return parts[1] if parts[1] in LAYERS else "foundation"


def _imports(path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``import`` / ``from ... import`` of negminer modules in a file."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "negminer":
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "negminer"]
    return found


def layer_problems(path, module: str) -> list[str]:
    """What module ``module`` (its source at ``path``) breaks of the layering: an import of a layer above its own,
    of another package's private module, or of another package's private names."""
    from pathlib import Path

    root = Path(negminer.__file__).parent
    own = _layer(module)
    own_package = module.split(".")[:-1] if Path(path).name != "__init__.py" else module.split(".")
    problems = []
    for target, names in _imports(Path(path)):
        if target == "negminer" and own in ("foundation", "index", "mining") and module != "negminer":
            problems.append(f"{module} imports the negminer package (which imports it)")
        elif LAYERS.index(_layer(target)) > LAYERS.index(own):
            problems.append(f"{module} ({own}) imports {target} ({_layer(target)})")
        here, there = _sublayer(module), _sublayer(target)
        if here and there and here[0] == there[0] and there[1] > here[1]:
            problems.append(f"{module} (a domain module) imports {target} (web)")
        parts = target.split(".")
        for depth, part in enumerate(parts):
            if part.startswith("_") and depth >= 1 and part != "_internal":  # _internal: shared plumbing
                package = parts[:depth]
                shared = package == ["negminer"]  # the foundation's private modules serve every layer
                if not shared and own_package[: len(package)] != package:
                    problems.append(f"{module} imports the private module {target}")
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        target_package = parts if (root.parent / Path(*parts)).is_dir() else parts[:-1]
        if private and own_package[: len(target_package)] != target_package:
            problems.append(f"{module} imports private names {private} from {target}")
    return problems


def test_layers_hold() -> None:
    """index <- mining <- trainer <- client <- jobs <- service <- cli: no module imports a layer above its own (not
    even inside a function), and no package imports another package's private (underscore) modules or names. So the
    client imports neither the job queue nor the service, and the job queue nothing of the service."""
    from pathlib import Path

    root = Path(negminer.__file__).parent
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        problems += layer_problems(path, ".".join(p for p in rel.parts if p != "__init__"))
    assert problems == []
    for package, layers in SUBLAYERS.items():  # every module of such a package has its place
        folder = root.parent / Path(*package.split("."))
        heads = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"} | {
            p.name for p in folder.iterdir() if (p / "__init__.py").is_file()
        }
        assert heads == {name for names in layers for name in names}, package


def test_the_layer_test_sees_violations(tmp_path) -> None:
    """The checker itself, on a planted module of the mining layer: an upward import (even inside a function), a
    private module of another package and a private name of another package are each reported."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from negminer.index._encoder import E\nfrom negminer.trainer._config import _private\n"
        "def f():\n    from negminer.service import x\n"
    )
    problems = layer_problems(bad, "negminer.mining.bad")
    assert "negminer.mining.bad (mining) imports negminer.service (service)" in problems
    assert "negminer.mining.bad imports the private module negminer.index._encoder" in problems
    assert any("private names ['_private'] from negminer.trainer._config" in p for p in problems), problems
    assert layer_problems(bad, "negminer.cli") == [  # the top layer may import down, not other's privates
        "negminer.cli imports the private module negminer.index._encoder",
        "negminer.cli imports the private module negminer.trainer._config",
        "negminer.cli imports private names ['_private'] from negminer.trainer._config",
    ]
    web = tmp_path / "web.py"
    web.write_text("from negminer.service.api.params import bad_param\n")
    assert layer_problems(web, "negminer.service.mining") == [
        "negminer.service.mining (a domain module) imports negminer.service.api.params (web)"
    ]
    assert layer_problems(web, "negminer.service.api.routes.x") == []
    good = tmp_path / "good.py"
    good.write_text("from negminer.index import Encoder\nfrom negminer._io import write_json\n")
    assert layer_problems(good, "negminer.mining.good") == []


def test_the_names_moved_by_the_split_are_gone_from_the_service() -> None:
    """No release had the old homes (negminer.service.JobStore, negminer.service.schemas...): they are gone."""
    import importlib

    for name in ("HttpNegativeSource", "ServiceError", "JobStore", "Worker"):
        assert not hasattr(negminer.service, name)
    for module in ("schemas", "client", "config", "store", "worker"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"negminer.service.{module}")


@pytest.mark.slow  # fresh interpreters (process-level)
def test_the_client_and_the_worker_load_no_web_framework() -> None:
    """A fresh interpreter: ``import negminer.client`` loads neither FastAPI nor SQLAlchemy; ``negminer worker
    --help`` (and the worker's own modules) loads neither FastAPI nor uvicorn."""
    import subprocess
    import sys

    def loaded(code: str, modules: tuple[str, ...]) -> list[str]:
        probe = f"{code}\nimport sys\nprint('LOADED', sorted(m for m in {modules!r} if m in sys.modules))"
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
        return eval(out.split("LOADED", 1)[1])

    assert loaded("import negminer.client", ("fastapi", "sqlalchemy", "uvicorn", "starlette")) == []
    assert (
        "Run fine-tuning jobs"
        in subprocess.run(
            [sys.executable, "-m", "negminer.cli", "worker", "--help"], capture_output=True, text=True, check=True
        ).stdout
    )
    worker_help = (
        "import sys; sys.argv = ['negminer', 'worker', '--help']\n"
        "import negminer.cli\ntry:\n    negminer.cli.main()\nexcept SystemExit:\n    pass"
    )
    assert loaded(worker_help, ("fastapi", "uvicorn", "starlette")) == []
    assert loaded("import negminer.jobs", ("fastapi", "uvicorn", "starlette")) == []


def test_error_hierarchy() -> None:
    import negminer.client
    import negminer.service as svc

    for exc in (
        negminer.DataError,
        negminer.ConfigError,
        negminer.ModelError,
        negminer.IndexFileError,
        svc.IndexNotFound,
        svc.IndexExists,
        svc.IndexBusy,
        svc.IndexNotReady,
        negminer.client.ServiceError,
    ):
        assert issubclass(exc, negminer.NegminerError)
    assert not issubclass(svc.IndexNotReady, negminer.IndexFileError)
    assert issubclass(negminer.DataError, ValueError)
    e = negminer.DataError("empty text", file="a.jsonl", line=3, field="text")
    assert str(e) == "a.jsonl:3: field 'text': empty text"


def test_errors_carry_their_field() -> None:
    e = negminer.ConfigError("must be at least 2", param="batch_size")
    assert e.param == "batch_size" and str(e) == "batch_size: must be at least 2"
    assert negminer.ConfigError("no field").param is None
    d = negminer.DataError("gone", file="f.jsonl", param="training_file")
    assert d.param == "training_file" and d.field is None and str(d) == "f.jsonl: gone"


@pytest.mark.slow  # fresh interpreters (process-level)
def test_the_service_and_cli_start_without_torch() -> None:
    """The command line and the service name training options and events without loading torch or transformers
    (the training loop and the losses load them when first used)."""
    import subprocess
    import sys

    code = (
        "import sys, negminer.cli, negminer.service, negminer.trainer as t; t.TrainConfig(); "
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert callable(negminer.trainer.train) and "infonce" in negminer.trainer.LOSSES  # loaded on first use


def test_one_error_convention_for_invalid_configs() -> None:
    """Mining and training options built directly raise the same ConfigError, naming the field."""
    import pytest

    from negminer.trainer import TrainConfig

    for build, field in (
        (lambda: negminer.MiningConfig(num_negatives=0), "num_negatives"),
        (lambda: negminer.MiningConfig(absolute_margin=float("nan")), "absolute_margin"),
        (lambda: TrainConfig(temperature=-1), "temperature"),
        (lambda: TrainConfig(mining={"range_min": -1}), "mining.range_min"),
    ):
        with pytest.raises(negminer.ConfigError) as caught:
            build()
        assert caught.value.param == field, caught.value


def test_no_import_circles() -> None:
    """No module reaches itself through imports (lazy ones inside functions included): the graph of negminer's
    modules has no cycle, so every module can be read after the ones it uses."""
    from pathlib import Path

    root = Path(negminer.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        modules[".".join(p for p in rel.parts if p != "__init__")] = path

    def resolve(target: str, names: list[str]) -> set[str]:
        out = {target} if target in modules else set()
        out |= {f"{target}.{n}" for n in names if f"{target}.{n}" in modules}  # from package import module
        return out

    graph = {
        m: {t for target, names in _imports(p) for t in resolve(target, names) if t != m and not m.startswith(t + ".")}
        for m, p in modules.items()
    }
    # a package's __init__ re-exporting its own modules is not a circle of code: drop package -> own submodule edges
    for m in graph:
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t] if t in stack else [m, t])
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_service_exceptions_live_in_one_module() -> None:
    """httpx-style: every exception the service raises is in negminer.service.exceptions, a NegminerError naming
    its parameter, and the errors module gives each an HTTP status."""
    from negminer import NegminerError
    from negminer.service import errors, exceptions

    assert sorted(exceptions.__all__) == [
        "ChecksumMismatch",
        "IndexBusy",
        "IndexDeleting",
        "IndexExists",
        "IndexNotFound",
        "IndexNotReady",
        "LeaseExpired",
        "UnsafeArchive",
        "UploadNotFound",
        "UploadTooLarge",
    ]
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, NegminerError) and getattr(negminer.service, name) is cls
        assert cls in errors.STATUS_OF, name  # its own status, not the catch-all 400
