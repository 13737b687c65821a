"""The FastAPI application: ``create_app(settings)``; routes are thin and call the library."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request

from negminer import __version__
from negminer._io import remove_dead_scratch
from negminer._settings import ServiceSettings
from negminer.index import Encoder
from negminer.index._internal import pinned_models
from negminer.jobs import JobStore, StoreUnavailable
from negminer.service import errors
from negminer.service.api.routes import embed, files, fine_tuning, health, indexes, metrics, models, ui, uploads
from negminer.service.deps import require_api_key
from negminer.service.guard import RequestGuard
from negminer.service.registry import IndexRegistry
from negminer.service.uploads import ModelUploads, uploads_of

__all__ = ["create_app"]

logger = logging.getLogger("negminer")


def sweep(registry: IndexRegistry, uploads: ModelUploads, store: JobStore, settings: ServiceSettings) -> None:
    """One round of the service's sweep: delete the indexes whose lease ran out, then the uploaded models nothing
    uses (no index version or operation, no registered model or unfinished job, no adapter built on them) past
    their grace."""
    registry.sweep_expired()
    if not uploads.records():  # nothing to collect: neither the database nor every index is asked what it uses
        return
    try:
        models = store.models_in_use()
    except StoreUnavailable:  # which uploads are registered models is unknown: keep them all this round
        logger.warning("the job database is unreachable; uploaded models are not collected now")
        return
    in_use = [*pinned_models(registry.root), *models]
    uploads.collect(in_use, settings.upload_grace_seconds)


def create_app(settings: ServiceSettings | None = None, *, with_worker: bool = False) -> FastAPI:
    """The service. ``with_worker`` also runs a fine-tuning worker in this process (``serve --with-worker``)."""
    settings = settings or ServiceSettings()

    def encoder_factory(model: str) -> Encoder:
        return Encoder(
            model,
            device=settings.device,
            batch_size=settings.batch_size,
            cache_dir=settings.cache_dir,
            show_progress=False,
            devices=settings.encode_devices,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.api_key is None:
            logger.warning(
                "NEGMINER_API_KEY is not set: every route is open to anyone who can reach this server "
                "(bound to %s); set a key before exposing it beyond this machine",
                settings.host,
            )
        app.state.registry.load_all()
        remove_dead_scratch(settings.cache_dir)  # the vectors of builds that a kill -9 interrupted
        app.state.uploads.start()
        stop = threading.Event()

        def sweeper() -> None:
            while not stop.wait(settings.sweep_seconds):
                try:
                    sweep(app.state.registry, app.state.uploads, app.state.store, settings)
                except Exception:  # noqa: BLE001 - a failed round is logged; the next one tries again
                    logger.exception("the sweep of expired indexes and unused uploads failed")

        swept = threading.Thread(target=sweeper, name="negminer-sweep", daemon=True)
        swept.start()
        worker = thread = None
        if with_worker:
            from negminer.jobs import Worker

            worker = Worker(settings)
            thread = threading.Thread(target=worker.run_forever, name="negminer-worker", daemon=True)
            thread.start()
        app.state.ready = True
        yield
        if worker is not None and thread is not None:
            worker.stop()
            thread.join(timeout=30)
        stop.set()
        swept.join(timeout=5)
        app.state.registry.wait(timeout=5)
        app.state.store.close()

    app = FastAPI(title="negminer", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.registry = IndexRegistry(
        settings.data_dir / "indexes",
        encoder_factory,
        ray_address=settings.ray_address,
        batch_texts=settings.encode_batch_texts,
    )
    app.state.store = JobStore(settings.database, events_kept=settings.job_events_kept)
    app.state.uploads = uploads_of(settings)
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

    app.add_middleware(RequestGuard, settings=settings)  # outermost: before anything reads the body
    app.include_router(health.router)
    ui.install(app)  # the page and the offline /docs, /redoc (the guard decides who may read the docs)
    protected = [Depends(require_api_key)]
    routers = (
        indexes.router,
        embed.router,
        embed.tei_router,
        files.router,
        fine_tuning.router,
        uploads.router,  # before models.router: /v1/models/uploads is not a model's name
        models.router,
    )
    for router in (*routers, metrics.router):
        app.include_router(router, dependencies=protected, responses=errors.problem_responses(401, 413))
    return app
