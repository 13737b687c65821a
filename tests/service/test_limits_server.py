"""Bounded work against a real server process: the key is checked before a body is read, a multi-million-line
upload is validated in bounded memory, an error answer leaves the connection usable, and 10,000 distinct requests
leave the server holding what it held after 100."""

from __future__ import annotations

import json
import select
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.service._procs import free_port, start_server

pytestmark = pytest.mark.slow  # a server process

KEY = "s" * 32
READ_TIMEOUT = 3.0


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, lexical_model: Path):
    tmp = tmp_path_factory.mktemp("limits")
    port = free_port()
    proc = start_server(tmp, lexical_model, port, NEGMINER_API_KEY=KEY, NEGMINER_READ_TIMEOUT_SECONDS=str(READ_TIMEOUT))
    yield proc, port, tmp
    proc.kill()
    proc.wait(30)


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(server) -> None:
    proc, port, tmp = server
    declared = 400 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = (
            "POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        )
        s.sendall(head.encode() + b"--b\r\n" + b"x" * 65536)  # 64 KB of the 400 MB it announced, then it waits
        answer = ""
        while chunk := s.recv(65536):  # the whole answer arrives, and the server closes: it read no more
            answer += chunk.decode("latin-1")
    assert answer.startswith("HTTP/1.1 401"), answer[:200]
    assert "application/problem+json" in answer and "unauthorized" in answer
    assert list((tmp / "data" / "files").glob("*")) == [] if (tmp / "data" / "files").exists() else True


def test_a_one_line_upload_is_refused_at_the_line_cap_in_bounded_memory(server, tmp_path: Path) -> None:
    """A 200 MB JSONL file of one line: refused with its line, having read at most NEGMINER_MAX_LINE_BYTES (8 MiB)
    of it; the server grew by about 3.4 times such a file when it read the line whole."""
    proc, port, _ = server
    path = tmp_path / "one-line.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"query": "q", "positive": "')
        for _ in range(200):
            fh.write("x" * (1 << 20))
        fh.write('"}\n')
    before = _peak_rss_mb(proc.pid)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as c, open(path, "rb") as fh:
        r = c.post("/v1/files", files={"file": ("one.jsonl", fh)}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 422 and r.json()["line"] == 1, r.text
    assert "line longer than 8388608 bytes" in r.json()["detail"]
    grown = _peak_rss_mb(proc.pid) - before
    print(f"200 MB one-line upload: the server's peak memory grew by {grown:.0f} MB")
    assert grown < 100, f"peak memory grew by {grown:.0f} MB"


def test_a_two_million_line_upload_is_validated_in_bounded_memory(server, tmp_path: Path) -> None:
    """2,000,000 lines (about 120 MB): the server's peak memory grows by less than 300 MB (it grew by about 4 GB
    for 5,000,000 lines when the whole file was loaded to be checked)."""
    proc, port, _ = server
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(2_000_000):
            fh.write(f'{{"query": "question number {i}", "positive": "answer text {i % 500_000}"}}\n')
    before = _peak_rss_mb(proc.pid)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as c, open(path, "rb") as fh:
        r = c.post("/v1/files", files={"file": ("big.jsonl", fh)}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    info = r.json()
    assert (info["queries"], info["pairs"], info["documents"]) == (2_000_000, 2_000_000, 500_000)
    grown = _peak_rss_mb(proc.pid) - before
    print(f"2,000,000-line upload: the server's peak memory grew by {grown:.0f} MB")  # pytest -s shows it
    assert grown < 300, f"peak memory grew by {grown:.0f} MB"


def test_an_error_answer_leaves_the_connection_usable(server) -> None:
    _, port, _ = server
    auth = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as c:
        for body in (b'{"inputs": ["\\ud800"]}', b'{"inputs": "x", "dimensions": NaN}', b'{"inputs": '):
            r = c.post("/v1/embed", content=body, headers=auth)
            assert r.status_code == 422 and r.headers.get("connection") != "close", r.text
            assert r.json()["param"] in ("inputs", "dimensions", "body")
            ok = c.post("/v1/embed", content=json.dumps({"inputs": "fine"}).encode(), headers=auth)
            assert ok.status_code == 200


def _closed(s: socket.socket) -> bool:
    """Whether the server has closed this connection (readable, and nothing or an error to read)."""
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        return s.recv(4096) == b""
    except OSError:
        return True


def test_slow_header_and_slow_body_clients_are_cut_off(server) -> None:
    """200 clients trickling their headers a byte every half second are all disconnected within the read timeout
    (they were all still held after a minute); a client that stalls mid-body gets 408; the server still serves."""
    _, port, _ = server
    t0 = time.time()  # before the first connection: none can be cut before t0 + READ_TIMEOUT
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(200)]
    try:
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        held = set(range(len(socks)))
        while held and time.time() - t0 < READ_TIMEOUT + 10:
            for i in list(held):
                try:
                    if _closed(socks[i]):
                        held.discard(i)
                    else:
                        socks[i].sendall(b"a")
                except OSError:
                    held.discard(i)
            time.sleep(0.5)
        assert not held, f"{len(held)} slow-header connections still held after {time.time() - t0:.0f} s"
        assert time.time() - t0 >= READ_TIMEOUT  # not cut before their time
    finally:
        for s in socks:
            s.close()
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT + 10) as s:
        head = (
            "POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: 100\r\n\r\n"
        )
        s.sendall(head.encode() + b'{"inputs": "sl')  # 14 of the 100 bytes, then nothing
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer, answer[:300]
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200


def _holds(pid: int) -> tuple[int, int, int, float]:
    """(open descriptors, memory maps, threads, resident MB) of a process."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    with open(f"/proc/{pid}/maps", encoding="utf-8") as fh:
        maps = sum(1 for _ in fh)
    return fds, maps, int(status["Threads"]), int(status["VmRSS"].split()[0]) / 1024


def test_10000_distinct_requests_leave_the_server_holding_what_it_held_after_100(server) -> None:
    """A new text in each request (searches by text, embeddings, mining), so each one encodes and adds to the
    embedding cache: descriptors, memory maps and threads stay what they were after 100 requests, and resident
    memory grows by little (the cache's keys). Four clients on kept-alive connections, as a real one would be."""
    proc, port, _ = server
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, headers=auth) as c:
        docs = [{"id": f"d{i}", "text": f"document {i} about topic {i % 17} and word{i}"} for i in range(300)]
        assert c.post("/v1/indexes", json={"name": "held", "documents": docs}).status_code == 202
        deadline = time.time() + 60
        while c.get("/v1/indexes/held").json()["status"] != "ready":
            assert time.time() < deadline, "the index was not built"
            time.sleep(0.1)
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, headers=auth) for _ in range(4)]

    def request(i: int) -> None:
        c = clients[i % 4]
        if i % 3 == 0:
            r = c.post("/v1/indexes/held/search", json={"queries": [f"query {i} topic {i % 17} q{i}"], "top_k": 5})
        elif i % 3 == 1:
            r = c.post("/v1/embeddings", json={"input": [f"text number {i}"]})
        else:
            query = {"query": f"mine {i} topic {i % 17}", "positive_ids": [f"d{i % 300}"]}
            r = c.post("/v1/indexes/held/mine", json={"queries": [query], "options": {"num_negatives": 2}})
        assert r.status_code == 200, (i, r.text[:300])

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(request, range(100)))
            after_100 = _holds(proc.pid)
            list(pool.map(request, range(100, 10_000)))
            after_10000 = _holds(proc.pid)
    finally:
        for c in clients:
            c.close()
    print(f"(descriptors, maps, threads, RSS MB) after 100 requests {after_100}, after 10,000 {after_10000}")
    fds, maps, threads, rss = after_10000
    assert fds <= after_100[0] + 2 and threads <= after_100[2], (after_100, after_10000)
    assert maps <= after_100[1] + 8, (after_100, after_10000)  # (the allocator may map an arena or two)
    assert rss - after_100[3] < 40, (after_100, after_10000)
