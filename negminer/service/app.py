"""The FastAPI application: ``create_app(settings)``; routes are thin and call the library."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request

from negminer import __version__
from negminer.index import Encoder, IndexRegistry
from negminer.service import errors
from negminer.service.api.routes import embed, health, indexes, metrics
from negminer.service.config import ServiceSettings
from negminer.service.deps import require_api_key

__all__ = ["create_app"]


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()

    def encoder_factory(model: str) -> Encoder:
        return Encoder(model, device=settings.device, batch_size=settings.batch_size,
                       cache_dir=settings.cache_dir, show_progress=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.registry.load_all()
        app.state.ready = True
        yield
        app.state.registry.wait(timeout=5)

    app = FastAPI(title="negminer", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = IndexRegistry(settings.data_dir / "indexes", encoder_factory)
    app.state.ready = False
    app.state.metrics = metrics.ServiceMetrics(app.state.registry)
    errors.install(app)

    @app.middleware("http")
    async def observe(request: Request, call_next):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        app.state.metrics.observe(request.method, path, response.status_code, time.perf_counter() - t0)
        return response

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return errors.problem(413, f"request body over {settings.max_body_bytes} bytes",
                                  code="payload_too_large", instance=request.url.path)
        return await call_next(request)

    app.include_router(health.router)
    protected = [Depends(require_api_key)]
    app.include_router(indexes.router, dependencies=protected)
    app.include_router(embed.router, dependencies=protected)
    app.include_router(metrics.router, dependencies=protected)
    return app
