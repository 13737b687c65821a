"""``GET /metrics`` in Prometheus' text format: requests, latencies, index sizes and versions, refresh durations."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from negminer.service.registry import IndexRegistry

router = APIRouter(tags=["metrics"])


class ServiceMetrics:
    """One Prometheus registry per app (so several apps in one process, as in tests, stay apart)."""

    def __init__(self, index_registry: IndexRegistry) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "negminer_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "negminer_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        self.registry.register(_IndexCollector(index_registry))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class _IndexCollector:
    def __init__(self, index_registry: IndexRegistry) -> None:
        self.index_registry = index_registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = GaugeMetricFamily("negminer_index_documents", "documents in the current version", labels=["index"])
        version = GaugeMetricFamily("negminer_index_version", "current version number", labels=["index"])
        op = GaugeMetricFamily(
            "negminer_index_operation_seconds",
            "duration of the last build / refresh / documents update",
            labels=["index", "type"],
        )
        for name in self.index_registry.names():
            try:
                info = self.index_registry.get(name, renew=False).info()  # a scrape renews no lease
            except KeyError:  # deleted meanwhile
                continue
            size.add_metric([name], info.size)
            version.add_metric([name], info.version or 0)
            if info.operation is not None and info.operation.seconds is not None:
                op.add_metric([name, str(info.operation.type)], info.operation.seconds)
        yield size
        yield version
        yield op


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        }
    },
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
