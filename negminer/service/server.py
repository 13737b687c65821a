"""Running the app on uvicorn, with a deadline for request headers that uvicorn does not have.

uvicorn times out idle keep-alive connections but not a client that connects and sends its request line and
headers a byte at a time (or never): thousands of such connections stay open for as long as the clients like.
:class:`DeadlineH11Protocol` closes a connection whose request headers are not complete ``read_timeout_seconds``
after its first byte (or after it opened). A stalled body is the request guard's (408).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from negminer._settings import ServiceSettings

__all__ = ["DeadlineH11Protocol", "serve"]


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request's line and headers."""

    header_timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.logger.info("closing a connection that sent no complete request in %g s", self.header_timeout)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_headers():
            self._arm()  # from the first byte of this request, not reset by each byte
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run ``app`` on uvicorn at the settings' host and port, with the header deadline."""
    import uvicorn

    protocol = type("DeadlineH11", (DeadlineH11Protocol,), {"header_timeout": settings.read_timeout_seconds})
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", http=protocol)
