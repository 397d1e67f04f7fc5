"""A loopback TCP proxy that makes a real server slow or unreachable: each chunk waits
``delay`` seconds each way, and :meth:`SlowLink.cut` drops every connection and refuses new
ones until :meth:`SlowLink.restore`. Point a client at :attr:`SlowLink.port` to put a loaded,
distant or lost database (or broker) between it and the real one, without touching the server
others share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class SlowLink:
    def __init__(self, host: str, port: int, delay: float = 0.0) -> None:
        self.target = (host, port)
        self.delay = delay
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.down = False

    def cut(self) -> None:
        """The server is gone: every open connection drops, new ones are refused."""
        self.down = True
        for pipe in list(self._pipes):
            pipe.cancel()

    def restore(self) -> None:
        self.down = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SlowLink]:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            for pipe in list(self._pipes):
                pipe.cancel()
            await asyncio.gather(*self._pipes, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pipes = [
            asyncio.create_task(self._pipe(reader, upstream_writer)),
            asyncio.create_task(self._pipe(upstream_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
                self._pipes.discard(pipe)
            for end in (writer, upstream_writer):
                end.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            if self.delay:
                await asyncio.sleep(self.delay)
            writer.write(chunk)
            await writer.drain()
