"""Deadlines for slow clients: uvicorn's HTTP protocol, closing connections that dribble headers or a body.

uvicorn bounds the idle time between requests (keep-alive) but not the time a client takes to
send one, and the app never sees a request whose headers are incomplete: so the deadlines live in
the protocol. app.serve (the Procfile's memory: line) selects it; the
app's lifespan publishes the configured limits in the lifespan state, which uvicorn hands to
every connection.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app import logsafe

log = logsafe.logger("memory_proxy.slowclients")
HEADER_TIMEOUT = "header_timeout"  # lifespan state keys
BODY_TIMEOUT = "body_timeout"


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """The httptools protocol with a deadline for each request's headers, then one for its body."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline as soon as the client connects."""
        super().connection_made(transport)
        self._arm(HEADER_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop any pending deadline with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """A new request on a kept-alive connection: its headers get a fresh deadline."""
        super().on_message_begin()
        self._arm(HEADER_TIMEOUT)

    def on_headers_complete(self) -> None:
        """Headers are in: the body's deadline starts."""
        super().on_headers_complete()
        self._arm(BODY_TIMEOUT)

    def on_message_complete(self) -> None:
        """The whole request arrived: no deadline while the app answers."""
        super().on_message_complete()
        self._disarm()

    def _arm(self, which: str) -> None:
        self._disarm()
        seconds = self.app_state.get(which)
        if seconds:
            self._deadline = self.loop.call_later(seconds, self._expire, which)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, which: str) -> None:
        self._deadline = None
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("closing the connection from %s: %s passed", client, which.replace("_", " "))
        # Closing is the answer: a slow client may never read a response, and the app (if it has
        # started) sees http.disconnect and cancels its upstream call.
        self.transport.close()
