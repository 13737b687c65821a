"""The web page (``/ui/``) and the API's documentation (``/docs``, ``/redoc``), all from files in the package.

The page is a static shell: it holds no data and is served without the API key; everything it shows comes from
the API, with the key the user types in (kept in the tab's ``sessionStorage``), so nothing is shown without it.
Swagger UI and ReDoc load from the files the ``fastapi-offline`` package ships instead of a CDN, so ``/docs``
renders on a machine with no internet. The key's coverage of ``/docs`` and ``/openapi.json`` is the request
guard's (``NEGMINER_PUBLIC_DOCS``).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["UI_DIR", "install"]

UI_DIR = Path(__file__).resolve().parents[2] / "ui"
VENDOR_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=RedirectResponse)
def root() -> RedirectResponse:
    """A browser at the server's root lands on the page (TEI's ``POST /`` is another route)."""
    return RedirectResponse("/ui/")


@router.get("/ui", response_class=RedirectResponse)
def ui_bare() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.api_route("/ui/", methods=["GET", "HEAD"], response_class=FileResponse)
def ui_page() -> FileResponse:
    return FileResponse(UI_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/docs", response_class=HTMLResponse)
def swagger() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="negminer API",
        swagger_js_url="/ui/vendor/swagger-ui-bundle.js",
        swagger_css_url="/ui/vendor/swagger-ui.css",
        swagger_favicon_url="/ui/vendor/favicon.png",
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="negminer API",
        redoc_js_url="/ui/vendor/redoc.standalone.js",
        redoc_favicon_url="/ui/vendor/favicon.png",
        with_google_fonts=False,
    )


def install(app: FastAPI) -> None:
    """Add the page, its files and the offline documentation to ``app`` (made with ``docs_url=None``)."""
    app.include_router(router)
    app.mount("/ui/assets", StaticFiles(directory=UI_DIR), name="ui-assets")
    app.mount("/ui/vendor", StaticFiles(directory=VENDOR_DIR), name="ui-vendor")
