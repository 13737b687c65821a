"""The ``negminer`` command line. Each option's type, choices, default and help come from the config that declares
it (:class:`~negminer.mining.MiningConfig`, :class:`~negminer.trainer.TrainConfig`, the vocabularies); a flag left
out means that config's default."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

F = TypeVar("F", bound=Callable[..., Any])

import typer  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from negminer._errors import ConfigError, NegminerError, describe  # noqa: E402
from negminer._settings import Settings  # noqa: E402
from negminer._vocab import (  # noqa: E402
    LossName,
    NegativesMode,
    OutputFormat,  # noqa: E402
)
from negminer.index import IndexConfig  # noqa: E402
from negminer.mining import FILTERS, MiningConfig  # noqa: E402
from negminer.trainer import TrainConfig, TrainHyperparameters  # noqa: E402

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: flag names are never cut at 80 columns (rich's tables cut them)
    help="Mine hard negatives with false-negative filtering; index and search corpora.",
)
index_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Build, inspect and search versioned corpus indexes."
)
app.add_typer(index_app, name="index")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {describe(exc)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv", ".txt", ".png")


def _output_dir(path: Path) -> Path:
    """``--output`` names a folder: refuse a file name (``-o negatives.jsonl`` would make a folder of that name)
    and an existing file."""
    if path.suffix.lower() in _FILE_SUFFIXES or path.is_file():
        _fail(
            ConfigError(
                f"--output names a folder (negminer writes several files into it), got {str(path)!r}; "
                f"try -o {path.with_suffix('') if path.suffix else path.parent / 'out'}",
                param="output",
            )
        )
    return path


def _encoder(
    model: str | None,
    cache_dir: Path | None,
    batch_size: int | None,
    no_cache: bool,
    max_seq_length: int | None = None,
    devices: str | None = None,
) -> Any:
    from negminer.index import Encoder

    s = _settings()
    return Encoder(
        model or s.model,
        device=s.device,
        batch_size=batch_size or s.batch_size,
        cache_dir=None if no_cache else (cache_dir or s.cache_dir),
        max_seq_length=max_seq_length,
        devices=devices or s.encode_devices,
    )


ModelOpt = Annotated[str | None, typer.Option(help="model folder or name [default: bundled all-MiniLM-L6-v2]")]
CacheOpt = Annotated[
    Path | None, typer.Option(help="embedding cache folder [default: $NEGMINER_CACHE_DIR or ~/.cache/negminer]")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="encode everything, read and write no cache")]
BatchOpt = Annotated[int | None, typer.Option(help="texts per encoding batch [default: 64]")]
DevicesOpt = Annotated[
    str | None,
    typer.Option(help=f"{Settings.model_fields['encode_devices'].description} [default: $NEGMINER_ENCODE_DEVICES]"),
]
RayOpt = Annotated[
    str | None,
    typer.Option("--ray", help=f"{Settings.model_fields['ray_address'].description} [default: $NEGMINER_RAY_ADDRESS]"),
]


def _opt(config: type[BaseModel], name: str, *flags: str, help_prefix: str | None = None) -> Any:
    """A typer option for field ``name`` of ``config``: its description and default as the help."""
    f = config.model_fields[name]
    default = None if f.is_required() else f.get_default(call_default_factory=True)
    shown = None if isinstance(default, BaseModel) else getattr(default, "value", default)
    suffix = f" (default: {shown})" if shown is not None and not isinstance(shown, bool) else ""
    prefix = f"{help_prefix}: " if help_prefix else ""
    return typer.Option(*flags, help=f"{prefix}{f.description or name}{suffix}", show_default=False)


FILTER_OPTIONS = (*FILTERS, "neighbourhood_window")  # the mining options `train` takes too
PROMPT_OPTIONS = ("query_prompt", "query_prompt_name", "corpus_prompt", "corpus_prompt_name")  # `train` too
MINE_OPTIONS = (
    "num_negatives",
    "range_min",
    "range_max",
    *FILTER_OPTIONS,
    "max_score",
    "min_score",
    "sampling_strategy",
    "seed",
    *PROMPT_OPTIONS,
)
INDEX_OPTIONS = ("index", "memory_budget", "recall_target")  # IndexConfig's, for `mine` and `index build`
# `train` takes every training option but these: mining's are its own flags, trainer_args is --trainer-arg, and
# several processes are torchrun's to start (a job's devices: the worker's)
NOT_TRAIN_FLAGS = ("mining", "trainer_args", "devices")
TRAIN_OPTIONS = tuple(n for n in TrainHyperparameters.model_fields if n not in NOT_TRAIN_FLAGS) + ("seed",)
FLAGS = {"learning_rate": ("--lr", "--learning-rate")}


def config_options(
    config: type[BaseModel],
    names: tuple[str, ...],
    *,
    help_prefix: str | None = None,
) -> Callable[[F], F]:
    """Give a command one option per field ``names`` of ``config``, taking the field's type (choices), help and
    default from the config; the command receives them as keyword arguments, None where the user left one out."""

    def add(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        for name in names:
            kind = config.model_fields[name].annotation
            option = _opt(config, name, *FLAGS.get(name, ()), help_prefix=help_prefix)
            annotation = Annotated[Optional[kind], option]  # type: ignore[valid-type]  # noqa: UP045 (built at run time)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return command

    return add


def _check_model(model: str | None, flag: str) -> None:
    """Refuse a model that cannot load before any data is read, naming the flag and the bundled model."""
    from negminer.index import check_model

    check_model(model or _settings().model, flag)


def _given(**options: Any) -> dict[str, Any]:
    """The options the user gave (None: left out, the config's default applies)."""
    return {k: v for k, v in options.items() if v is not None}


def _mining(no_filter: bool, *, training: bool = False, **options: Any) -> MiningConfig:
    """MiningConfig of the flags given, built once: the recommended filter (the trainer's with ``training``) unless
    a filter flag or ``--no-filter`` is given."""
    given = _given(**options)
    if no_filter:
        return MiningConfig(**given, filter="none")
    return MiningConfig.recommended(training=training, **given)


DATA_HELP = (
    "training data: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/), a pairs file (.jsonl, .parquet or .csv "
    "with query and positive columns), or a saved datasets.Dataset folder"
)
DataArg = Annotated[Path, typer.Argument(help=DATA_HELP, show_default=False)]

# ``--no-filter`` was ``--no-margin`` (the rule it turns off is not a margin); the old flag still works, unlisted.
NoMarginAlias = Annotated[bool, typer.Option("--no-margin", hidden=True, help="old name of --no-filter")]


def _write_outputs(result: Any, out: Path, output_format: str, output_scores: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in ("jsonl", "parquet"):
        p = out / f"negatives.{suffix}"
        result.save(str(p), output_format, output_scores=output_scores)
        written.append(p)
    result.report.save_json(out / "report.json")
    result.report.save_plot(out / "scores.png", result.removed_scores)
    written += [out / "report.json", out / "scores.png"]
    return written


def _index_config(options: dict[str, Any]) -> IndexConfig:
    """The IndexConfig of the index options given (popped from ``options``)."""
    return IndexConfig(**_given(**{k: options.pop(k, None) for k in INDEX_OPTIONS}))


@app.command()
@config_options(MiningConfig, MINE_OPTIONS)
@config_options(IndexConfig, INDEX_OPTIONS)
def mine(
    data: DataArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="output folder")] = Path("runs/mine"),
    split: Annotated[str, typer.Option(help="qrels split of a BEIR folder")] = "train",
    corpus: Annotated[Path | None, typer.Option(help="extra corpus.jsonl for a pairs file")] = None,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    batch_size: BatchOpt = None,
    no_filter: Annotated[bool, typer.Option("--no-filter", help="no false-negative filter at all")] = False,
    no_margin: NoMarginAlias = False,
    teacher: Annotated[str | None, typer.Option(help="second bi-encoder that re-scores candidates")] = None,
    output_format: Annotated[OutputFormat, typer.Option(help="rows written")] = OutputFormat.triplet,
    output_scores: Annotated[bool, typer.Option(help="add scores to the rows")] = False,
    encode_devices: DevicesOpt = None,
    ray: RayOpt = None,
    **options: Any,
) -> None:
    """Mine hard negatives for DATA. Writes negatives.jsonl / .parquet, report.json and scores.png to --output.

    Without a filter flag the recommended filter applies, as in mine() and POST /mine (the
    positive-neighbourhood and sibling rules; report.json's "filter" says which ran and why); --no-filter is
    sentence-transformers' mine_hard_negatives (no filter).
    """
    from negminer import load_data
    from negminer.mining import mine as run_mine

    _output_dir(output)
    try:
        index = _index_config(options)
        config = _mining(no_filter or no_margin, **options)
        _check_model(model, "--model")
        if teacher:
            _check_model(teacher, "--teacher")
        ds = load_data(data, split=split, corpus=str(corpus) if corpus else None)
        enc = _encoder(model, cache_dir, batch_size, no_cache, devices=encode_devices)
        teach = _encoder(teacher, cache_dir, batch_size, no_cache) if teacher else None
        typer.echo(f"{len(ds):,} queries, {len(ds.corpus_ids):,} documents from {ds.source}")
        result = run_mine(
            ds,
            enc,
            teacher=teach,
            config=config,
            index=index,
            device=_settings().index_device,
            ray=ray or _settings().ray_address,
        )
        written = _write_outputs(result, output, output_format, output_scores)
    except (NegminerError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(result.report.summary())
    for p in written:
        typer.echo(f"wrote {p}")


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="output folder")] = Path("runs/demo"),
    max_docs: Annotated[int, typer.Option(help="documents in the demo corpus (time grows with it)")] = 1500,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    harsh: Annotated[bool, typer.Option(help="many-positives variant (module docstring -> its functions)")] = False,
    do_train: Annotated[bool, typer.Option("--train/--no-train", help="fine-tune briefly and evaluate")] = True,
    max_seq_length: Annotated[int, typer.Option(help="tokens per text (128 keeps CPU training brief)")] = 128,
    refresh_every: Annotated[int, typer.Option(help="re-mine negatives every N training steps")] = 40,
    export_data: Annotated[
        Path | None,
        typer.Option(
            help="only write the demo data as files into this folder (a BEIR folder, train.jsonl, and the "
            "request bodies index.json and mine.json that the README's tour sends) and stop"
        ),
    ] = None,
) -> None:
    """Build the demo data from the Python standard library, mine hard negatives on its train split, fine-tune
    the model briefly on them (negatives refreshed as it improves), and compare test-split retrieval before/after."""
    from negminer._demo import build_demo, export_demo

    if export_data is not None:
        _output_dir(export_data)
        export_demo(export_data, max_docs, harsh=harsh)
        for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv", "train.jsonl", "test.jsonl"):
            typer.echo(f"wrote {export_data / name}")
        typer.echo(f"wrote {export_data / 'index.json'} (POST /v1/indexes: index 'demo')")
        typer.echo(f"wrote {export_data / 'mine.json'} (POST /v1/indexes/demo/mine: 20 test queries)")
        return
    from negminer._io import write_json
    from negminer.mining import mine as run_mine
    from negminer.trainer import train

    _output_dir(output)
    try:
        _check_model(model, "--model")
        t0 = time.perf_counter()
        data = build_demo(max_docs, harsh=harsh)
        train_data, test = data.split(0.2)
        typer.echo(
            f"demo data: {len(data):,} queries ({data.num_pairs:,} pairs), {len(data.corpus_ids):,} documents "
            f"from the Python {sys.version.split()[0]} standard library; train {len(train_data):,} / test "
            f"{len(test):,} queries ({time.perf_counter() - t0:.1f}s)"
        )
        settings = _settings()
        cache = cache_dir or settings.cache_dir
        enc = _encoder(model, cache, None, False, max_seq_length)
        typer.echo("\n== mining hard negatives (train split)")
        result = run_mine(train_data, enc, config=MiningConfig())
        output.mkdir(parents=True, exist_ok=True)
        written = _write_outputs(result, output, "triplet", True)
        write_json(output / "examples.json", _examples(result, 5))
        typer.echo(result.report.summary())
        typer.echo("\nexamples (query -> positive | hard negatives):")
        for ex in _examples(result, 3):
            typer.echo(f"\n  query: {ex['query']}")
            typer.echo(f"  positive: {ex['positives'][0]['id']} ({ex['positives'][0]['score']:.3f})")
            for n in ex["negatives"]:
                typer.echo(f"  negative: {n['id']} ({n['score']:.3f})")
        if do_train:
            typer.echo(
                "\n== fine-tuning (InfoNCE, negatives refreshed every "
                f"{refresh_every} steps), evaluated on the test split"
            )
            cfg = TrainConfig(
                output_dir=str(output / "train"),
                model=model or settings.model,
                loss=LossName.infonce,
                negatives=NegativesMode.refresh,
                refresh_every=refresh_every,
                num_negatives=1,
                epochs=1,
                batch_size=16,
                learning_rate=5e-5,
                max_seq_length=max_seq_length,
                cache_dir=str(cache),
                device=settings.device,
            )
            res = train(train_data, cfg, validation=test, evaluated_on="the demo's test split")
            typer.echo(_before_after(res))
            # the final model is all the demo needs: the trainer's checkpoints (optimizer state included) and the
            # refresh models go (the demo cannot be resumed)
            for leftover in ("checkpoints", "refresh"):
                shutil.rmtree(output / "train" / leftover, ignore_errors=True)
            written += [Path(res.model_path), output / "train" / "metrics.json", output / "train" / "metrics.png"]
    except (NegminerError, ValueError) as exc:
        _fail(exc)
        return
    for p in written + [output / "examples.json"]:
        typer.echo(f"wrote {p}")
    size = sum(f.stat().st_size for f in output.rglob("*") if f.is_file())
    typer.echo(f"{output} holds {size / 1e6:.0f} MB")


def _before_after(res: Any) -> str:
    rows = [f"{'test split':<14}{'nDCG@10':>10}{'Recall@100':>12}{'MRR@10':>10}"]
    for label, h in (("zero-shot", res.before), (f"step {res.after['step']}", res.after)):
        rows.append(f"{label:<14}{h['ndcg@10']:>10.4f}{h['recall@100']:>12.4f}{h['mrr@10']:>10.4f}")
    d = res.after["ndcg@10"] - res.before["ndcg@10"]
    rows.append(f"nDCG@10 {'+' if d >= 0 else ''}{100 * d:.2f} points")
    return "\n".join(rows)


def _examples(result: Any, n: int) -> list[dict[str, Any]]:
    out = []
    step = max(1, len(result) // n)
    for i in range(0, len(result), step)[:n]:
        out.append(
            {
                "query": result.queries[i],
                "positives": [
                    {"id": result.doc_ids[p], "score": round(float(s), 4)}
                    for p, s in zip(result.positives[i], result.positive_scores[i])
                ],
                "negatives": [{"id": d, "score": round(s, 4)} for d, s in result.negatives_of(i)],
            }
        )
    return out


def _trainer_args(pairs: list[str] | None) -> dict[str, Any]:
    """``--trainer-arg NAME=VALUE`` options as a mapping (VALUE read as JSON when it parses: 0.5, true, [..])."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"expected NAME=VALUE, got {pair!r}", param="--trainer-arg")
        try:
            out[name.strip()] = json.loads(value)
        except ValueError:
            out[name.strip()] = value
    return out


@app.command("train")
@config_options(MiningConfig, FILTER_OPTIONS, help_prefix="mining")
@config_options(MiningConfig, PROMPT_OPTIONS, help_prefix="mining, training, evaluation and the saved model")
@config_options(TrainConfig, TRAIN_OPTIONS)
def train_cmd(
    data: Annotated[Path | None, typer.Argument(help=DATA_HELP, show_default=False)] = None,
    data_option: Annotated[Path | None, typer.Option("--data", hidden=True, help="DATA, the older way")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="output folder")] = Path("runs/train"),
    validation: Annotated[
        Path | None, typer.Option(help="validation data [default: a share of DATA by query, --validation-fraction]")
    ] = None,
    split: Annotated[str, typer.Option(help="qrels split of a BEIR folder")] = "train",
    model: ModelOpt = None,
    no_filter: Annotated[bool, typer.Option("--no-filter", help="mining: no false-negative filter")] = False,
    no_margin: NoMarginAlias = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in --output")] = False,
    cache_dir: CacheOpt = None,
    index_url: Annotated[
        str | None,
        typer.Option(
            help="mine through the index service at this URL: each refresh uploads the checkpoint (a LoRA run, its "
            "adapter) and names it by its upload id (API key from $NEGMINER_API_KEY)"
        ),
    ] = None,
    index_name: Annotated[str, typer.Option(help="index the service keeps for this run")] = "negminer-train",
    index_lease: Annotated[
        int | None,
        typer.Option(
            min=10,
            help="seconds the service keeps the run's index after this process was last heard of (default: "
            "kept until deleted)",
        ),
    ] = None,
    index_shared_dir: Annotated[
        Path | None,
        typer.Option(
            help="the service's data dir as mounted here: checkpoints inside it are named by path, not uploaded"
        ),
    ] = None,
    ray: RayOpt = None,
    trainer_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--trainer-arg",
            help="any other option of sentence-transformers' trainer, NAME=VALUE (repeatable; e.g. "
            "max_grad_norm=0.5); unknown names and negminer's own are refused",
        ),
    ] = None,
    **options: Any,
) -> None:
    """Fine-tune a sentence-transformers model on (query, positives) data with mined or refreshed hard negatives.

    Writes the final model (SentenceTransformer(path) loads it) to OUTPUT/model, checkpoints, metrics.json and
    metrics.png (nDCG@10, Recall@100, MRR@10 on the validation split at the start, each refresh and the end).
    Without a filter flag the trainer's recommended filter applies (negminer.mining.TRAINING_FILTER; metrics.json
    shows the options used); --no-filter disables it."""
    import signal

    from negminer import load_data
    from negminer.trainer import TrainListener

    class _StopOnSignal(TrainListener):
        """SIGTERM / SIGINT: stop after the current step with a checkpoint (--resume goes on from it)."""

        signalled: int | None = None

        def should_stop(self) -> bool:
            return self.signalled is not None

    listener = _StopOnSignal()

    def on_signal(signum: int, _frame: Any) -> None:
        if listener.signalled is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        listener.signalled = signum
        typer.echo(f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint", err=True)

    data = data or data_option
    if data is None or (data_option is not None and data_option != data):
        typer.secho("error: DATA: give the training data once (negminer train DATA)", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    _output_dir(output)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        settings = _settings()
        margins = {name: options.pop(name) for name in (*FILTER_OPTIONS, *PROMPT_OPTIONS)}
        cfg = TrainConfig(
            trainer_args=_trainer_args(trainer_arg),
            output_dir=output,
            model=model or settings.model,
            cache_dir=cache_dir or settings.cache_dir,
            device=settings.device,
            resume=resume,
            ray=ray or settings.ray_address,
            mining=_mining(no_filter or no_margin, training=True, **margins),
            **_given(**options),
        )
        source = None
        if index_url:
            from negminer.client import HttpNegativeSource

            source = HttpNegativeSource.factory(
                index_url,
                index_name,
                api_key=_service_settings().api_key,
                expires_after=index_lease,
                shared_dir=index_shared_dir,
                retry_seconds=_service_settings().index_retry_seconds,
            )
        _check_model(cfg.model, "--model")
        ds, val, problem = None, None, None
        try:  # data errors are reported before torch and transformers are imported
            ds = load_data(data, split=split)
            val = load_data(validation, split=split) if validation else None
        except NegminerError as exc:
            if not _distributed():
                raise
            problem = describe(exc)
        if _distributed():  # under torchrun: every rank fails together, naming the rank that lacks the data
            from negminer.trainer import agree_on_data, on_cpu

            agree_on_data(ds, problem, cpu=on_cpu(cfg.device))
        assert ds is not None
        from negminer.trainer import train

        res = train(ds, cfg, validation=val, source=source, listener=listener)
    except (NegminerError, ValueError) as exc:
        _fail(exc)
        return
    if int(os.environ.get("RANK", "0") or 0) > 0:
        return  # rank 0 reports
    if res.stopped:
        typer.echo(f"stopped at step {res.steps}; checkpoint in {output / 'checkpoints'} (--resume goes on from it)")
        raise typer.Exit(128 + (listener.signalled or signal.SIGTERM))
    typer.echo(_before_after(res))
    typer.echo(res.model_summary())
    typer.echo(f"model: {res.model_path}\nmetrics: {output / 'metrics.json'}, {output / 'metrics.png'}")


@app.command()
def soup(
    models: Annotated[
        list[Path], typer.Argument(help="two or more models fine-tuned from one base", show_default=False)
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder of the averaged model")] = Path("runs/soup"),
) -> None:
    """Average the weights of several fine-tuned models uniformly (a model soup: LM-Cocktail, KaLM-Embedding-V2),
    for example the models of several seeds. LoRA adapters are merged into their base first."""
    from negminer.trainer import model_soup

    _output_dir(output)
    try:
        for path in models:
            _check_model(str(path), "MODELS")
        out = model_soup(list(models), output, device="cpu")
    except (NegminerError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(f"soup of {len(models)} models: {out}")


def _distributed() -> bool:
    """Whether this process is one of several started by torchrun or accelerate launch."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _service_settings(**flags: Any) -> Any:
    """ServiceSettings from the environment and the flags given (exit 2 naming a bad one)."""
    from negminer._settings import ServiceSettings

    try:
        return ServiceSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValueError as exc:
        _fail(exc)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: $NEGMINER_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: $NEGMINER_PORT or 8000)")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="indexes, uploaded files, models, the job database (default: $NEGMINER_DATA_DIR or "
            "./negminer-data, relative to where the service starts)"
        ),
    ] = None,
    with_worker: Annotated[
        bool,
        typer.Option(
            "--with-worker", help="also run a fine-tuning worker in this process (the embedded single-machine setup)"
        ),
    ] = False,
) -> None:
    """Run the REST service (FastAPI on uvicorn). Every setting also comes from a NEGMINER_* environment variable
    (NEGMINER_API_KEY, NEGMINER_MODEL, NEGMINER_MAX_TRAIN_STEPS, ...: the "Service settings" table of docs/rest.md)."""
    from negminer.service import create_app
    from negminer.service.server import serve

    settings = _service_settings(host=host, port=port, data_dir=data_dir)
    serve(create_app(settings, with_worker=with_worker), settings)


@app.command()
def worker(
    data_dir: Annotated[
        Path | None, typer.Option(help="the service's data dir (default: $NEGMINER_DATA_DIR or ./negminer-data)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="job database (default: $NEGMINER_DATABASE_URL or SQLite in the data dir)")
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            help="the service, for jobs that mine from an index (default: $NEGMINER_API_URL or http://HOST:PORT)"
        ),
    ] = None,
) -> None:
    """Run fine-tuning jobs from the job database, one at a time, until stopped (SIGTERM / Ctrl-C queue the running
    job again; it resumes from its last checkpoint)."""
    import signal

    from negminer.jobs import Worker

    settings = _service_settings(data_dir=data_dir, database_url=database_url, api_url=api_url)
    logging.getLogger("negminer").setLevel(logging.INFO)  # the libraries' INFO lines stay out
    w = Worker(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: w.stop())
    typer.echo(f"negminer worker {w.id}: waiting for jobs", err=True)
    w.run_forever()


@index_app.command("build")
@config_options(IndexConfig, INDEX_OPTIONS)
def index_build(
    data: Annotated[
        Path,
        typer.Argument(help="documents: a corpus.jsonl, a BEIR folder, or pairs (.jsonl, .parquet, .csv)"),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="index store folder (versions + CURRENT)")],
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    batch_size: BatchOpt = None,
    keep: Annotated[int, typer.Option(help="versions kept on disk")] = 3,
    encode_devices: DevicesOpt = None,
    ray: RayOpt = None,
    **options: Any,
) -> None:
    """Encode a corpus and publish it as the next version of an index store: the index structure chosen for its
    size and memory budget (--index auto), approximate ones tuned to the recall target, measured at build."""
    from negminer import load_corpus, load_data
    from negminer.index import IndexStore, build_index, ray_encode

    try:
        config = _index_config(options)
        _check_model(model, "--model")
        if data.is_file() and data.name == "corpus.jsonl":
            ids, texts = load_corpus(data)
        else:
            ds = load_data(data)
            ids, texts = ds.corpus_ids, ds.corpus_texts
        enc = _encoder(model, cache_dir, batch_size, no_cache, devices=encode_devices)
        if ray or _settings().ray_address:
            typer.echo(f"ray: {ray_encode(enc, texts, address=ray or _settings().ray_address or 'local')}")
        with build_index(enc, ids, texts, config=config, device=_settings().index_device) as index:
            version = IndexStore(out).publish(index, keep=keep)
            described = index.index.describe()
    except (NegminerError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(f"published version {version}: {len(ids):,} documents, {described} -> {out}")


@index_app.command("info")
def index_info(store: Annotated[Path, typer.Argument(help="index store folder")]) -> None:
    """Show the versions of an index store and the current one's metadata."""
    from negminer.index import IndexStore

    s = IndexStore(store)
    try:
        current = s.current_version()
        if current is None:
            raise NegminerError(f"{store}: no index published yet")
        meta = json.loads((s.path(current) / "meta.json").read_text())
    except (NegminerError, OSError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(json.dumps({"current": current, "versions": s.versions(), "meta": meta}, indent=2))


@index_app.command("search")
def index_search(
    store: Annotated[Path, typer.Argument(help="index store folder")],
    query: Annotated[list[str], typer.Argument(help="one or more query texts")],
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 10,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Search the current version with query texts (the model must be the one that built the index)."""
    from negminer.index import IndexStore

    try:
        enc = _encoder(model, cache_dir, None, False)
        enc.show_progress = False
        index = IndexStore(store).load(expect_fingerprint=enc.fingerprint)
        scores, rows = index.search(enc.encode(list(query), kind="query"), top_k)
    except (NegminerError, ValueError) as exc:
        _fail(exc)
        return
    for q, sc, rw in zip(query, scores, rows):
        typer.echo(f"{q}  (version {index.version})")
        for s, r in zip(sc, rw):
            if r >= 0:
                typer.echo(f"  {s:.4f}  {index.doc_ids[r]}")


def _print_version(value: bool) -> None:
    if value:
        from negminer import __version__

        typer.echo(f"negminer {__version__}")
        raise typer.Exit()


@app.callback()
def _fresh_settings(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit"),
    ] = False,
) -> None:
    """Each invocation reads the environment once, afresh (tests invoke the app many times in one process)."""
    _settings.cache_clear()


@functools.cache
def _settings() -> Settings:
    """The environment's settings, read once per process: the command line is where they are resolved; what it
    calls gets them as arguments and objects, never from the environment."""
    return Settings()


def main() -> None:
    """The ``negminer`` command: logging set up (warnings, or info with ``NEGMINER_LOG_LEVEL=INFO``), then the
    command line."""
    _settings.cache_clear()  # one process, one reading of the environment: this run's
    logging.basicConfig(level=_settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    app()


def _quiet_libraries() -> None:
    """transformers' bars for loading and writing weights say nothing a user needs between negminer's own bars."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        return
    hf_logging.disable_progress_bar()


if __name__ == "__main__":  # pragma: no cover
    main()
