from __future__ import annotations

from negminer import build_demo
from negminer._demo import stdlib_functions


def test_demo_is_deterministic_and_real_text(demo_small) -> None:
    again = build_demo(250)
    assert again.queries == demo_small.queries
    assert again.corpus_texts == demo_small.corpus_texts
    assert 200 <= len(demo_small.corpus_texts) <= 300
    for doc in demo_small.corpus_texts[:50]:
        assert doc.lstrip().startswith(("def ", "async def ", "@"))


def test_documents_have_no_docstring() -> None:
    for _, _, query, doc in stdlib_functions()[:300]:
        assert query not in doc


def test_identical_docstrings_become_several_positives() -> None:
    full = build_demo(None)
    multi = [p for p in full.positives if len(p) > 1]
    assert len(multi) > 20
    harsh = build_demo(800, harsh=True)
    assert min(len(p) for p in harsh.positives) >= 2
    assert max(len(p) for p in harsh.positives) >= 10
