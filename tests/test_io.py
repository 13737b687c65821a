"""Atomic writes: files and folders appear whole or not at all, and a replaced folder never goes missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from negminer._io import atomic_dir, write_json


def test_atomic_dir_replaces_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary or old folder left


def test_a_failed_write_leaves_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("cut short")
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_folder_replaced_twice_holds_the_last_write_and_no_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "model"
    for text in ("1", "2"):
        with atomic_dir(target) as tmp:
            (tmp / "x").write_text(text)
    assert (target / "x").read_text() == "2" and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_writes_follow_the_umask(tmp_path: Path) -> None:
    """Files negminer writes get the mode open() would give them (mkstemp alone gives 0600)."""
    import stat

    from negminer._io import _FILE_MODE

    write_json(tmp_path / "x.json", {"a": 1})
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == _FILE_MODE
    mask = os.umask(0)
    os.umask(mask)
    assert 0o666 & ~mask == _FILE_MODE


def test_release_pages_gives_back_a_memory_maps_resident_pages(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import psutil

    from negminer._io import release_pages

    np.save(tmp_path / "v.npy", np.ones((20_000, 1024), np.float32))  # 80 MB
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    proc = psutil.Process()
    before = proc.memory_info().rss
    assert float(mapped.sum()) == 20_000 * 1024
    assert proc.memory_info().rss - before > 60e6  # the pages read count in this process's RSS...
    release_pages(mapped[5:10])  # (a view of the map is enough)
    assert proc.memory_info().rss - before < 20e6  # ...until released; the data is still there
    assert float(mapped[-1].sum()) == 1024
    release_pages(np.zeros(3))  # not a map: nothing happens
