"""uvicorn's h11 protocol with a header timeout: a client must send a request's headers in time.

uvicorn times out idle keep-alive connections, but a client that opens a connection and sends
its headers slowly (or never) holds it forever. `protocol_with_header_timeout(seconds)` returns
an H11Protocol subclass that closes a connection whose next request's headers have not arrived
`seconds` after the connection opened or the previous response ended. Bodies are timed by
`codec.read_body`.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


def protocol_with_header_timeout(seconds: float) -> type[H11Protocol]:
    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers arrived
                self._disarm()

        def on_response_complete(self) -> None:
            self._arm()  # before super(): it may start a pipelined request (which disarms)
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol
