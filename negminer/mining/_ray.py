"""Mining as Ray tasks: the miner (index, vectors, positives, options) goes to the object store once; each task
mines one chunk of queries with the very code of the in-process path (:meth:`_Miner.chunk`), so the results are
identical; the driver gathers chunks in order. A worker process deserializes the miner (and its FAISS index) once
and keeps it for the run's later tasks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

from negminer._ray import connect

__all__ = ["map_chunks"]

_MINERS: dict[str, Any] = {}  # in a Ray worker: run token -> its deserialized miner (the latest run only)


def _run(token: str, boxed: list[Any], qidx: np.ndarray, depth0: int, max_depth: int) -> tuple[list[Any], dict]:
    miner = _MINERS.get(token)
    if miner is None:
        import ray

        _MINERS.clear()
        miner = _MINERS[token] = ray.get(boxed[0])  # a boxed reference is not resolved for every task
    for k in miner.timing:
        miner.timing[k] = 0.0
    t0 = time.perf_counter()
    passes = miner.chunk(qidx, depth0, max_depth)
    timing = dict(miner.timing)
    timing["ray_task"] = time.perf_counter() - t0
    return passes, timing


def map_chunks(
    miner: Any, chunks: list[np.ndarray], depth0: int, max_depth: int, *, address: str | bool
) -> Iterator[tuple[list[Any], dict[str, float]]]:
    """(passes, timing) of every chunk, in chunk order, computed by Ray tasks."""
    ray = connect(address)
    remote = ray.remote(num_cpus=1)(_run)
    ref, token = ray.put(miner), uuid.uuid4().hex
    pending = [remote.remote(token, [ref], qidx, depth0, max_depth) for qidx in chunks]
    for task in pending:
        yield ray.get(task)
