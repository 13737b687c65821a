"""The deployment files hold what the README promises. (The CPU image itself is built and run by
``make docker-test``, which ``.ci/run`` runs where buildah works.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def test_compose_services_volumes_health_and_gpu_profile() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"api", "worker", "worker-gpu", "postgres", "ray-head", "ray-worker"}
    api, worker, gpu, pg = (services[s] for s in ("api", "worker", "worker-gpu", "postgres"))
    assert api["command"] == ["serve"] and worker["command"] == gpu["command"] == ["worker"]
    assert "curl" not in str(api["healthcheck"]["test"]) and "/healthz" in str(api["healthcheck"]["test"])
    for s in (worker, gpu):
        assert s["depends_on"]["api"]["condition"] == "service_healthy"
        assert s["environment"]["NEGMINER_API_URL"] == "http://api:8000"
    # the API and each worker on their own volume (models and files travel over HTTP); the job database's is shared
    assert "negminer-api:/data" in api["volumes"] and "negminer-worker:/data" in worker["volumes"]
    assert "negminer-worker-gpu:/data" in gpu["volumes"]
    for s in (api, worker, gpu):
        assert "negminer-db:/db" in s["volumes"] and not any(":/data" in v for v in s["volumes"][1:])
        assert s["build"]["dockerfile"] == "docker/Dockerfile"
        assert s["environment"]["NEGMINER_DATABASE_URL"].startswith("${NEGMINER_DATABASE_URL:-sqlite:////db/")
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["args"]["VARIANT"] == "gpu"
    assert "nvidia/cuda" in gpu["build"]["args"]["BASE_IMAGE"] and gpu["environment"]["NEGMINER_DEVICE"] == "cuda"
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert pg["profiles"] == ["postgres"] and "pg_isready" in str(pg["healthcheck"]["test"])
    assert api["depends_on"]["postgres"] == {"condition": "service_healthy", "required": False}
    head, ray_worker = services["ray-head"], services["ray-worker"]
    assert head["profiles"] == ray_worker["profiles"] == ["ray"] and head["build"]["args"]["EXTRAS"] == "ray"
    assert head["entrypoint"] == ray_worker["entrypoint"] == ["ray"] and "--head" in head["command"]
    assert "--address=ray-head:6379" in ray_worker["command"]
    assert ray_worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert "negminer-api:/data" in head["volumes"]  # actors load the API's models from its volume
    assert "NEGMINER_RAY_ADDRESS" in api["environment"] and "NEGMINER_RAY_ADDRESS" in worker["environment"]


def test_dockerfile_one_file_for_both_variants() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    first_from = next(i for i, ln in enumerate(lines) if ln.startswith("FROM"))
    assert any(ln.startswith("ARG BASE_IMAGE=") for ln in lines[:first_from])
    assert re.findall(r"^FROM (\S+) AS (\w+)", text, re.M) == [
        ("${BASE_IMAGE}", "base"),
        ("base", "deps"),
        ("base", "runtime"),
    ]
    assert "ARG VARIANT=cpu" in text and "faiss" not in text.split("AS runtime")[1]  # packages only in deps
    runtime = text.split("AS runtime")[1]
    assert re.search(r"^USER 10001", runtime, re.M) and 'VOLUME ["/data"]' in runtime
    health = next(ln for ln in runtime.splitlines() if "CMD [" in ln and "healthz" in ln)
    assert "curl" not in health and "urllib" in health
    assert "HF_HUB_OFFLINE=1" in runtime and "NEGMINER_DATA_DIR=/data" in runtime
    ignore = (DOCKER.parent / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1 :][:4] == ["!pyproject.toml", "!README.md", "!negminer/", "!docker/wheels/"]
