"""Dynamic batching: concurrent requests' texts are encoded together, and each request gets its own rows."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from negminer import ConfigError
from negminer.index import Encoder
from negminer.service.batching import EncodeBatcher


def test_concurrent_requests_share_forward_passes_and_get_their_own_rows(lexical_model: Path) -> None:
    """16 requests arrive while the model is busy: they are encoded in one call (not 16), and each answer equals
    encoding that request alone. Requests of another kind (documents, not queries) are never mixed in."""
    enc = Encoder(lexical_model, device="cpu", show_progress=False)
    alone = Encoder(lexical_model, device="cpu", show_progress=False)
    batcher = EncodeBatcher(enc, max_texts=64)
    texts = [[f"request {i} text {j}" for j in range(1 + i % 3)] for i in range(16)]
    got: dict[int, np.ndarray] = {}

    def ask(i: int) -> None:
        got[i] = batcher.encode(texts[i], kind="document" if i == 15 else "query")

    with enc._lock:  # the model is busy: every request queues behind the one being encoded
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        deadline = time.time() + 30
        while len(batcher._queue) < 15 and time.time() < deadline:  # one may already be taken
            time.sleep(0.01)
    for t in threads:
        t.join(30)
    assert batcher.requests == 16 and batcher.batches <= 3, (batcher.batches, batcher.requests)
    for i in range(16):
        expect = alone.encode(texts[i], kind="document" if i == 15 else "query")
        np.testing.assert_allclose(got[i], expect, atol=1e-6)


def test_an_error_reaches_every_request_of_the_batch(lexical_model: Path) -> None:
    batcher = EncodeBatcher(Encoder(lexical_model, device="cpu", show_progress=False))
    with pytest.raises(ConfigError, match="no prompt 'nope'"):
        batcher.encode(["a text"], prompt_name="nope")
    assert batcher.encode(["a text"]).shape[0] == 1  # the thread lives on
