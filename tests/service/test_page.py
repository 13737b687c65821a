"""The web page in a real headless Chromium against a real server and worker: it asks for the key and shows
nothing without it, draws a running job's curves, cancels it, renders a mining report, lists the indexes, and
``/docs`` and ``/redoc`` render with every host but the service unreachable. Screenshots are written to
``runs/page-screenshots/`` (or ``$NEGMINER_SCREENSHOTS``) for a person to look at."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service._browser import Browser, find_chromium
from tests.service._procs import free_port, start_server, stop

pytestmark = pytest.mark.slow  # a server, a worker, a training job and a browser

KEY = "page-test-key-0123456789"
SHOTS = Path(
    os.environ.get("NEGMINER_SCREENSHOTS") or Path(__file__).resolve().parents[2] / "runs" / "page-screenshots"
)


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "no Chromium here (Debian: apt-get install chromium; .ci/run installs it): "
            "the page's browser test did not run"
        )
    return binary


@pytest.fixture
def browser(chromium: str) -> Iterator[Browser]:
    b = Browser(chromium)
    try:
        yield b
    finally:
        b.close()


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := check():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_page_shows_jobs_curves_reports_and_offline_docs(
    tmp_path: Path, lexical_model: Path, browser: Browser
) -> None:
    from negminer import build_demo

    data = build_demo(150)
    port = free_port()
    proc = start_server(
        tmp_path, lexical_model, port, "--with-worker", NEGMINER_API_KEY=KEY, NEGMINER_PUBLIC_DOCS="true"
    )
    base = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    try:
        docs = [{"id": d, "text": t} for d, t in zip(data.corpus_ids, data.corpus_texts)]
        assert api.post("/v1/indexes", json={"name": "code", "documents": docs}).status_code == 202
        _wait(lambda: api.get("/v1/indexes/code").json()["status"] == "ready", 60, "the index")
        rows = [
            {"query": q, "positives": [data.corpus_texts[p] for p in pos]}
            for q, pos in zip(data.queries, data.positives)
        ]
        upload = api.post(
            "/v1/files",
            files={"file": ("train.jsonl", "\n".join(json.dumps(r) for r in rows).encode())},
            data={"purpose": "fine-tune"},
        ).json()
        hp = {
            "max_steps": 2000,
            "batch_size": 4,
            "learning_rate": 0.01,
            "negatives": "refresh",
            "refresh_every": 10,
            "logging_steps": 2,
            "num_negatives": 2,
        }
        job = api.post("/v1/fine_tuning/jobs", json={"training_file": upload["id"], "hyperparameters": hp}).json()

        def evaluated_after_refresh() -> bool:
            events = api.get(f"/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 1000}).json()["data"]
            return any((e["data"] or {}).get("evaluation") == "refresh" for e in events)

        _wait(evaluated_after_refresh, 180, "the job's first refresh")

        # without the key: the page asks for it and shows no data
        browser.goto(f"{base}/ui/#job/{job['id']}")
        browser.wait("!document.querySelector('#key-form').hidden", what="the key form")
        assert job["id"] not in browser.js("document.body.innerText")
        browser.screenshot(SHOTS / "key.png")
        browser.js(f"document.querySelector('#key-input').value = {json.dumps(KEY)}")
        browser.js("document.querySelector('#key-form').requestSubmit()")

        # the running job: status, a loss curve and the retrieval curves by step, the refresh marked
        browser.wait("document.querySelector('[data-chart=\"Training loss\"] polyline')", 30, "the loss curve")
        browser.wait(
            "document.querySelector('[data-series=\"nDCG@10\"]').getAttribute('points').split(' ').length >= 2",
            30,
            "two nDCG@10 points",
        )
        assert browser.js("document.querySelector('h2 .status').textContent") == "running"
        # where the run is and when it ends: from the first logs on, not "-" for the whole run
        browser.wait(
            "/^step \\d+ of 2,?000$/.test(document.querySelector('#job-progress').textContent)", 30, "step N of M"
        )
        browser.wait("/\\d/.test(document.querySelector('#job-eta').textContent)", 30, "an estimated finish")
        assert browser.js("document.querySelector('[data-series=\"MRR@10\"]') !== null")
        # no point under the legend or the title (the plot starts below them)
        assert (
            browser.js(
                "Math.min(...[...document.querySelectorAll('svg.chart circle')].map((c) => +c.getAttribute('cy')))"
            )
            >= 40
        )
        assert browser.js("document.querySelectorAll('svg line.marker').length") >= 2  # refreshes, both charts
        assert "Hard negatives are mined with the training filter" in browser.js(
            "document.querySelector('#events').innerText"
        )
        print("wrote", browser.screenshot(SHOTS / "job.png"))
        browser.js("document.querySelector('#cancel-job').click()")
        _wait(lambda: api.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["status"] == "cancelled", 60, "the cancel")
        browser.wait("document.querySelector('h2 .status').textContent === 'cancelled'", 20, "the page to say so")

        # a mining report: the filter and why, the per-rule counts, the score histogram (counts), examples
        browser.goto(f"{base}/ui/#mine")
        browser.wait("document.querySelector('#mine-form')", what="the mining form")
        lines = [f"{q} | {data.corpus_ids[pos[0]]}" for q, pos in zip(data.queries[:20], data.positives[:20])]
        browser.js(f"document.querySelector('#mine-queries').value = {json.dumps(chr(10).join(lines))}")
        browser.js("document.querySelector('#mine-run').click()")
        browser.wait("document.querySelector('#report svg rect.bar')", 60, "the report's histogram")
        counts = browser.js(
            "[...document.querySelectorAll('#report svg text[text-anchor=end]')].map((t) => t.textContent)"
        )
        assert counts and all(c.replace(",", "").isdigit() for c in counts), counts  # whole counts on its axis
        said = browser.js("document.querySelector('#filter').textContent")
        assert "recommended" in said and "the default" in said
        assert browser.js("document.querySelectorAll('#report table tr').length") >= 2  # a header and a rule
        print("wrote", browser.screenshot(SHOTS / "mining-report.png"))

        browser.goto(f"{base}/ui/#indexes")
        browser.wait(
            "document.querySelector('main table') && document.querySelector('main').innerText.includes('code')"
        )
        browser.screenshot(SHOTS / "indexes.png")

        # the API's documentation, rendered from packaged files with no other host reachable
        browser.goto(f"{base}/docs")
        browser.wait("document.querySelectorAll('.swagger-ui .opblock').length > 10", 30, "Swagger UI's operations")
        print("wrote", browser.screenshot(SHOTS / "docs.png"))
        browser.goto(f"{base}/redoc")
        browser.wait("document.body.innerText.includes('fine_tuning')", 30, "ReDoc's operations")
        browser.screenshot(SHOTS / "redoc.png")
        assert not browser.errors, browser.errors
    finally:
        api.close()
        stop(proc)
