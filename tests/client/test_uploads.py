"""Models on the wire: a folder's manifest and content id, the deterministic archive, and the checked unpack (with
and without the library's extraction filter, which Pythons before 3.11.4 lack)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from negminer.client import ArchiveError
from negminer.client.uploads import (
    folder_manifest,
    is_upload_id,
    iter_model_tar,
    model_tar_size,
    pack_model,
    unpack_model,
    upload_id,
)


def _folder(root: Path) -> Path:
    (root / "1_Pooling").mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "model.safetensors").write_bytes(b"\1" * 1000)
    (root / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (root / ".config.json.tmp").write_text("a write in progress")
    (root / "optimizer.pt").write_bytes(b"\2" * 10)
    return root


def test_the_id_is_of_the_files_and_the_archive_is_deterministic(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "m")
    manifest = folder_manifest(folder, frozenset({"optimizer.pt"}))
    assert [m[0] for m in manifest] == ["1_Pooling/config.json", "config.json", "model.safetensors"]
    uid = upload_id(manifest)
    assert is_upload_id(uid) and uid != upload_id(manifest, base="all-MiniLM-L6-v2")
    assert upload_id(folder_manifest(_folder(tmp_path / "copy"), frozenset({"optimizer.pt"}))) == uid
    assert pack_model(folder, manifest, tmp_path / "a.tar") == pack_model(folder, manifest, tmp_path / "b.tar")
    unpack_model(tmp_path / "a.tar", tmp_path / "out", max_bytes=10_000, max_files=10)
    assert folder_manifest(tmp_path / "out") == manifest
    assert not is_upload_id("sha256:xyz") and not is_upload_id("ft:m:job")


def test_the_streamed_tar_is_the_packed_one_of_the_announced_length(tmp_path: Path) -> None:
    """What ``GET /v1/models/{name}/content`` streams: the bytes ``pack_model`` writes, in pieces of at most the
    chunk, of the length ``model_tar_size`` announces; a file that changed since it was listed breaks it off."""
    import hashlib

    folder = _folder(tmp_path / "m")
    (folder / "big.bin").write_bytes(bytes(range(256)) * 40)  # 10,240 bytes: several chunks, a 512 multiple
    manifest = folder_manifest(folder)
    pieces = list(iter_model_tar(folder, manifest, chunk=4096))
    assert max(len(p) for p in pieces) <= 4096 and sum(map(len, pieces)) == model_tar_size(manifest)
    digest = pack_model(folder, manifest, tmp_path / "m.tar")
    assert (tmp_path / "m.tar").read_bytes() == b"".join(pieces)
    assert digest == hashlib.sha256(b"".join(pieces)).hexdigest()
    with tarfile.open(tmp_path / "m.tar") as tar:  # the standard library reads it
        assert sorted(tar.getnames()) == sorted(rel for rel, _, _ in manifest)
    for change in (b"shorter", bytes(20_000)):
        (folder / "big.bin").write_bytes(change)
        with pytest.raises(ArchiveError, match="big.bin is (shorter|longer) than when it was listed"):
            b"".join(iter_model_tar(folder, manifest))


def _tar(path: Path, *entries: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w") as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return path


def _entry(name: str, size: int = 1, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, kind, link
    return info


@pytest.mark.parametrize("library_filter", [True, False])
@pytest.mark.parametrize(
    ("entries", "said", "too_large"),
    [
        ([_entry("../up.json")], "'..'", False),
        ([_entry("/tmp/abs.json")], "absolute", False),
        ([_entry("config.json", 0, tarfile.SYMTYPE, "/etc/passwd")], "symlink", False),
        ([_entry("config.json"), _entry("w", 0, tarfile.LNKTYPE, "config.json")], "hard link", False),
        ([_entry("dev", 0, tarfile.CHRTYPE)], "not a regular file", False),
        ([_entry(f"f{i}") for i in range(6)], "more than 5 entries", True),
        ([_entry("big", 2000)], "over 1000 bytes", True),
    ],
)
def test_unsafe_or_oversized_archives_are_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, library_filter: bool, entries, said: str, too_large: bool
) -> None:
    if not library_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = _tar(tmp_path / "a.tar", *entries)
    with pytest.raises(ArchiveError) as err:
        unpack_model(archive, tmp_path / "out", max_bytes=1000, max_files=5)
    assert said in str(err.value) and err.value.too_large is too_large and err.value.param == "file"
    assert not (tmp_path / "out").exists() and not (tmp_path / "up.json").exists()


def test_a_truncated_archive_is_refused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar", _entry("config.json", 100_000))
    archive.write_bytes(archive.read_bytes()[:50_000])
    with pytest.raises(ArchiveError, match="not a complete tar archive"):
        unpack_model(archive, tmp_path / "out", max_bytes=10**6, max_files=5)
