"""Webhook inbox throughput: verified + durable acknowledgements against a plain 200 endpoint.

One command, one run, ratios printed:

    python bench/bench_inbox.py             # 8 pairs of 3-second measurements per store
    python bench/bench_inbox.py --quick     # a smoke run

The receiver runs under uvicorn in its own process on a loopback port, with h11 and asyncio as
`tether serve` runs it (httptools and uvloop when uvicorn[standard] is installed). The same
server answers two routes: `/plain`, a Starlette endpoint that reads the body and answers 200,
and `/hooks`, the inbox route that checks size and content type, verifies a Standard Webhooks
signature, commits the delivery to the store with fsync (group commit) and only then answers
200. The load generator is wrk (`apt-get install wrk`) when it is on the PATH: one thread, 64
connections, a fixed duration, every request signed beforehand with an id of its own and
handed to wrk by a Lua script. Without wrk it is aiohttp with the same concurrency and a fixed
count (`--load aiohttp` chooses it): aiohttp spends about as much CPU per request as the
server does, on the same two cores, so it squeezes the durable route's store thread and
PostgreSQL more than wrk does. Stores: SQLite (WAL, synchronous=FULL) and PostgreSQL
(synchronous_commit=on) when reachable; SQLite once more with group commit off (one commit per
delivery) to show what batching buys.

The machine is shared and its speed drifts by a quarter or more within seconds, so the two
routes are measured in pairs, back to back, and the pair's order alternates (plain first, then
durable first). The ratio reported is the median of the pairs' ratios; the best durable round
over the best plain round is printed beside it.

The server process is set up as `tether serve` sets up its own: once started, the garbage
collector's start-up heap is frozen and its young threshold raised (tether._gc explains why).
Both routes run in that one process. `--gc default` keeps CPython's settings instead, and the
young-generation collections per thousand requests are printed for each route either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

SECRET = "whsec_" + "YmVuY2gtaW5ib3gtc3RhbmRhcmQtd2ViaG9va3Mta2V5"
PAYLOAD = json.dumps(
    {
        "type": "invoice.paid",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {
            "id": "in_1PqRsTuVwXyZ",
            "customer": "cus_9s6XKzkNRiz8i3",
            "amount_due": 4200,
            "currency": "eur",
            "lines": [{"id": f"il_{n}", "amount": 1050, "description": "Seat"} for n in range(4)],
            "metadata": {"order": "A-1042", "region": "eu-west"},
        },
    }
).encode()
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


# -- the server process --------------------------------------------------------------------


def serve(fd: int, store: str, schema: str, max_batch: int, gc_mode: str) -> None:
    import gc
    from collections.abc import AsyncIterator

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from tether import stores, webhooks
    from tether._gc import tune_gc_for_serving

    if store.startswith("postgres"):
        backend: stores.InboxStore = stores.PostgresInboxStore(
            store, schema=schema, max_batch=max_batch
        )
    else:
        backend = stores.SQLiteInboxStore(store, max_batch=max_batch)
    inbox = webhooks.Inbox(
        [webhooks.Source("bench", "/hooks", "standard", SECRET)], store=backend, dispatch=False
    )

    async def plain(request: Request) -> Response:
        await request.body()
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def stats(_: Request) -> JSONResponse:
        s = backend.stats
        young = gc.get_stats()[0]["collections"]
        return JSONResponse(
            {"inserted": s.inserted, "commits": s.commits, "largest": s.largest_batch, "gc": young}
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with inbox.lifespan(app):
            if gc_mode == "serving":
                tune_gc_for_serving()
            yield

    # The two measured routes first, in the order they are measured in; /stats is not measured.
    app = Starlette(
        routes=[
            Route("/plain", plain, methods=["POST"]),
            *inbox.routes,
            Route("/stats", stats),
        ],
        lifespan=lifespan,
    )
    listener = socket.socket(fileno=fd)
    # h11 and asyncio, as `tether serve` runs; httptools and uvloop when installed
    # (uvicorn[standard]), which make the plain route much cheaper and the ratio lower.
    config = uvicorn.Config(app, http="auto", loop="auto", log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[listener])


# -- the load generator --------------------------------------------------------------------


@dataclass
class Result:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: CPU seconds the server process (all its threads) spent per request, in microseconds.
    server_cpu_us: float = 0.0
    #: The same for the event loop's thread alone (the process's main thread), which is the
    #: one that runs out of CPU first.
    loop_cpu_us: float = 0.0
    #: Young-generation garbage collections in the server per thousand requests.
    gc_per_1000: float = 0.0
    #: Requests answered in the measurement.
    count: int = 0


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time of process `pid`, or of its thread `thread`, so far (Linux
    /proc)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_for(run: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
    from tether import webhooks

    made = []
    now = int(time.time())
    for n in range(count):
        headers = webhooks.sign(
            "standard", secret=SECRET, body=PAYLOAD, msg_id=f"msg_{run}_{n}", timestamp=now
        )
        headers["Content-Type"] = "application/json"
        made.append((PAYLOAD, headers))
    return made


async def drive(url: str, prepared: list[tuple[bytes, dict[str, str]]], concurrency: int) -> Result:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    queue = list(reversed(prepared))
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal errors
            while queue:
                body, headers = queue.pop()
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Result(
        rate=len(prepared) / elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        errors=errors,
        count=len(prepared),
    )


# wrk sends each connection's next request from this list, in turn: every one pre-signed, with
# an id of its own. Should wrk get through the list, the script starts it again, and drive_wrk
# fails the run: a repeated id would be a duplicate, which the inbox answers without storing.
_WRK_SCRIPT = """
local requests = {}
local sent = 0
init = function(args)
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*a")
  file:close()
  for one in string.gmatch(data, "([^%z]+)%z") do requests[#requests + 1] = one end
end
request = function()
  sent = sent + 1
  return requests[((sent - 1) % #requests) + 1]
end
"""
_WRK_LATENCY = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_requests(run: str, count: int, path: str, host: str) -> bytes:
    """`count` signed requests to `path`, as raw HTTP/1.1, each ended by a NUL for the script."""
    out = bytearray()
    for body, headers in requests_for(run, count):
        head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        out += ("\r\n".join(head) + "\r\n\r\n").encode() + body + b"\0"
    return bytes(out)


async def drive_wrk(
    url: str, requests_file: Path, prepared: int, args: argparse.Namespace
) -> Result:
    """wrk on one thread, `args.concurrency` connections, for `args.duration` seconds."""
    script = requests_file.with_suffix(".lua")
    script.write_text(_WRK_SCRIPT)
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{args.concurrency}",
        f"-d{args.duration}s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        str(requests_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    text = out.decode()
    total = re.search(r"(\d+) requests in", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if proc.returncode != 0 or total is None or rate is None:
        raise SystemExit(f"wrk failed: {err.decode().strip() or text}")
    # Requests still in flight when wrk stopped were taken from the list too.
    if int(total.group(1)) + args.concurrency > prepared:
        raise SystemExit(
            f"wrk sent about {int(total.group(1)) + args.concurrency} requests but {prepared} "
            "were prepared, so some were duplicates: raise --max-rate"
        )
    latency = {
        m.group(1): float(m.group(2)) * _WRK_UNITS[m.group(3)] for m in _WRK_LATENCY.finditer(text)
    }
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    socket_errors = re.search(r"Socket errors:.*", text)
    return Result(
        rate=float(rate.group(1)),
        p50_ms=latency.get("50", 0.0),
        p99_ms=latency.get("99", 0.0),
        errors=(int(failed.group(1)) if failed else 0) + (1 if socket_errors else 0),
        count=int(total.group(1)),
    )


@contextlib.contextmanager
def server(
    store: str, schema: str, max_batch: int, gc_mode: str, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, int]]:
    """The receiver in its own process; `prefix` runs it under a tool such as valgrind."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    os.set_inheritable(listener.fileno(), True)
    port = listener.getsockname()[1]
    proc = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            str(listener.fileno()),
            "--store",
            store,
            "--schema",
            schema,
            "--max-batch",
            str(max_batch),
            "--gc",
            gc_mode,
        ],
        pass_fds=(listener.fileno(),),
    )
    listener.close()
    try:
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def stats(url: str) -> dict[str, int]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url + "/stats") as response:
        return dict(await response.json())


async def measure(
    label: str, store: str, schema: str, max_batch: int, args: argparse.Namespace
) -> tuple[Result, Result, dict[str, int]]:
    run = uuid.uuid4().hex[:8]
    with (
        tempfile.TemporaryDirectory() as tmp,
        server(store, schema, max_batch, args.gc) as (base, pid),
    ):
        host = base.removeprefix("http://")

        async def timed(path: str, tag: str) -> Result:
            # The requests are signed before the measurement, not during it.
            if args.load == "wrk":
                prepared = int(args.duration * args.max_rate)
                requests_file = Path(tmp) / "requests"
                requests_file.write_bytes(wrk_requests(f"{run}{tag}", prepared, path, host))
            else:
                signed = requests_for(f"{run}{tag}", args.requests)
            collections = (await stats(base))["gc"]
            before, loop_before = cpu_seconds(pid), cpu_seconds(pid, pid)
            if args.load == "wrk":
                result = await drive_wrk(base + path, requests_file, prepared, args)
            else:
                result = await drive(base + path, signed, args.concurrency)
            result.server_cpu_us = (cpu_seconds(pid) - before) / max(1, result.count) * 1e6
            loop_seconds = cpu_seconds(pid, pid) - loop_before
            result.loop_cpu_us = loop_seconds / max(1, result.count) * 1e6
            collections = (await stats(base))["gc"] - collections
            result.gc_per_1000 = collections * 1000 / max(1, result.count)
            return result

        warm = requests_for(f"{run}w", args.warmup)
        await drive(base + "/plain", warm, args.concurrency)
        await drive(base + "/hooks", warm, args.concurrency)
        best_plain: Result | None = None
        best_inbox: Result | None = None
        ratios: list[float] = []
        for round_ in range(args.rounds):
            # Alternate which route goes first, so a drift in the machine's speed favours
            # neither.
            if round_ % 2 == 0:
                plain = await timed("/plain", f"p{round_}")
                durable = await timed("/hooks", f"d{round_}")
            else:
                durable = await timed("/hooks", f"d{round_}")
                plain = await timed("/plain", f"p{round_}")
            if durable.errors or plain.errors:
                raise SystemExit(f"{label}: {durable.errors + plain.errors} non-200 answers")
            ratios.append(durable.rate / plain.rate)
            if best_plain is None or plain.rate > best_plain.rate:
                best_plain = plain
            if best_inbox is None or durable.rate > best_inbox.rate:
                best_inbox = durable
            print(
                f"  {label:<26} pair {round_ + 1}: plain {plain.rate:6.0f}/s  "
                f"durable {durable.rate:6.0f}/s  ratio {ratios[-1]:.2f}  server CPU per request "
                f"(event loop's thread): plain {plain.server_cpu_us:.0f} "
                f"({plain.loop_cpu_us:.0f}) us, durable {durable.server_cpu_us:.0f} "
                f"({durable.loop_cpu_us:.0f}) us; "
                f"GC per 1000: {plain.gc_per_1000:.0f}/{durable.gc_per_1000:.0f}",
                flush=True,
            )
        counters = await stats(base)
    assert best_plain is not None
    assert best_inbox is not None
    counters["median_ratio_x100"] = round(statistics.median(ratios) * 100)
    return best_plain, best_inbox, counters


async def postgres_reachable(dsn: str) -> bool:
    try:
        import asyncpg
    except ImportError:
        return False
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def drop_schema(dsn: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    if args.load == "wrk":
        load = f"wrk, {args.duration} s per measurement"
    else:
        load = f"aiohttp, {args.requests} requests per measurement"
    print(
        f"load generator {load}, {args.concurrency} concurrent, "
        f"{args.rounds} pairs of rounds (the median ratio counts), {len(PAYLOAD)}-byte body, "
        f"{os.cpu_count()} CPUs shared by server and load generator; server collector: "
        + ("as `tether serve` sets it" if args.gc == "serving" else "CPython's defaults")
    )
    rows: list[tuple[str, Result, Result, dict[str, int]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("sqlite", *await measure("sqlite", f"{tmp}/a.db", "public", 1024, args)))
        if await postgres_reachable(args.postgres):
            schema = f"tether_bench_{uuid.uuid4().hex[:8]}"
            try:
                rows.append(
                    ("postgresql", *await measure("postgresql", args.postgres, schema, 1024, args))
                )
            finally:
                await drop_schema(args.postgres, schema)
        else:
            print(f"  postgresql: unreachable at {args.postgres}, skipped")
        if not args.quick:
            rows.append(
                (
                    "sqlite, group commit off",
                    *await measure("sqlite, group commit off", f"{tmp}/b.db", "public", 1, args),
                )
            )
    print()
    print(
        f"{'store':<26} {'plain req/s':>11} {'durable req/s':>13} {'ratio':>6} {'best':>6} "
        f"{'plain p50/p99 ms':>17} {'durable p50/p99 ms':>19} {'CPU us/req':>11} "
        f"{'loop us/req':>11} {'per commit':>10}"
    )
    for label, plain, durable, counters in rows:
        per_commit = counters["inserted"] / max(1, counters["commits"])
        print(
            f"{label:<26} {plain.rate:11.0f} {durable.rate:13.0f} "
            f"{counters['median_ratio_x100'] / 100:6.2f} {durable.rate / plain.rate:6.2f} "
            f"{plain.p50_ms:8.2f}/{plain.p99_ms:<8.2f} {durable.p50_ms:9.2f}/{durable.p99_ms:<9.2f}"
            f" {plain.server_cpu_us:5.0f}/{durable.server_cpu_us:<5.0f}"
            f" {plain.loop_cpu_us:5.0f}/{durable.loop_cpu_us:<5.0f} {per_commit:10.1f}"
        )
    print(
        "\nratio = median over the pairs of durable / plain (target >= 0.8); best = best "
        "durable round / best plain round;\nreq/s, latency and CPU us/req (server process CPU "
        "per request, plain/durable) are from the best rounds, loop us/req the same for the "
        "event loop's thread alone;\nper commit = deliveries per fsync'd commit"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--load",
        choices=("auto", "wrk", "aiohttp"),
        default="auto",
        help="the load generator: wrk (C, light) when on the PATH, else aiohttp (Python, which "
        "takes about as much CPU per request as the server)",
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement, with wrk")
    parser.add_argument(
        "--max-rate",
        type=int,
        default=15_000,
        help="requests per second to sign ahead of each wrk measurement",
    )
    parser.add_argument(
        "--requests", type=int, default=4000, help="requests per measurement, with aiohttp"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=8, help="pairs of measurements")
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument("--postgres", default=os.environ.get("TETHER_BENCH_PG", DEFAULT_PG))
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--schema", default="public", help=argparse.SUPPRESS)
    parser.add_argument(
        "--gc",
        choices=("serving", "default"),
        default="serving",
        help="the server's collector settings: as `tether serve` sets them, or CPython's",
    )
    parser.add_argument("--max-batch", type=int, default=1024, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve is not None:
        serve(arguments.serve, arguments.store, arguments.schema, arguments.max_batch, arguments.gc)
    else:
        if arguments.quick:
            arguments.requests, arguments.rounds, arguments.warmup = 2000, 1, 200
            arguments.duration = 1
        if arguments.load == "auto":
            arguments.load = "wrk" if shutil.which("wrk") else "aiohttp"
        elif arguments.load == "wrk" and not shutil.which("wrk"):
            parser.error("wrk is not on the PATH (apt-get install wrk)")
        asyncio.run(main(arguments))
