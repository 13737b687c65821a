"""Mining as Ray tasks: the miner (index, vectors, positives, options) goes to the object store once; each task
mines one chunk of queries with the very code of the in-process path (:meth:`_Miner.chunk`), so the results are
identical; the driver gathers chunks in order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from negminer._ray import connect

__all__ = ["map_chunks"]


def _run(miner: Any, qidx: np.ndarray, depth0: int, max_depth: int) -> tuple[list[Any], dict[str, float]]:
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
    ref = ray.put(miner)
    pending = [remote.remote(ref, qidx, depth0, max_depth) for qidx in chunks]
    for task in pending:
        yield ray.get(task)
