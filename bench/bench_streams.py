"""WebSocket stream throughput and reconnect time, in one run.

    python bench/bench_streams.py            # 200,000 messages x 9 rounds per client
    python bench/bench_streams.py --quick    # 50,000 x 3

Throughput: a push server in a child process writes N JSON text frames, pre-encoded and sent
in one write so that the server is never the bottleneck; each client reads and decodes all N
(json.loads on every message, both sides). Contenders, alternating round by round:
raw aiohttp (`async for msg in ws: json.loads(msg.data)`) and `tether.streams.WebSocket`
(async iteration: reader task, bounded queue, JSON decode, hooks and heartbeat off).
Goal: tether >= 0.9 x raw (median of the per-round ratios).

Reconnect: the server is killed with SIGKILL mid-stream and started again on the same port;
reported is the time from the new server being ready to the first message on the new
connection (and from the kill), for the default policy Reconnect() and a fast one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from tether.streams import Reconnect, WebSocket  # noqa: E402


def frame(payload: bytes) -> bytes:
    """One unmasked text frame (RFC 6455 §5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return bytes((0x81, 126)) + struct.pack("!H", size) + payload
    return bytes((0x81, 127)) + struct.pack("!Q", size) + payload


async def serve(port: int, count: int, mode: str) -> None:
    from aiohttp import web

    blob = b"".join(
        frame(
            json.dumps(
                {"seq": i, "symbol": "BTC-USD", "price": 64123.5 + i % 100, "size": 0.25}
            ).encode()
        )
        for i in range(count)
    )

    async def burst(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        request.transport.write(blob)
        async for _ in ws:
            pass
        return ws

    async def ticker(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        seq = 0
        while not ws.closed:
            await ws.send_str(json.dumps({"seq": seq}))
            seq += 1
            await asyncio.sleep(0.001)
        return ws

    app = web.Application()
    app.router.add_get("/ws", burst if mode == "burst" else ticker)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


class Server:
    def __init__(self, port: int, count: int, mode: str) -> None:
        self.port, self.count, self.mode = port, count, mode
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> float:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), str(self.count), self.mode],
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == b"ready", line
        return time.perf_counter()

    async def start_async(self) -> float:
        return await asyncio.to_thread(self.start)

    def kill(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def raw_round(url: str, count: int) -> float:
    loads = json.loads
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        started = time.perf_counter()
        seen = 0
        async for msg in ws:
            loads(msg.data)
            seen += 1
            if seen == count:
                break
        elapsed = time.perf_counter() - started
    return count / elapsed


async def tether_round(url: str, count: int) -> float:
    async with WebSocket(url, heartbeat=None, queue_size=4096) as ws:
        started = time.perf_counter()
        seen = 0
        async for _ in ws:
            seen += 1
            if seen == count:
                break
        elapsed = time.perf_counter() - started
    return count / elapsed


async def throughput(count: int, rounds: int) -> tuple[list[float], list[float]]:
    server = Server(free_port(), count, "burst")
    server.start()
    raw: list[float] = []
    ours: list[float] = []
    try:
        await raw_round(server.url, min(count, 10_000))  # warm-up: imports, first connection
        await tether_round(server.url, min(count, 10_000))
        for _ in range(rounds):
            raw.append(await raw_round(server.url, count))
            ours.append(await tether_round(server.url, count))
    finally:
        server.kill()
    return raw, ours


async def reconnect_once(policy: Reconnect) -> tuple[float, float]:
    server = Server(free_port(), 0, "ticker")
    server.start()
    first_after: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    try:
        async with WebSocket(server.url, heartbeat=None, reconnect=policy) as ws:
            received = 0
            killed = False

            async def read() -> None:
                nonlocal received
                async for _ in ws:
                    received += 1
                    if killed and ws.stats().connections == 2 and not first_after.done():
                        first_after.set_result(time.perf_counter())

            reader = asyncio.create_task(read())
            while received < 50:
                await asyncio.sleep(0.01)
            killed_at = time.perf_counter()
            server.kill()
            killed = True
            ready_at = await server.start_async()
            first = await asyncio.wait_for(first_after, timeout=120)
            reader.cancel()
        return first - ready_at, first - killed_at
    finally:
        server.kill()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    # Refused reconnect attempts during the restart are expected; keep the report readable.
    logging.getLogger("tether.streams").setLevel(logging.ERROR)
    count, rounds, trials = (50_000, 3, 3) if args.quick else (200_000, 9, 5)

    print(f"throughput: {count:,} JSON messages per round, {rounds} rounds each, loopback")
    raw, ours = await throughput(count, rounds)
    raw_median, ours_median = statistics.median(raw), statistics.median(ours)
    print(f"  raw aiohttp ws           median {raw_median:>10,.0f} msg/s   best {max(raw):>10,.0f}")
    print(
        f"  tether.streams.WebSocket median {ours_median:>10,.0f} msg/s   best {max(ours):>10,.0f}"
    )
    # Rounds alternate, so each pair ran under the same machine load; the median pair ratio
    # is steadier than a ratio of medians on a busy machine.
    ratio = statistics.median(o / r for o, r in zip(ours, raw, strict=True))
    print(f"  ratio of medians {ours_median / raw_median:.3f}; median per-round ratio {ratio:.3f}")
    print(f"  goal tether/raw >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'}")

    for label, policy in (
        ("Reconnect() defaults (1 s, full jitter)", Reconnect()),
        (
            "Reconnect(initial_delay=0.05, max_delay=0.5)",
            Reconnect(initial_delay=0.05, max_delay=0.5),
        ),
    ):
        after_ready: list[float] = []
        after_kill: list[float] = []
        for _ in range(trials):
            a, b = await reconnect_once(policy)
            after_ready.append(a)
            after_kill.append(b)
        print(f"reconnect, {label}, {trials} trials:")
        for what, values in (
            ("server ready -> first message", after_ready),
            ("SIGKILL -> first message     ", after_kill),
        ):
            median_ms, max_ms = statistics.median(values) * 1000, max(values) * 1000
            print(f"  {what}  median {median_ms:7.0f} ms  max {max_ms:7.0f} ms")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        asyncio.run(serve(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
    else:
        asyncio.run(main())
