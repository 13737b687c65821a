"""The incomplete-labels benchmark: its split, its mining rows and a run end to end on a small made-up BEIR folder
(the real one, NFCorpus, is read when present)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from negminer import Encoder, mine
from negminer.mining import MiningConfig
from tests.conftest import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
NFCORPUS = ROOT.parent / "shared" / "data" / "nfcorpus"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("incomplete_labels", ROOT / "benchmarks" / "incomplete_labels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["incomplete_labels"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


TOPICS = ["sorting lists", "parsing dates", "opening sockets", "reading files", "hashing bytes", "zipping paths"]


@pytest.fixture
def topics_dir(tmp_path: Path) -> Path:
    """Six topics, four near-identical documents each (all positives of the topic's train query), filler; a dev
    split with one query a topic."""
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    docs, train, dev = [], [], []
    for t, topic in enumerate(TOPICS):
        for k in range(4):
            docs.append({"_id": f"t{t}-{k}", "text": f"a helper for {topic} in python, version {k}"})
            train.append(f"q{t}\tt{t}-{k}\t1")
            dev.append(f"dq{t}\tt{t}-{k}\t1")
    docs += [{"_id": f"f{i}", "text": f"unrelated text number {i} about gardening and weather"} for i in range(30)]
    write_jsonl(root / "corpus.jsonl", docs)
    queries = [{"_id": f"q{t}", "text": f"how do I do {topic}"} for t, topic in enumerate(TOPICS)]
    queries += [{"_id": f"dq{t}", "text": f"{topic} help"} for t, topic in enumerate(TOPICS)]
    write_jsonl(root / "queries.jsonl", queries)
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(train) + "\n")
    (root / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(dev) + "\n")
    return root


def test_split_is_fixed_and_hides_half(bench, topics_dir: Path) -> None:
    a = bench.load_setup(topics_dir, queries=4)
    b = bench.load_setup(topics_dir, queries=4)
    assert a.visible.query_ids == b.visible.query_ids and a.hidden == b.hidden
    assert len(a.visible) == 4 and [len(h) for h in a.hidden] == [2] * 4
    assert all(not set(v) & set(h) for v, h in zip(a.visible.positives, a.hidden))
    other = bench.load_setup(topics_dir, queries=4, split_seed=1)
    assert (other.visible.query_ids, other.hidden) != (a.visible.query_ids, a.hidden)
    assert len(a.eval) == len(TOPICS)  # the eval split keeps every label


def test_bad_flags_and_files_are_named(bench, topics_dir: Path) -> None:
    with pytest.raises(SystemExit, match="--hide"):
        bench.load_setup(topics_dir, hide=1.5)
    with pytest.raises(SystemExit, match="test.tsv"):
        bench.load_setup(topics_dir, eval_split="test")
    with pytest.raises(SystemExit, match="--rows: unknown row"):
        bench.main(["--data", str(topics_dir), "--rows", "inbatch,nope"])
    with pytest.raises(SystemExit, match="--data: no folder"):
        bench.main(["--data", str(topics_dir / "missing")])


def test_labels_known_mines_no_hidden_positive_and_naive_does(bench, topics_dir: Path, lexical_model: Path) -> None:
    setup = bench.load_setup(topics_dir, queries=6)
    enc = Encoder(lexical_model, device="cpu", show_progress=False)
    hidden_texts = [{setup.visible.corpus_texts[d] for d in h} for h in setup.hidden]
    cfg = MiningConfig(num_negatives=2, filter="none")
    naive = bench.mining_stats(mine(setup.visible, enc, config=cfg, show_progress=False), hidden_texts)
    known = bench.mining_stats(mine(setup.known, enc, config=cfg, show_progress=False), hidden_texts)
    assert naive["hidden mined"] > 0 and known["hidden mined"] == 0 and known["negatives"] > 0


def test_paired_bootstrap_interval(bench) -> None:
    d, lo, hi = bench.paired_bootstrap([0.5, 0.6, 0.7, 0.8], [0.4, 0.5, 0.6, 0.7])
    assert d == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    d, lo, hi = bench.paired_bootstrap([1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0])
    assert d == 0 and lo < 0 < hi


@pytest.mark.slow
def test_end_to_end_on_a_small_folder(bench, topics_dir: Path, tiny_model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "result.json"
    args = ["--data", str(topics_dir), "--queries", "6", "--steps", "2", "--batch-size", "4", "--seeds", "1,2"]
    args += ["--model", str(tiny_model), "--cache-dir", str(tmp_path / "cache"), "--json", str(out)]
    args += ["--rows", "inbatch,naive,labels-known,train-default,st"]
    bench.main(args)
    printed = capsys.readouterr().out
    assert "## Gates" in printed and "Paired bootstrap" in printed
    state = json.loads(out.read_text())
    assert set(state["runs"]) == {"inbatch", "naive", "labels-known", "train-default", "st"}
    assert state["runs"]["st"]["1"]["pairs"] == 12  # 6 queries x 2 visible positives
    assert all(set(runs) == {"1", "2"} for runs in state["runs"].values())
    assert state["mining"]["labels-known"]["hidden mined"] == 0
    assert state["runs"]["labels-known"]["1"]["steps"] == 2
    # a rerun with the same set-up reuses every finished run
    bench.main(args)
    assert json.loads(out.read_text())["runs"] == state["runs"]


def test_nfcorpus_split_when_present(bench) -> None:
    if not NFCORPUS.is_dir():
        pytest.skip(f"NFCorpus is not at {NFCORPUS}: the real-data check of the split is skipped")
    setup = bench.load_setup(NFCORPUS, queries=50)
    assert len(setup.visible) == 50 and all(len(h) >= 1 for h in setup.hidden)
    assert setup.hidden == bench.load_setup(NFCORPUS, queries=50).hidden


def _load(name: str):  # noqa: ANN202
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_show_the_benchmark_results_files() -> None:
    """Every table of docs/ is rendered from benchmarks/results/*.json: a figure edited by hand, or a rerun not
    rendered, fails here (python benchmarks/render.py fixes the second)."""
    render = _load("render")
    assert render.main(["--check"]) == 0
    pages = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md"))
    assert pages.count("<!-- results: ") >= 15


def test_a_benchmark_run_writes_results_that_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common, render = _load("_common"), _load("render")
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "_tables", [])
    monkeypatch.setattr(sys, "argv", ["benchmarks/example.py", "--rows", "1"])
    printed = common.markdown_table(["setting", "score"], [["a", 0.5], ["b", 1]], title="toy")
    path = common.save_results()
    assert path == tmp_path / "example.json"
    record = json.loads(path.read_text())
    assert record["command"] == "python benchmarks/example.py --rows 1" and record["tables"][0]["rows"][1] == ["b", "1"]
    page = render.render("x\n<!-- results: example 0 -->\nold\n<!-- /results -->\ny", tmp_path)
    assert printed in page and "**toy**" in page and "old" not in page and page.startswith("x\n")
