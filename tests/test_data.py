from __future__ import annotations

from pathlib import Path

import pytest

from negminer import DataError, RetrievalData, from_hf_dataset, load_beir, load_data, load_pairs
from tests.conftest import write_jsonl


def test_beir_loads_multiple_positives_and_skips_zero_scores(beir_dir: Path) -> None:
    data = load_beir(beir_dir)
    assert data.queries == ["capital of France", "capital of Germany"]
    assert [[data.corpus_ids[d] for d in p] for p in data.positives] == [["d1", "d3"], ["d2"]]
    assert data.corpus_texts[0] == "Paris Paris is the capital of France."  # title + text, as BEIR does
    assert data.num_pairs == 3


def test_load_data_detects_layouts(beir_dir: Path, tmp_path: Path) -> None:
    assert len(load_data(beir_dir)) == 2
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"query": "a b", "positive": "x"}])
    assert len(load_data(pairs)) == 1


def test_pairs_merge_repeated_queries_and_positives_lists(tmp_path: Path) -> None:
    p = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"query": "q one", "positive": "doc a"},
            {"anchor": "q two", "positives": ["doc b", "doc c"]},
            {"query": "q one", "positive": "doc c"},
            {"query": "q one", "positive": "doc a"},
        ],
    )
    data = load_pairs(p)
    assert data.queries == ["q one", "q two"]
    texts = [[data.corpus_texts[d] for d in pos] for pos in data.positives]
    assert texts == [["doc a", "doc c"], ["doc b", "doc c"]]
    assert len(data.corpus_texts) == 3  # de-duplicated by text


def test_pairs_with_extra_corpus(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "x1", "text": "doc a"}, {"_id": "x2", "text": "other"}])
    p = write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q", "positive": "doc a"}])
    data = load_pairs(p, corpus=corpus)
    assert data.corpus_ids == ["x1", "x2"]
    assert data.positives == [[0]]


def test_hf_dataset_first_two_columns() -> None:
    from datasets import Dataset

    ds = Dataset.from_dict({"question": ["q1", "q1", "q2"], "answer": ["a", "b", "a"], "other": [1, 2, 3]})
    data = from_hf_dataset(ds)
    assert data.queries == ["q1", "q2"]
    assert [[data.corpus_texts[d] for d in p] for p in data.positives] == [["a", "b"], ["a"]]
    with pytest.raises(DataError, match="field 'nope'"):
        from_hf_dataset(ds, anchor_column="nope", positive_column="answer")


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ([{"query": "q", "positive": "a"}, {"positive": "b"}], r"pairs.jsonl:2: field 'query': missing"),
        ([{"query": "q", "positive": "  "}], r"pairs.jsonl:1: field 'positive': empty text"),
        ([{"query": "q", "positives": ["a", ""]}], r"pairs.jsonl:1: field 'positives\[1\]': empty text"),
        ([{"query": "q"}], r"pairs.jsonl:1: field 'positive': missing"),
        (['{"query": "q", "positive": "a"}', '{"query": "q", '], r"pairs.jsonl:2: broken JSON"),
        ([{"query": 3, "positive": "a"}], r"pairs.jsonl:1: field 'query': expected a string"),
        (
            [{"question": "q", "answer": "a"}],
            r"pairs.jsonl:1: field 'query': missing \(this line has 'question', 'answer'; a line needs a query "
            r"\('query' or 'anchor'\) and 'positive' \(a text\) or 'positives'",
        ),
        (["[1, 2]"], r"pairs.jsonl:1: expected a JSON object"),
    ],
)
def test_bad_pairs_name_file_line_field(tmp_path: Path, rows: list, pattern: str) -> None:
    p = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataError, match=pattern):
        load_pairs(p)


def test_tables_by_other_names_are_read_by_position_only_with_two_columns(tmp_path: Path, caplog) -> None:
    """A CSV with ``question``/``answer`` is read in order, and the log says so; with a third column it is
    refused, naming the columns found and those accepted."""
    two = tmp_path / "qa.csv"
    two.write_text("question,answer\nhow to read a file,open(path).read()\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="negminer"):
        data = load_data(two)
    assert data.queries == ["how to read a file"] and data.corpus_texts == ["open(path).read()"]
    assert "reading 'question' as the query and 'answer' as the positive" in caplog.text
    three = tmp_path / "qa3.csv"
    three.write_text("question,answer,source\nq,a,s\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"qa3.csv: columns 'question', 'answer', 'source': need a 'query'"):
        load_data(three)


def test_train_reports_a_data_error_before_importing_torch(tmp_path: Path) -> None:
    """``negminer train`` checks its data before it imports torch and transformers (seconds on a small machine)."""
    import subprocess
    import sys

    bad = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}])
    code = (
        "import sys\nfrom negminer.cli import main\n"
        f"sys.argv = ['negminer', 'train', {str(bad)!r}, '-o', {str(tmp_path / 'out')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('exit', e.code, 'torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "field 'query': missing (this line has 'question', 'answer'" in res.stderr + res.stdout
    assert res.stdout.strip().splitlines()[-1] == "exit 2 False", res.stdout + res.stderr


def test_a_line_over_the_cap_is_refused_with_its_number(tmp_path: Path) -> None:
    from negminer._data import scan_pairs

    line = '{"query": "q", "positive": "' + "x" * 2000 + '"}'
    p = tmp_path / "long.jsonl"
    p.write_text('{"query": "a", "positive": "b"}\n' + line + "\n", encoding="utf-8")
    assert scan_pairs(p, max_line_bytes=len(line)).pairs == 2  # a line of exactly the cap is taken
    with pytest.raises(DataError, match=r"long.jsonl:2: line longer than 2000 bytes"):
        scan_pairs(p, max_line_bytes=2000)


def test_wrong_encoding_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "pairs.jsonl"
    p.write_bytes(b'{"query": "q", "positive": "a"}\n{"query": "caf\xe9", "positive": "b"}\n')
    with pytest.raises(DataError, match=r"pairs.jsonl:2: not valid UTF-8"):
        load_pairs(p)


def test_beir_duplicate_doc_id(beir_dir: Path) -> None:
    with open(beir_dir / "corpus.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"_id": "d2", "text": "again"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl:5: field '_id': duplicate document id 'd2' \(first on line 2\)"):
        load_beir(beir_dir)


def test_beir_qrels_unknown_doc(beir_dir: Path) -> None:
    (beir_dir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnope\t1\n")
    with pytest.raises(DataError, match=r"train.tsv:2: field 'corpus-id': unknown document id 'nope'"):
        load_beir(beir_dir)


def test_beir_qrels_unknown_query_and_bad_score(beir_dir: Path) -> None:
    (beir_dir / "qrels" / "train.tsv").write_text("q9\td1\t1\n")
    with pytest.raises(DataError, match=r"train.tsv:1: field 'query-id': unknown query id 'q9'"):
        load_beir(beir_dir)
    (beir_dir / "qrels" / "train.tsv").write_text("q1\td1\thigh\n")
    with pytest.raises(DataError, match=r"train.tsv:1: field 'score': not a number"):
        load_beir(beir_dir)


def test_beir_empty_text_and_missing_split(beir_dir: Path) -> None:
    with pytest.raises(DataError, match=r"no qrels for split 'test' \(found: train\)"):
        load_beir(beir_dir, split="test")
    with open(beir_dir / "corpus.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"_id": "d9", "title": "", "text": " "}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl:5: field 'text': empty text"):
        load_beir(beir_dir)


def test_missing_file() -> None:
    with pytest.raises(DataError, match="file not found"):
        load_data("/nonexistent/pairs.jsonl")


def test_split_is_by_query_and_deterministic(demo_small) -> None:
    train, test = demo_small.split(0.2)
    assert len(train) + len(test) == len(demo_small)
    assert not set(train.queries) & set(test.queries)
    again = demo_small.split(0.2)
    assert again[1].queries == test.queries
    assert 0.1 < len(test) / len(demo_small) < 0.3


def test_saved_hf_dataset_folder(tmp_path: Path) -> None:
    from datasets import Dataset

    Dataset.from_dict({"anchor": ["q1", "q2"], "positive": ["a", "b"]}).save_to_disk(str(tmp_path / "ds"))
    data = load_data(tmp_path / "ds")
    assert data.queries == ["q1", "q2"] and data.corpus_texts == ["a", "b"]
    with pytest.raises(DataError, match="not a BEIR folder"):
        load_data(tmp_path)


def _many_positives() -> RetrievalData:
    corpus = [f"document {i}" for i in range(40)]
    return RetrievalData(
        [f"d{i}" for i in range(40)],
        corpus,
        ["q1", "q2", "q3", "q4"],
        ["one", "two", "five", "twelve"],
        [[0], [1, 2], [3, 4, 5, 6, 7], list(range(10, 22))],
    )


def test_hide_positives_hides_floor_share_keeps_one_visible() -> None:
    data = _many_positives()
    visible, hidden = data.hide_positives(0.5)
    assert [len(h) for h in hidden] == [0, 1, 2, 6]
    assert [len(v) for v in visible.positives] == [1, 1, 3, 6]
    for v, h, full in zip(visible.positives, hidden, data.positives):
        assert set(v) | set(h) == set(full) and not set(v) & set(h)
    assert visible.corpus_texts == data.corpus_texts  # hidden positives stay in the corpus
    _, most = data.hide_positives(0.99)
    assert [len(h) for h in most] == [0, 1, 4, 11]  # at least one positive stays visible


def test_hide_positives_is_deterministic_and_independent_of_order() -> None:
    data = _many_positives()
    _, hidden = data.hide_positives(0.5)
    assert data.hide_positives(0.5)[1] == hidden
    # the same queries in another order, positives listed in another order: the same documents hidden
    rev = data.subset([3, 2, 1, 0])
    rev.positives = [list(reversed(p)) for p in rev.positives]
    _, hidden_rev = rev.hide_positives(0.5)
    assert [set(h) for h in reversed(hidden_rev)] == [set(h) for h in hidden]
    # another seed hides other documents
    assert data.hide_positives(0.5, seed=1)[1] != hidden


def test_hide_positives_bad_fraction() -> None:
    with pytest.raises(ValueError, match="fraction"):
        _many_positives().hide_positives(1.0)


def test_with_positives_replaces_labels() -> None:
    data = _many_positives()
    more = data.with_positives([[0, 1], [1, 2, 2], [3], [10]])
    assert more.positives == [[0, 1], [1, 2], [3], [10]]
    assert more.queries == data.queries and data.positives[0] == [0]
    with pytest.raises(ValueError, match="positives for 1 queries"):
        data.with_positives([[0]])
