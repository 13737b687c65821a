"""Models over HTTP, measured in one run against a real ``negminer serve`` on loopback:

1. a refresh of an index with a new checkpoint (all-MiniLM-L6-v2 with its weights moved a little, so the corpus is
   encoded again, as in training): named through a shared folder (today's path-based refresh, the baseline),
   uploaded whole, the same upload again (content-addressed: nothing is sent, and the vectors are cached), and as a
   LoRA adapter (r=16) over the model (its base sent once, with the index's build; each refresh sends the adapter):
   bytes sent, the upload's seconds, and the seconds from asking to the new negatives, as ratios to the baseline;
2. the service's resident memory while it receives a model of ``--big-gb`` GB (sampled from ``/proc`` at 20 Hz);
3. the share of lines in each package of negminer.

    python benchmarks/model_transfer.py [--docs 300] [--big-gb 1.0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table, wait_ready  # noqa: E402

from negminer import build_demo  # noqa: E402
from negminer.index import default_model_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _serve(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEGMINER_")}
    env.update(
        NEGMINER_DATA_DIR=str(data_dir),
        NEGMINER_PORT=str(port),
        NEGMINER_DEVICE="cpu",
        NEGMINER_CACHE_DIR=str(data_dir.parent / "cache"),
        NEGMINER_MAX_MODEL_BYTES=str(8 * 1024**3),
        HF_HUB_OFFLINE="1",
    )
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "negminer.cli", "serve"], env=env, stdout=fh, stderr=fh)
    wait_ready(proc, port, 120, log)
    return proc


class _Watch:
    """The service's RSS (MiB) and the disk's use (bytes) sampled at 20 Hz while the block runs."""

    def __init__(self, pid: int, folder: Path) -> None:
        self.pid, self.folder = pid, folder
        self.rss, self.disk = [_rss_mb(pid)], [shutil.disk_usage(folder).used]
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.rss.append(_rss_mb(self.pid))
            self.disk.append(shutil.disk_usage(self.folder).used)

    def __enter__(self) -> _Watch:
        self.t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self._done.set()
        self._thread.join()

    def row(self, transfer: str, size: int, uid: str, *, disk: bool = True) -> list[Any]:
        grown = max(self.rss) - self.rss[0]
        return [
            transfer,
            f"{size / 1e9:.2f} GB",
            round(self.seconds, 1),
            round(self.rss[0]),
            round(max(self.rss)),
            round(grown),
            f"{grown / (size / 2**20):.3f}",
            round((max(self.disk) - self.disk[0]) / 2**20) if disk else "",
            uid[:19] + "...",
        ]


def big_upload(base: str, pid: int, tmp: Path, gb: float) -> tuple[list[Any], str]:
    """Upload a model folder of ``gb`` GB (all-MiniLM-L6-v2 plus one large file) while sampling the service's RSS
    (not the disk: the client's folder and its tar share it)."""
    import httpx

    from negminer.client.uploads import upload_model

    folder = tmp / "big-model"
    shutil.copytree(default_model_path(), folder)
    block = os.urandom(1 << 20)
    with open(folder / "extra_weights.bin", "wb") as fh:
        for _ in range(int(gb * 1024)):
            fh.write(block)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    with httpx.Client(base_url=base, timeout=3600) as client, _Watch(pid, tmp) as watch:
        transfer = upload_model(client, folder)
    shutil.rmtree(folder)
    return watch.row("upload", size, transfer.id, disk=False), transfer.id


def big_download(base: str, pid: int, tmp: Path, uid: str) -> list[Any]:
    """Fetch that model back as a worker does (``GET /v1/models/{id}/content``, read and hashed, not stored) while
    sampling the service's RSS and the disk's use (the tar is packed as it is sent: no copy on the API's disk)."""
    import hashlib

    import httpx

    digest, size = hashlib.sha256(), 0
    with (
        httpx.Client(base_url=base, timeout=3600) as client,
        _Watch(pid, tmp) as watch,
        client.stream("GET", f"/v1/models/{uid}/content") as r,
    ):
        r.raise_for_status()
        for piece in r.iter_bytes(1 << 20):
            digest.update(piece)
            size += len(piece)
    return watch.row("download", size, uid)


def _lora_adapter(base: str, out: Path) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer

    from negminer.trainer import TrainConfig
    from negminer.trainer._model import prepare_model, save_trained

    model = SentenceTransformer(base, device="cpu")
    cfg = TrainConfig(output_dir=str(out / "run"), model=base, lora_r=16)
    prepare_model(model, cfg, base, out / "run")
    gen = torch.Generator().manual_seed(0)
    for p in model.parameters():
        if p.requires_grad:  # a trained adapter (B starts at zero)
            p.data.normal_(0, 0.01, generator=gen)
    save_trained(model, out / "adapter", merge=False)
    return out / "adapter"


def _perturbed(src: Path, dest: Path, seed: int) -> Path:
    """A copy of model ``src`` with slightly different weights: a new checkpoint, which the embedding cache (keyed
    on the weights) has not seen, so each refresh encodes the corpus again, as in training."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest)
    weights = dest / "model.safetensors"
    tensors = load_file(weights)
    gen = torch.Generator().manual_seed(seed)
    for name, t in tensors.items():
        if t.is_floating_point() and t.ndim == 2:
            tensors[name] = t + 1e-3 * torch.randn(t.shape, generator=gen)
    save_file(tensors, weights, metadata={"format": "pt"})
    return dest


def refreshes(base: str, data_dir: Path, tmp: Path, docs: int) -> list[list[Any]]:
    from negminer.client import HttpNegativeSource
    from negminer.mining import MiningConfig

    data = build_demo(docs)
    model = default_model_path()
    shared_ckpt = data_dir / "runs" / "checkpoint"
    shutil.copytree(model, shared_ckpt)
    own_ckpt = tmp / "checkpoint"
    shutil.copytree(model, own_ckpt)
    adapter = _lora_adapter(str(own_ckpt), tmp / "lora")
    config = MiningConfig(num_negatives=4)

    def run(source: HttpNegativeSource, checkpoint: Path) -> tuple[float, int, float]:
        sent_before = len(source.transfers)
        t0 = time.perf_counter()
        source.refresh(str(checkpoint))
        while source.poll() is None:
            time.sleep(0.05)
        total = time.perf_counter() - t0
        new = source.transfers[sent_before:]
        return total, sum(t.bytes_sent for t in new), sum(t.seconds for t in new)

    rows: list[list[Any]] = []
    shared = HttpNegativeSource(base, "by-path", data, config, shared_dir=data_dir)
    uploaded = HttpNegativeSource(base, "by-upload", data, config)
    lora = HttpNegativeSource(base, "by-lora", data, config)
    try:
        for src in (shared, uploaded, lora):  # each index is built once first (not timed)
            src.refresh(str(shared_ckpt if src is shared else own_ckpt))
            while src.poll() is None:
                time.sleep(0.1)
        base_total, _, _ = run(shared, _perturbed(Path(model), data_dir / "runs" / "checkpoint-2", 2))
        rows.append(["shared folder (path, the baseline)", 0, 0.0, round(base_total, 2), "1.00x"])
        checkpoint = _perturbed(Path(model), tmp / "checkpoint-3", 3)  # new weights: encoded again, sent whole
        total, sent, up = run(uploaded, checkpoint)
        rows.append(["upload, whole model", sent, round(up, 2), round(total, 2), f"{total / base_total:.2f}x"])
        total, sent, up = run(uploaded, checkpoint)  # the same checkpoint again: cached vectors, nothing sent
        rows.append(["upload, the same model again", sent, round(up, 2), round(total, 2), f"{total / base_total:.2f}x"])
        lora.transfers.clear()
        total, sent, up = run(lora, adapter)  # its base went with the build above
        rows.append(["upload, LoRA r=16 adapter", sent, round(up, 2), round(total, 2), f"{total / base_total:.2f}x"])
    finally:
        for src in (shared, uploaded, lora):
            src.close()
    return rows


def line_shares() -> list[list[Any]]:
    counts: dict[str, int] = {}
    for path in (ROOT / "negminer").rglob("*.py"):
        rel = path.relative_to(ROOT / "negminer")
        package = rel.parts[0] if len(rel.parts) > 1 else "(top-level modules)"
        lines = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        counts[package] = counts.get(package, 0) + lines
    total = sum(counts.values())
    order = ["(top-level modules)", "index", "mining", "trainer", "client", "jobs", "service"]
    rows = [[p, counts[p], f"{100 * counts[p] / total:.1f}%"] for p in order if p in counts]
    rows += [[p, n, f"{100 * n / total:.1f}%"] for p, n in sorted(counts.items()) if p not in order]
    return [*rows, ["all", total, "100%"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=300, help="documents of the demo corpus each index holds")
    ap.add_argument("--big-gb", type=float, default=1.0, help="size of the model whose upload is watched")
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="negminer-transfer-") as tmp_name:
        tmp = Path(tmp_name)
        port = _port()
        base = f"http://127.0.0.1:{port}"
        proc = _serve(tmp / "data", port, tmp / "serve.log")
        try:
            up, uid = big_upload(base, proc.pid, tmp, args.big_gb)
            down = big_download(base, proc.pid, tmp, uid)
            rows = refreshes(base, tmp / "data", tmp, args.docs)
        finally:
            proc.terminate()
            proc.wait(60)
    print(
        markdown_table(
            ["refresh with a checkpoint", "model bytes sent", "upload s", "refresh s (ask to negatives)", "vs path"],
            rows,
            title=f"One index refresh over HTTP ({args.docs} documents, all-MiniLM-L6-v2)",
        )
    )
    print(
        markdown_table(
            [
                "transfer",
                "model",
                "seconds",
                "service RSS before (MiB)",
                "peak during (MiB)",
                "growth (MiB)",
                "growth / MiB sent",
                "disk growth, download (MiB)",
                "id",
            ],
            [up, down],
            title="The service receiving a large model, then sending it back (RSS and disk use sampled at 20 Hz; "
            "the download is read and hashed, not stored)",
        )
    )
    print(markdown_table(["package", "non-blank lines", "share"], line_shares(), title="Lines of negminer by package"))


if __name__ == "__main__":
    main()
