"""Atomic writes: files and folders appear whole or not at all, and a replaced folder never goes missing; .npy
files read without `ast`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from negminer._io import atomic_dir, load_npy, npy_shape, release_pages, scratch_dir, write_json


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
    import psutil

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


ARRAYS = {
    "vectors": np.arange(12, dtype=np.float32).reshape(3, 4),
    "keys": np.arange(5, dtype=np.uint64),
    "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "empty": np.zeros((0, 384), dtype=np.float32),
    "scalar": np.array(3.5),
    "big-endian": np.arange(4, dtype=">f4"),
    "strings": np.array(["ab", "c"]),
    "structured": np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]),  # not read by us: np.load
}


@pytest.mark.parametrize("mmap", [False, True])
def test_load_npy_reads_what_np_load_reads_without_ast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mmap: bool
) -> None:
    """The service's threads read .npy headers without ``ast`` (CPython 3.11's AST builder is not thread-safe:
    a concurrent parse fails with ``SystemError: AST constructor recursion depth mismatch``)."""
    import ast

    for name, array in ARRAYS.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, array)
        want = np.load(path, mmap_mode="r" if mmap else None)
        with monkeypatch.context() as m:
            if name != "structured":
                m.setattr(ast, "literal_eval", lambda *a, **k: pytest.fail("ast was used"))
            got = load_npy(path, mmap=mmap)
            assert npy_shape(path) == array.shape, name
        assert type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got, want) and got.flags.f_contiguous == want.flags.f_contiguous, name
        del got, want


def test_load_npy_refuses_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "v.npy"
    np.save(path, np.ones((10, 4), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:-8])
    for mmap in (False, True):
        with pytest.raises(ValueError):
            load_npy(path, mmap=mmap)


def test_scratch_folders_of_dead_processes_are_removed_by_the_next_one(tmp_path: Path) -> None:
    """A process killed -9 in the middle of a build leaves its scratch vectors; the next scratch folder of that
    prefix removes them, and never a live process's."""
    import signal
    import subprocess
    import sys

    code = (
        "import sys, time; from negminer._io import scratch_dir; d = scratch_dir('negminer-vectors-', sys.argv[1]); "
        "open(d.name + '/vectors.npy', 'wb').write(b'x' * 1000); print(d.name, flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    dead = Path(proc.stdout.readline().strip())
    live = scratch_dir("negminer-vectors-", tmp_path)
    other = tmp_path / "negminer-mine-abc"  # another prefix: not ours to judge
    other.mkdir()
    assert dead.is_dir()
    again = scratch_dir("negminer-vectors-", tmp_path)
    assert dead.is_dir(), "removed while its process lives"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    third = scratch_dir("negminer-vectors-", tmp_path)
    assert not dead.exists() and Path(live.name).is_dir() and Path(again.name).is_dir() and other.is_dir()
    unowned = tmp_path / "negminer-vectors-unowned"  # killed before it locked: removed once it is old
    unowned.mkdir()
    scratch_dir("negminer-vectors-", tmp_path).cleanup()
    assert unowned.is_dir()
    os.utime(unowned, (0, 0))
    scratch_dir("negminer-vectors-", tmp_path).cleanup()
    assert not unowned.exists()
    for d in (live, again, third):
        d.cleanup()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["negminer-mine-abc"]
