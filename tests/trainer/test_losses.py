"""Each loss and its gradient against a slow, direct computation; InfoNCE against sentence-transformers' MNRL;
GradCache against the plain forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from negminer.trainer.losses import LOSSES, DCLLoss, DecoupledSoftmaxLoss, FalseNegativeFilter, InfoNCELoss

TAU = 0.1


def _slow(
    name: str,
    q: torch.Tensor,
    cols: list[torch.Tensor],
    q_ids: list[int],
    col_ids: list[list[int]],
    known: dict[int, set[int]],
    fn_margin: float | None = None,
) -> torch.Tensor:
    """Loops and explicit sums, straight from the formulas in the loss docstrings."""
    docs = [(col_ids[c][r], cols[c][r]) for c in range(len(cols)) for r in range(len(q_ids))]
    first: dict[int, torch.Tensor] = {}
    for did, vec in docs:
        first.setdefault(did, vec)  # repeated documents count once
    losses = []
    for g in sorted(set(q_ids)):
        rows = [r for r, x in enumerate(q_ids) if x == g]
        qv = F.normalize(q[rows[0]], dim=0)
        pos = {col_ids[0][r] for r in rows} | known.get(g, set())
        cos = {d: torch.dot(qv, F.normalize(v, dim=0)) for d, v in first.items()}
        pos_ids = [d for d in first if d in pos]
        neg_ids = [d for d in first if d not in pos]
        if fn_margin is not None:
            ref = min(cos[p].item() for p in pos_ids)
            neg_ids = [d for d in neg_ids if not cos[d].item() > ref - abs(ref) * fn_margin]
        s = {d: c / TAU for d, c in cos.items()}
        terms = []
        for p in pos_ids:
            if name == "infonce":
                denom = sum(torch.exp(s[d]) for d in pos_ids + neg_ids)
                terms.append(-torch.log(torch.exp(s[p]) / denom))
            elif name == "decoupled":
                denom = torch.exp(s[p]) + sum(torch.exp(s[d]) for d in neg_ids)
                terms.append(-torch.log(torch.exp(s[p]) / denom))
            elif neg_ids:
                terms.append(-s[p] + torch.log(sum(torch.exp(s[d]) for d in neg_ids)))
            else:
                terms.append(0.0 * s[p])  # no denominator: contributes 0
        losses.append(sum(terms) / len(terms))
    return sum(losses) / len(losses)


def _batch(seed: int, b: int = 5, n_neg: int = 2, dim: int = 8):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, dim, generator=g, requires_grad=True)
    cols = [torch.randn(b, dim, generator=g, requires_grad=True) for _ in range(1 + n_neg)]
    # rows 0 and 1 are the same query (two positives); row 3's hard negative is row 2's positive text;
    # row 4's positive repeats row 0's positive (a duplicate); query 7 also knows doc 24 as a positive.
    q_ids = [7, 7, 8, 9, 10]
    col_ids = [[20, 21, 22, 23, 20], [30, 31, 32, 22, 34], [40, 41, 42, 43, 24]]
    with torch.no_grad():
        cols[1][3] = cols[0][2]
        cols[0][4] = cols[0][0]
    known = {7: {24}}
    return q, cols, q_ids, col_ids, known


def _ours(cls, q, cols, q_ids, col_ids, known, fn=None):
    loss = cls(torch.nn.Identity(), temperature=TAU, positives=known, false_negative_filter=fn)
    loss._keys = (torch.tensor(q_ids), [torch.tensor(c) for c in col_ids])
    return loss.loss_from_embeddings(q, cols)


@pytest.mark.parametrize("name", ["infonce", "decoupled", "dcl"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_gradient_match_slow_computation(name: str, seed: int) -> None:
    q, cols, q_ids, col_ids, known = _batch(seed)
    fast = _ours(LOSSES[name], q, cols, q_ids, col_ids, known)
    slow = _slow(name, q, cols, q_ids, col_ids, known)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5, abs=1e-6)
    g_fast = torch.autograd.grad(fast, [q, *cols])
    g_slow = torch.autograd.grad(slow, [q, *cols])
    for a, b in zip(g_fast, g_slow):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["infonce", "decoupled", "dcl"])
def test_masked_candidates_match_slow_computation(name: str) -> None:
    q, cols, q_ids, col_ids, known = _batch(5)
    fn = FalseNegativeFilter("relative", margin=0.5)
    loss = LOSSES[name](torch.nn.Identity(), temperature=TAU, positives=known, false_negative_filter=fn)
    loss._keys = (torch.tensor(q_ids), [torch.tensor(c) for c in col_ids])
    fast = loss.loss_from_embeddings(q, cols)
    assert loss.last_masked > 0  # the case really masks something
    slow = _slow(name, q, cols, q_ids, col_ids, known, fn_margin=0.5)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5, abs=1e-6)
    for a, b in zip(torch.autograd.grad(fast, [q, *cols]), torch.autograd.grad(slow, [q, *cols])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_single_positive_decoupled_equals_infonce_and_differs_with_several() -> None:
    g = torch.Generator().manual_seed(3)
    q = torch.randn(4, 8, generator=g)
    cols = [torch.randn(4, 8, generator=g) for _ in range(2)]
    ids = [[10, 11, 12, 13], [20, 21, 22, 23]]
    single = [_ours(c, q, cols, [1, 2, 3, 4], ids, {}) for c in (InfoNCELoss, DecoupledSoftmaxLoss)]
    assert single[0].item() == pytest.approx(single[1].item(), rel=1e-6)
    several = [_ours(c, q, cols, [1, 1, 3, 4], ids, {}) for c in (InfoNCELoss, DecoupledSoftmaxLoss)]
    assert several[0].item() > several[1].item()


def test_dcl_can_be_negative_and_handles_no_negatives() -> None:
    q = torch.tensor([[1.0, 0.0]])
    cols = [torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]])]
    loss = _ours(DCLLoss, q, cols, [1], [[5], [6]], {})
    assert loss.item() == pytest.approx(-1 / TAU + (-1 / TAU))  # -s(q,p) + log e^{s(q,n)}
    none = _ours(DCLLoss, q, [cols[0]], [1], [[5]], {})
    assert none.item() == 0.0


@pytest.fixture(scope="module")
def st_model(tiny_model: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model), device="cpu")


def _features(model, columns: list[list[str]]):
    return [model.tokenize(col) for col in columns]


def test_infonce_equals_sentence_transformers_mnrl(st_model) -> None:
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    st_model.eval()
    cols = [
        [f"query number {i}" for i in range(6)],
        [f"document {i} text" for i in range(6)],
        [f"another negative {i}" for i in range(6)],
    ]
    ours = InfoNCELoss(st_model, temperature=0.05)(_features(st_model, cols), None)
    theirs = MultipleNegativesRankingLoss(st_model, scale=20.0)(_features(st_model, cols), None)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_repeated_texts_detected_from_token_ids(st_model) -> None:
    st_model.eval()
    cols = [["q a", "q a", "q b"], ["doc one", "doc two", "doc three"], ["doc two", "x y", "z w"]]
    loss = InfoNCELoss(st_model, temperature=0.05)
    value = loss(_features(st_model, cols), None)
    q_keys, doc_keys = loss._keys
    assert q_keys[0] == q_keys[1] != q_keys[2]
    assert doc_keys[1][0] == doc_keys[0][1]  # "doc two" twice
    with_ids = InfoNCELoss(st_model, temperature=0.05)(
        _features(st_model, cols), torch.tensor([[1, 10, 11], [1, 11, 12], [2, 13, 14]])
    )
    assert value.item() == pytest.approx(with_ids.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["infonce", "decoupled", "dcl"])
def test_gradcache_matches_plain_forward(st_model, name: str) -> None:
    st_model.eval()  # dropout draws differ between one merged forward and mini-batches; GradCache replays its own
    cols = [
        [f"query {i} about sorting" for i in range(6)],
        [f"def sort_{i}(x): return x" for i in range(6)],
        [f"unrelated text {i}" for i in range(6)],
    ]

    def grads(loss_obj):
        st_model.zero_grad()
        torch.manual_seed(0)
        value = loss_obj(_features(st_model, cols), None)
        value.backward()
        return value.item(), [p.grad.clone() for p in st_model.parameters() if p.grad is not None]

    plain = grads(LOSSES[name](st_model))
    cached = grads(LOSSES[name](st_model, mini_batch_size=2))
    assert plain[0] == pytest.approx(cached[0], rel=1e-4)
    for a, b in zip(plain[1], cached[1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_config_and_citation() -> None:
    for cls in LOSSES.values():
        loss = cls(torch.nn.Identity(), temperature=0.02, false_negative_filter=FalseNegativeFilter("adaptive", 1.0))
        cfg = loss.get_config_dict()
        assert cfg["temperature"] == 0.02 and cfg["false_negative_filter"]["rule"] == "adaptive"
        assert "@" in loss.citation
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(torch.nn.Identity(), temperature=0)


def test_guide_model_decides_the_masking(st_model, tiny_teacher: Path) -> None:
    from sentence_transformers import SentenceTransformer

    st_model.eval()
    guide = SentenceTransformer(str(tiny_teacher), device="cpu")
    cols = [
        [f"query {i} about files" for i in range(5)],
        [f"def read_{i}(path): ..." for i in range(5)],
        [f"def write_{i}(path): ..." for i in range(5)],
    ]
    feats = _features(st_model, cols)
    flt = FalseNegativeFilter("absolute", margin=0.0, guide=guide)
    loss = InfoNCELoss(st_model, false_negative_filter=flt)
    loss(feats, None)
    # the same rule computed by hand on the guide's cosine scores
    q = guide.encode(cols[0], convert_to_tensor=True, normalize_embeddings=True)
    d = guide.encode(cols[1] + cols[2], convert_to_tensor=True, normalize_embeddings=True)
    cos = q @ d.T
    pos = cos[torch.arange(5), torch.arange(5)]
    expected = sum(int((cos[i] > pos[i]).sum()) for i in range(5))  # s + 0 > pos; the positive itself is not
    assert expected > 0 and loss.last_masked == expected
    assert all(not p.requires_grad for p in guide.parameters())


def test_known_positives_masked_are_counted() -> None:
    """Query 7 knows doc 24, which sits in the batch as row 4's hard negative: masked once per training batch."""
    q, cols, q_ids, col_ids, known = _batch(0)
    loss = InfoNCELoss(torch.nn.Identity(), temperature=TAU, positives=known)
    loss._keys = (torch.tensor(q_ids), [torch.tensor(c) for c in col_ids])
    loss.loss_from_embeddings(q, cols)
    assert loss.positives_masked == 1
    loss.eval()  # evaluation batches are not counted
    loss.loss_from_embeddings(q, cols)
    assert loss.positives_masked == 1


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_reweighting_matches_its_formula(gamma: float) -> None:
    """(1 - p)^gamma * -log p per (query, positive) term, p the positive's probability (InfoNCE)."""
    q, cols, q_ids, col_ids, known = _batch(3)
    loss = InfoNCELoss(torch.nn.Identity(), temperature=TAU, positives=known, focal_gamma=gamma)
    loss._keys = (torch.tensor(q_ids), [torch.tensor(c) for c in col_ids])
    fast = loss.loss_from_embeddings(q, cols)
    plain = _ours(InfoNCELoss, q, cols, q_ids, col_ids, known)
    # the slow way: every term reweighted by its own probability
    docs = {}
    for c in range(len(cols)):
        for r in range(len(q_ids)):
            docs.setdefault(col_ids[c][r], cols[c][r])
    per_query = []
    for g in sorted(set(q_ids)):
        rows = [r for r, x in enumerate(q_ids) if x == g]
        qv = F.normalize(q[rows[0]], dim=0)
        s = {d: torch.dot(qv, F.normalize(v, dim=0)) / TAU for d, v in docs.items()}
        pos = [d for d in docs if d in ({col_ids[0][r] for r in rows} | known.get(g, set()))]
        log_z = torch.logsumexp(torch.stack(list(s.values())), dim=0)
        terms = [log_z - s[p] for p in pos]
        per_query.append(sum((1 - torch.exp(-t)) ** gamma * t for t in terms) / len(terms))
    slow = sum(per_query) / len(per_query)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5) and fast.item() < plain.item()
    for a, b in zip(torch.autograd.grad(fast, [q, *cols]), torch.autograd.grad(slow, [q, *cols])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["infonce", "decoupled", "dcl"])
def test_mixed_negatives_join_training_only_and_make_it_harder(name: str) -> None:
    q, cols, q_ids, col_ids, known = _batch(4, b=6, n_neg=3)
    q_ids, col_ids = list(range(6)), [[10 * c + r for r in range(6)] for c in range(4)]
    plain = _ours(LOSSES[name], q, cols, q_ids, col_ids, {})
    loss = LOSSES[name](torch.nn.Identity(), temperature=TAU, mix_negatives=4, mix_pool=4, seed=1)
    loss._keys = (torch.tensor(q_ids), [torch.tensor(c) for c in col_ids])
    loss.eval()
    assert loss.loss_from_embeddings(q, cols).item() == pytest.approx(plain.item())  # evaluation: no synthesis
    loss.train()
    mixed = loss.loss_from_embeddings(q, cols)
    assert mixed.item() > plain.item()  # more (and hard) negatives in every query's denominator
    grads = torch.autograd.grad(mixed, [q, *cols])
    assert all(torch.isfinite(g).all() for g in grads)
    again = LOSSES[name](torch.nn.Identity(), temperature=TAU, mix_negatives=4, mix_pool=4, seed=1)
    again._keys = loss._keys
    assert again.loss_from_embeddings(q, cols).item() == pytest.approx(mixed.item())  # seeded
    assert loss.get_config_dict()["mix_negatives"] == 4
