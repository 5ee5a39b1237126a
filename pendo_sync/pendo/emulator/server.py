"""The emulator's HTTP/1.1 server: asyncio streams with keep-alive, one task per connection, waits (the
latency model, Retry-After) as sleeps that hold no thread. In a process of its own (`pendo-sync emulator`,
the benchmark), or on a thread of a test or the demo (`with EmulatorServer(emulator) as server:`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Callable
from http import HTTPStatus

import orjson

from pendo_sync.pendo.emulator.api import Drop, Emulator
from pendo_sync.pendo.emulator.contract import Answer

_MAX_HEADER_BYTES = 64 * 1024


async def _serve_connection(
    emulator: Emulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            try:
                method, target, _version = request_line.split(" ", 2)
            except ValueError:
                return
            headers = {}
            for line in header_lines:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            body = await reader.readexactly(length) if length else b""
            try:
                answer = await emulator.handle(method, target, headers, body)
            except Drop:
                return
            except Exception as exc:  # the emulator's own bug: an answer, not a dropped connection
                answer = Answer(500, {"error": f"emulator error: {type(exc).__name__}: {exc}"})
            payload = orjson.dumps(answer.body, option=orjson.OPT_NON_STR_KEYS)
            phrase = HTTPStatus(answer.status).phrase if answer.status < 600 else ""
            extra = "".join(f"{name}: {value}\r\n" for name, value in answer.headers.items())
            writer.write(
                f"HTTP/1.1 {answer.status} {phrase}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(payload)}\r\n{extra}\r\n".encode("latin-1")
                + payload
            )
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _start(emulator: Emulator, host: str, port: int) -> asyncio.Server:
    return await asyncio.start_server(
        lambda r, w: _serve_connection(emulator, r, w), host, port, limit=_MAX_HEADER_BYTES, backlog=256
    )


class EmulatorServer:
    """The emulator on a real port, its event loop on a background thread."""

    def __init__(self, emulator: Emulator | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator or Emulator()
        self._host, self._port = host, port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="pendo-emulator", daemon=True)

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the server first"
        port = self._server.sockets[0].getsockname()[1]
        return f"http://{self._host}:{port}"

    def start(self) -> EmulatorServer:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(_start(self.emulator, self._host, self._port), self._loop)
        self._server = started.result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            connections = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in connections:
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# The emulator's process holds every record it was sent, a few million containers, and each write parses
# thousands more: at Python's default thresholds the cyclic collector would scan that heap again and again
# (half of the emulator's CPU under the benchmark). Records hold no cycles; collect far less often.
GC_THRESHOLDS = (100_000, 20, 100)


def serve(emulator: Emulator, host: str, port: int, ready: Callable[[int], None] | None = None) -> None:
    """`pendo-sync emulator`: serve until interrupted; `ready` is told the port once it is bound."""
    gc.set_threshold(*GC_THRESHOLDS)

    async def forever() -> None:
        server = await _start(emulator, host, port)
        if ready is not None:
            ready(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(forever())
