"""The ``negminer`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer  # noqa: E402

from negminer._errors import NegminerError, describe  # noqa: E402

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Mine hard negatives with false-negative filtering; index and search corpora.")
index_app = typer.Typer(no_args_is_help=True, help="Build, inspect and search versioned corpus indexes.")
app.add_typer(index_app, name="index")

# Recommended filter when the user names none: the adaptive margin, which in the README's false-negative
# benchmark kept every query supplied with the lowest contamination, where relative_margin=0.05 left 20% (natural)
# and 64% (many positives) of the queries short.
DEFAULT_FILTER: dict[str, float] = {"adaptive_margin": 1.0}


class OutputFormat(str, Enum):
    triplet = "triplet"
    n_tuple = "n-tuple"
    labeled_pair = "labeled-pair"
    labeled_list = "labeled-list"


class Sampling(str, Enum):
    top = "top"
    random = "random"


class Kind(str, Enum):
    flat = "flat"
    ivf = "ivf"
    hnsw = "hnsw"


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {describe(exc)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _encoder(model: str | None, cache_dir: Path | None, batch_size: int | None, no_cache: bool,
             max_seq_length: int | None = None) -> Any:
    from negminer._settings import Settings
    from negminer.index import Encoder

    s = Settings()
    return Encoder(
        model or s.model,
        device=s.device,
        batch_size=batch_size or s.batch_size,
        cache_dir=None if no_cache else (cache_dir or s.cache_dir),
        max_seq_length=max_seq_length,
    )


ModelOpt = Annotated[str | None, typer.Option(help="model folder or name [default: bundled all-MiniLM-L6-v2]")]
CacheOpt = Annotated[Path | None, typer.Option(help="embedding cache folder [default: $NEGMINER_CACHE_DIR or "
                                                    "~/.cache/negminer]")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="encode everything, read and write no cache")]
BatchOpt = Annotated[int | None, typer.Option(help="texts per encoding batch [default: 64]")]


def _mining_options(
    num_negatives: int, range_min: int, range_max: int | None, absolute_margin: float | None,
    relative_margin: float | None, adaptive_margin: float | None, max_score: float | None,
    min_score: float | None, sampling_strategy: Sampling, seed: int, no_margin: bool,
) -> dict[str, Any]:
    return {
        "num_negatives": num_negatives, "range_min": range_min, "range_max": range_max,
        "max_score": max_score, "min_score": min_score, "sampling_strategy": sampling_strategy.value, "seed": seed,
        **_margins(absolute_margin, relative_margin, adaptive_margin, no_margin),
    }


def _margins(absolute: float | None, relative: float | None, adaptive: float | None,
             no_margin: bool) -> dict[str, float]:
    """The margin flags given, or the recommended filter when none is given (and --no-margin is not)."""
    given = {k: v for k, v in (("absolute_margin", absolute), ("relative_margin", relative),
                               ("adaptive_margin", adaptive)) if v is not None}
    return given or ({} if no_margin else dict(DEFAULT_FILTER))


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


@app.command()
def mine(
    data: Annotated[Path, typer.Argument(help="BEIR folder, pairs .jsonl, or saved datasets.Dataset folder")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output folder")] = Path("runs/mine"),
    split: Annotated[str, typer.Option(help="qrels split of a BEIR folder")] = "train",
    corpus: Annotated[Path | None, typer.Option(help="extra corpus.jsonl for a pairs file")] = None,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    batch_size: BatchOpt = None,
    num_negatives: Annotated[int, typer.Option(help="negatives per query")] = 3,
    range_min: Annotated[int, typer.Option(help="skip the top candidates (ranks after filtering)")] = 0,
    range_max: Annotated[int | None, typer.Option(help="last candidate rank [default: as ST]")] = None,
    absolute_margin: Annotated[float | None, typer.Option(help="drop if score + m > positive")] = None,
    relative_margin: Annotated[float | None, typer.Option(help="drop if score > pos - |pos| * m")] = None,
    adaptive_margin: Annotated[float | None, typer.Option(help="drop above a per-query threshold (see README)")] = None,
    max_score: Annotated[float | None, typer.Option(help="drop candidates scoring above")] = None,
    min_score: Annotated[float | None, typer.Option(help="drop candidates scoring below")] = None,
    no_margin: Annotated[bool, typer.Option("--no-margin", help="no false-negative filter at all")] = False,
    sampling_strategy: Annotated[Sampling, typer.Option(help="top or random")] = Sampling.top,
    seed: int = 42,
    teacher: Annotated[str | None, typer.Option(help="second bi-encoder that re-scores candidates")] = None,
    output_format: Annotated[OutputFormat, typer.Option(help="rows written")] = OutputFormat.triplet,
    output_scores: Annotated[bool, typer.Option(help="add scores to the rows")] = False,
) -> None:
    """Mine hard negatives for DATA. Writes negatives.jsonl / .parquet, report.json and scores.png to --output.

    Without a margin flag the recommended filter applies (adaptive_margin 1.0); --no-margin disables it.
    """
    from negminer._data import load_data
    from negminer.mining import MiningConfig
    from negminer.mining import mine as run_mine

    try:
        config = MiningConfig(**_mining_options(num_negatives, range_min, range_max, absolute_margin,
                                                relative_margin, adaptive_margin, max_score, min_score,
                                                sampling_strategy, seed, no_margin))
        ds = load_data(data, split=split, corpus=str(corpus) if corpus else None)
        enc = _encoder(model, cache_dir, batch_size, no_cache)
        teach = _encoder(teacher, cache_dir, batch_size, no_cache) if teacher else None
        typer.echo(f"{len(ds):,} queries, {len(ds.corpus_ids):,} documents from {ds.source}")
        result = run_mine(ds, enc, teacher=teach, config=config)
        written = _write_outputs(result, output, output_format.value, output_scores)
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
) -> None:
    """Build the demo data from the Python standard library, mine hard negatives on its train split, fine-tune
    the model briefly on them (negatives refreshed as it improves), and compare test-split retrieval before/after."""
    from negminer._demo import build_demo
    from negminer._io import write_json
    from negminer._settings import Settings
    from negminer.mining import mine as run_mine
    from negminer.trainer import TrainConfig, train

    try:
        t0 = time.perf_counter()
        data = build_demo(max_docs, harsh=harsh)
        train_data, test = data.split(0.2)
        typer.echo(f"demo data: {len(data):,} queries ({data.num_pairs:,} pairs), {len(data.corpus_ids):,} documents "
                   f"from the Python {sys.version.split()[0]} standard library; train {len(train_data):,} / test "
                   f"{len(test):,} queries ({time.perf_counter() - t0:.1f}s)")
        settings = Settings()
        cache = cache_dir or settings.cache_dir
        enc = _encoder(model, cache, None, False, max_seq_length)
        typer.echo("\n== mining hard negatives (train split)")
        result = run_mine(train_data, enc, **DEFAULT_FILTER)
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
            typer.echo("\n== fine-tuning (InfoNCE, negatives refreshed every "
                       f"{refresh_every} steps), evaluated on the test split")
            cfg = TrainConfig(output_dir=str(output / "train"), model=model or settings.model, loss="infonce",
                              negatives="refresh", refresh_every=refresh_every, num_negatives=1,
                              mining=dict(DEFAULT_FILTER), epochs=1, batch_size=16, learning_rate=5e-5,
                              max_seq_length=max_seq_length, cache_dir=str(cache), device=settings.device)
            res = train(train_data, cfg, validation=test)
            typer.echo(_before_after(res))
            written += [Path(res.model_path), output / "train" / "metrics.json", output / "train" / "metrics.png"]
    except (NegminerError, ValueError) as exc:
        _fail(exc)
        return
    for p in written + [output / "examples.json"]:
        typer.echo(f"wrote {p}")


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
        out.append({
            "query": result.queries[i],
            "positives": [{"id": result.doc_ids[p], "score": round(float(s), 4)}
                          for p, s in zip(result.positives[i], result.positive_scores[i])],
            "negatives": [{"id": d, "score": round(s, 4)} for d, s in result.negatives_of(i)],
        })
    return out


class Loss(str, Enum):
    infonce = "infonce"
    decoupled = "decoupled"
    dcl = "dcl"


class Negatives(str, Enum):
    none = "none"
    mined = "mined"
    refresh = "refresh"


class LossFilter(str, Enum):
    absolute = "absolute"
    relative = "relative"
    adaptive = "adaptive"


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option("--data", help="BEIR folder, pairs .jsonl, or saved datasets.Dataset")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output folder")] = Path("runs/train"),
    validation: Annotated[Path | None, typer.Option(help="validation data [default: 20% of --data by query]")] = None,
    split: Annotated[str, typer.Option(help="qrels split of a BEIR folder")] = "train",
    model: ModelOpt = None,
    loss: Annotated[Loss, typer.Option(help="infonce, decoupled (DEXML) or dcl")] = Loss.infonce,
    negatives: Annotated[Negatives, typer.Option(help="none (in-batch), mined (once) or refresh (every N steps)")]
    = Negatives.mined,
    refresh_every: Annotated[int, typer.Option(help="steps between refreshes")] = 50,
    num_negatives: Annotated[int, typer.Option(help="hard negatives per example")] = 3,
    absolute_margin: Annotated[float | None, typer.Option(help="mining: drop if score + m > positive")] = None,
    relative_margin: Annotated[float | None, typer.Option(help="mining: drop if score > pos - |pos| * m")] = None,
    adaptive_margin: Annotated[float | None, typer.Option(help="mining: per-query threshold [default 1.0]")] = None,
    no_margin: Annotated[bool, typer.Option("--no-margin", help="mining: no false-negative filter")] = False,
    epochs: Annotated[float, typer.Option(help="passes over the (query, positive) pairs")] = 1.0,
    max_steps: Annotated[int, typer.Option(help="stop after this many steps (-1: epochs decide)")] = -1,
    batch_size: Annotated[int, typer.Option(help="examples per step")] = 16,
    learning_rate: Annotated[float, typer.Option("--lr", help="peak learning rate")] = 2e-5,
    temperature: Annotated[float, typer.Option(help="s = cos / temperature")] = 0.05,
    max_seq_length: Annotated[int | None, typer.Option(help="tokens per text [default: the model's]")] = None,
    mini_batch_size: Annotated[int | None, typer.Option(help="GradCache mini-batch (large batches, small memory)")]
    = None,
    loss_filter: Annotated[LossFilter | None, typer.Option(help="in-loss false-negative masking rule")] = None,
    loss_filter_margin: Annotated[float, typer.Option(help="margin of --loss-filter")] = 0.05,
    seed: int = 42,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in --output")] = False,
    cache_dir: CacheOpt = None,
    index_url: Annotated[str | None, typer.Option(help="mine through the index service at this URL (model and "
                                                       "--output inside its data dir)")] = None,
    index_name: Annotated[str, typer.Option(help="index the service keeps for this run")] = "negminer-train",
) -> None:
    """Fine-tune a sentence-transformers model on (query, positives) data with mined or refreshed hard negatives.

    Writes the final model (SentenceTransformer(path) loads it) to OUTPUT/model, checkpoints, metrics.json and
    metrics.png (nDCG@10, Recall@100, MRR@10 on the validation split at the start, each refresh and the end)."""
    from negminer._data import load_data
    from negminer._settings import Settings
    from negminer.trainer import TrainConfig, train

    try:
        mining = _margins(absolute_margin, relative_margin, adaptive_margin, no_margin)
        settings = Settings()
        cfg = TrainConfig(
            output_dir=str(output), model=model or settings.model, loss=loss.value, temperature=temperature,
            negatives=negatives.value, refresh_every=refresh_every, num_negatives=num_negatives, mining=mining,
            epochs=epochs, max_steps=max_steps, batch_size=batch_size, learning_rate=learning_rate,
            mini_batch_size=mini_batch_size, max_seq_length=max_seq_length,
            loss_filter=loss_filter.value if loss_filter else None, loss_filter_margin=loss_filter_margin,
            seed=seed, resume=resume, cache_dir=str(cache_dir or settings.cache_dir), device=settings.device,
            index_url=index_url, index_name=index_name,
        )
        ds = load_data(data, split=split)
        val = load_data(validation, split=split) if validation else None
        res = train(ds, cfg, validation=val)
    except (NegminerError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(_before_after(res))
    typer.echo(f"model: {res.model_path}\nmetrics: {output / 'metrics.json'}, {output / 'metrics.png'}")


def _service_settings(**flags: Any) -> Any:
    from negminer.service import ServiceSettings

    try:
        return ServiceSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValueError as exc:
        _fail(exc)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address [default: $NEGMINER_HOST or 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: $NEGMINER_PORT or 8000]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="indexes live here [default: $NEGMINER_DATA_DIR]")] = None,
    with_worker: Annotated[bool, typer.Option("--with-worker", help="also run a fine-tuning worker in this "
                                              "process (the embedded single-machine setup)")] = False,
) -> None:
    """Run the REST service (FastAPI on uvicorn). Settings also come from NEGMINER_* environment variables."""
    import uvicorn

    from negminer.service import create_app

    settings = _service_settings(host=host, port=port, data_dir=data_dir)
    uvicorn.run(create_app(settings, with_worker=with_worker), host=settings.host, port=settings.port,
                log_level="info")


@app.command()
def worker(
    data_dir: Annotated[Path | None, typer.Option(help="the service's data dir [default: $NEGMINER_DATA_DIR]")] = None,
    database_url: Annotated[str | None, typer.Option(help="job database [default: $NEGMINER_DATABASE_URL or "
                                                     "SQLite in the data dir]")] = None,
    api_url: Annotated[str | None, typer.Option(help="the service, for jobs that mine from an index "
                                                "[default: $NEGMINER_API_URL or http://HOST:PORT]")] = None,
) -> None:
    """Run fine-tuning jobs from the job database, one at a time, until stopped (SIGTERM / Ctrl-C queue the running
    job again; it resumes from its last checkpoint)."""
    import logging
    import signal

    from negminer.service.worker import Worker

    settings = _service_settings(data_dir=data_dir, database_url=database_url, api_url=api_url)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    w = Worker(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: w.stop())
    typer.echo(f"negminer worker {w.id}: waiting for jobs", err=True)
    w.run_forever()


@index_app.command("build")
def index_build(
    data: Annotated[Path, typer.Argument(help="corpus.jsonl, a BEIR folder, or a pairs .jsonl")],
    out: Annotated[Path, typer.Option("--out", "-o", help="index store folder (versions + CURRENT)")],
    kind: Annotated[Kind, typer.Option(help="flat (exact), ivf or hnsw")] = Kind.flat,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    batch_size: BatchOpt = None,
    keep: Annotated[int, typer.Option(help="versions kept on disk")] = 3,
) -> None:
    """Encode a corpus and publish it as the next version of an index store."""
    from negminer._data import _load_corpus_jsonl, load_data
    from negminer._settings import Settings
    from negminer.index import IndexStore, build_index

    try:
        if data.is_file() and data.name == "corpus.jsonl":
            ids, texts = _load_corpus_jsonl(str(data))
        else:
            ds = load_data(data)
            ids, texts = ds.corpus_ids, ds.corpus_texts
        enc = _encoder(model, cache_dir, batch_size, no_cache)
        index = build_index(enc, ids, texts, kind=kind.value, device=Settings().index_device)
        version = IndexStore(out).publish(index, keep=keep)
    except (NegminerError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(f"published version {version}: {len(ids):,} documents, {index.index.describe()} -> {out}")


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


def main() -> None:  # pragma: no cover
    logging.basicConfig(level=logging.WARNING)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
