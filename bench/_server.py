"""A minimal keep-alive HTTP/1.1 server for benchmarks, run in its own process.

It answers every request with the same small JSON body. It is deliberately far faster than
any client under test (raw asyncio protocol, uvloop when installed), so the figures measure the
clients, not the server.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

BODY = b'{"id":1,"name":"thermostat","online":true,"temperature":21.5}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\nConnection: keep-alive\r\n\r\n"
    + BODY
)


class _Protocol(asyncio.Protocol):
    __slots__ = ("_buffer", "_transport")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        replies = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            length = 0
            lower = head.lower()
            marker = lower.find(b"content-length:")
            if marker >= 0:
                line_end = lower.find(b"\r\n", marker)
                length = int(head[marker + 15 : line_end if line_end >= 0 else None])
            total = end + 4 + length
            if len(buffer) < total:
                break
            buffer = buffer[total:]
            replies.append(RESPONSE)
        self._buffer = buffer
        if replies:
            self._transport.write(b"".join(replies))  # type: ignore[attr-defined]


def serve(sock: socket.socket) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Protocol, sock=sock, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    listener = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(listener.fileno(), False)
    serve(listener)
